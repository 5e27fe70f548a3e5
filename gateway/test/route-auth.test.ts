import { expect, test } from "vitest";
import { exports } from "cloudflare:workers";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import { API_KEY, chatBody } from "./fake-agent.ts";

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

/**
 * Each route's doc says which credential it needs, and a guard enforces it: they are declared
 * apart, so this checks they agree. Every route the gateway documents, called with no credential,
 * is refused with 401 unless its doc says it is public.
 */
test("every documented route refuses a call without credentials, except those documented as public", async () => {
  const document = (await (await exports.default.fetch("http://gateway.test/openapi.json")).json()) as {
    paths: Record<string, Record<string, { security?: unknown[] }>>;
  };
  const operations = Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({ path: path.replace(/\{[^}]+\}/g, "x"), method, isPublic: operation.security?.length === 0 })),
  );
  expect(operations.length).toBeGreaterThan(30);
  for (const { path, method, isPublic } of operations) {
    const response = await exports.default.fetch(`http://gateway.test${path}`, {
      method: method.toUpperCase(),
      // The upgrade header lets the agents' socket route reach its token check (without it: 426).
      ...(method === "get" || method === "delete" ? { headers: { upgrade: "websocket" } } : { headers: { "content-type": "application/json" }, body: "{}" }),
    });
    await response.arrayBuffer();
    if (isPublic) expect(response.status, `${method} ${path}`).not.toBe(401);
    else expect(response.status, `${method} ${path}`).toBe(401);
  }
});
