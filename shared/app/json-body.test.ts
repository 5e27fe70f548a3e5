import { expect, test } from "vitest";
import * as z from "zod";
import { ApiError } from "../protocol/api-error.ts";
import { parseJsonBody } from "./json-body.ts";

/** The depth limit on request bodies (64, in shared/app/json-body.ts), pinned at its edge. */

const body = (text: string) => parseJsonBody(new Request("http://test/", { method: "POST", body: text }), z.unknown());
const nested = (depth: number) => `{"a":${"[".repeat(depth - 1)}${"]".repeat(depth - 1)}}`;

test("a body nested 64 deep is read; 65 deep is a 400 that says so", async () => {
  expect(await body(nested(64))).toEqual(JSON.parse(nested(64)));
  const refused = await body(nested(65)).catch((error: unknown) => error);
  expect(refused).toBeInstanceOf(ApiError);
  expect(refused).toMatchObject({ status: 400, code: "invalid_request", message: "The request body nests arrays and objects more than 64 deep." });
});

test("brackets inside strings, escaped quotes among them, do not count", async () => {
  const text = JSON.stringify({ text: `${"[".repeat(100)}\\"${"{".repeat(100)}`, inner: JSON.parse(nested(63)) });
  expect(await body(text)).toEqual(JSON.parse(text));
});
