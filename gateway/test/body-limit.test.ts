import { exports } from "cloudflare:workers";
import { expect, test } from "vitest";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import { API_KEY } from "./fake-agent.ts";

/** README: "request bodies over 1 MiB get 413" — with or without a Content-Length to go by. */

const MIB = 1024 * 1024;

/** A well-formed chat request of exactly `bytes` bytes (the prompt pads it). */
function chatOfSize(bytes: number): string {
  const shell = JSON.stringify({ model: "no-node-has-this", messages: [{ role: "user", content: "" }] });
  return shell.replace('"content":""', `"content":"${"x".repeat(bytes - shell.length)}"`);
}

const post = (body: BodyInit) =>
  exports.default.fetch("http://gateway.test/v1/chat/completions", { method: "POST", headers: { authorization: `Bearer ${API_KEY}` }, body });

async function expectTooLarge(response: Response) {
  expect(response.status).toBe(413);
  expect(ErrorBody.parse(await response.json()).error).toMatchObject({ code: "payload_too_large", message: expect.stringContaining(String(MIB)) });
}

test("1 MiB is accepted and read (the request gets as far as routing); one byte more is a 413 in OpenAI's shape", async () => {
  const atLimit = chatOfSize(MIB);
  expect(atLimit.length).toBe(MIB);
  const read = await post(atLimit);
  expect(read.status).toBe(404);
  expect(ErrorBody.parse(await read.json()).error.code).toBe("model_not_found");
  await expectTooLarge(await post(chatOfSize(MIB + 1)));
});

test("a streamed body without Content-Length is cut off at the limit too", async () => {
  const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent > 2 * MIB) return controller.close();
      sent += chunk.length;
      controller.enqueue(chunk);
    },
  });
  await expectTooLarge(await post(body));
});
