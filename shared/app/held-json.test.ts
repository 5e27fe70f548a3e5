import { expect, test } from "vitest";
import { ApiError } from "../protocol/api-error.ts";
import { heldJsonResponse } from "./held-json.ts";

/** The held non-streamed answer: 200 at once, spaces while it waits, then the body (or an error body, the status being sent). */

const errorBody = (error: ApiError) => ({ error: { code: error.code, message: error.message } });

/** Settles `promise` from outside. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((yes, no) => ((resolve = yes), (reject = no)));
  return { promise, resolve, reject };
}

/** Reads chunks until `count` spaces have arrived (the pulse is running), within a deadline. */
async function spaces(reader: ReadableStreamDefaultReader<Uint8Array>, count: number): Promise<string> {
  let text = "";
  const deadline = AbortSignal.timeout(5_000);
  while (text.length < count) {
    if (deadline.aborted) throw new Error(`only ${JSON.stringify(text)} within 5 s`);
    const { value, done } = await reader.read();
    if (done) throw new Error("the body ended early");
    text += new TextDecoder().decode(value);
  }
  return text;
}

async function rest(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return text;
    text += new TextDecoder().decode(value);
  }
}

test("a 200 at once, spaces while the answer is made, then the answer: JSON that parses", async () => {
  const answer = deferred<unknown>();
  const response = heldJsonResponse(answer.promise, 5, errorBody, () => {});
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe("application/json");
  expect(response.headers.get("content-encoding")).toBe("identity");
  const reader = response.body!.getReader();
  expect(await spaces(reader, 2)).toMatch(/^ +$/);
  answer.resolve({ id: "chatcmpl-1", choices: [] });
  const text = await rest(reader);
  expect(text).toMatch(/^ *\{"id":"chatcmpl-1","choices":\[\]\}$/);
});

test("a failure after the status went out is the error body, in the API's shape", async () => {
  const answer = deferred<unknown>();
  const response = heldJsonResponse(answer.promise, 5, errorBody, () => {});
  const reader = response.body!.getReader();
  await spaces(reader, 1);
  answer.reject(new ApiError(503, "The node went away.", { code: "node_disconnected" }));
  expect(JSON.parse(await rest(reader))).toEqual({ error: { code: "node_disconnected", message: "The node went away." } });
  expect(response.status).toBe(200);
});

test("a client that goes away cancels the work", async () => {
  let cancelled = false;
  const response = heldJsonResponse(new Promise(() => {}), 5, errorBody, () => (cancelled = true));
  const reader = response.body!.getReader();
  await spaces(reader, 1);
  await reader.cancel();
  expect(cancelled).toBe(true);
});
