import { expect, test } from "vitest";
import { exports } from "cloudflare:workers";
import { ErrorBody } from "../shared/errors.ts";
import { API_KEY, chatBody } from "./test/fake-agent.ts";

/** A wrong key learns nothing about which routes exist: it gets 401 everywhere, before any 404. */

const post = (path: string, key: string) =>
  exports.default.fetch(`http://gateway.test${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify(chatBody("any-model")),
  });

test("a wrong key on an unknown route gets 401 invalid_api_key, as on a known one", async () => {
  const wrong = `lmg_${"0".repeat(32)}`;
  for (const path of ["/v1/no-such-route", "/v1/chat/completions"]) {
    const response = await post(path, wrong);
    expect(response.status, path).toBe(401);
    expect(ErrorBody.parse(await response.json()).error.code).toBe("invalid_api_key");
  }
});

test("a valid key on an unknown route still gets 404", async () => {
  const response = await post("/v1/no-such-route", API_KEY);
  expect(response.status).toBe(404);
  expect(ErrorBody.parse(await response.json()).error.code).toBe("not_found");
});
