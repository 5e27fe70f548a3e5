import OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
import { afterAll, beforeAll, expect, test } from "vitest";
import * as z from "zod";
import { startDirectServer, type DirectServer } from "../../node-agent/serving/direct-server.ts";
import { LocalBackend } from "../../node-agent/serving/local-backend.ts";
import { LocalModelAdmin } from "../../node-agent/serving/model-admin.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * Structured output as clients parse it: the openai client's `parse` with a zod schema, and LM
 * Studio's own documented request. Sampled (temperature 1) over several seeds, so the tiny model
 * wanders through whatever the grammar allows.
 */

const MODEL = "tiny-chat-f32";
let backend: LocalBackend;
let server: DirectServer;
let openai: OpenAI;

beforeAll(async () => {
  backend = await LocalBackend.create({ modelDirs: [await testModelsDir()], threads: 1, gpu: false, slots: 2, maxQueue: 8 });
  server = await startDirectServer({ backend, modelAdmin: new LocalModelAdmin(backend, { modelDirs: [await testModelsDir()] }), host: "127.0.0.1", port: 0 });
  openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused", maxRetries: 0 });
});
afterAll(async () => {
  await server?.close();
  await backend?.dispose();
});

test("integers come back as integers and numbers as finite doubles, so zod-typed parse never fails", async () => {
  const Numbers = z.object({ counts: z.array(z.number().int()).min(40), ratios: z.array(z.number()).min(40) });
  for (let seed = 1; seed <= 6; seed += 1) {
    const completion = await openai.chat.completions.parse({
      model: MODEL,
      messages: [{ role: "user", content: "Give me numbers." }],
      response_format: zodResponseFormat(Numbers, "numbers"),
      max_tokens: 1_500,
      temperature: 1,
      seed,
    });
    const parsed = completion.choices[0]?.message.parsed;
    expect(parsed, `seed ${seed}: ${completion.choices[0]?.message.content?.slice(0, 200)}`).toBeTruthy();
    for (const count of parsed?.counts ?? []) expect(Number.isSafeInteger(count), `seed ${seed}: ${count}`).toBe(true);
    for (const ratio of parsed?.ratios ?? []) expect(Number.isFinite(ratio), `seed ${seed}: ${ratio}`).toBe(true);
    // Integers as digits only: no fraction and no exponent, which Python's int() and pydantic refuse.
    expect(completion.choices[0]?.message.content).not.toMatch(/"counts":[^\]]*[.eE]/);
  }
});

test("LM Studio's structured-output example, with \"strict\": \"true\" as its docs send it, is answered", async () => {
  const response = await fetch(`${server.url}/api/v0/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: MODEL,
      messages: [{ role: "user", content: "Tell me a joke." }],
      response_format: {
        type: "json_schema",
        json_schema: { name: "joke_response", strict: "true", schema: { type: "object", properties: { joke: { type: "string", maxLength: 40 } }, required: ["joke"] } },
      },
      temperature: 0.7,
      max_tokens: 60,
      stream: false,
    }),
  });
  expect(response.status).toBe(200);
  const body = (await response.json()) as { choices: Array<{ message: { content: string } }> };
  expect(typeof (JSON.parse(body.choices[0]?.message.content ?? "") as { joke: unknown }).joke).toBe("string");
});

test("a forced tool call cut off by max_tokens ends with finish_reason length and no text, never half a call", async () => {
  const tools = [
    {
      type: "function" as const,
      function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" }, days: { type: "integer" } }, required: ["city", "days"] } },
    },
  ];
  const request = { model: MODEL, messages: [{ role: "user" as const, content: "Weather?" }], tools, tool_choice: "required" as const, max_tokens: 12, temperature: 0 };
  const plain = await openai.chat.completions.create(request);
  expect(plain.choices[0]?.finish_reason).toBe("length");
  expect(plain.choices[0]?.message.content ?? "").toBe("");
  expect(plain.choices[0]?.message.tool_calls ?? []).toEqual([]);

  let streamedText = "";
  let finish: string | null | undefined;
  for await (const chunk of await openai.chat.completions.create({ ...request, stream: true })) {
    streamedText += chunk.choices[0]?.delta.content ?? "";
    expect(chunk.choices[0]?.delta.tool_calls ?? []).toEqual([]);
    finish ??= chunk.choices[0]?.finish_reason;
  }
  expect(streamedText).toBe("");
  expect(finish).toBe("length");
});
