import { expect, test } from "vitest";
import { ChatRequest, CompletionRequest, LoadRequest } from "./request-schemas.ts";

/** LM Studio's structured-output example (lmstudio.ai/docs, "Structured Output"), as it sends it. */
const LM_STUDIO_EXAMPLE = {
  model: "tiny-chat-f32",
  messages: [{ role: "user", content: "Tell me a joke." }],
  response_format: {
    type: "json_schema",
    json_schema: { name: "joke_response", strict: "true", schema: { type: "object", properties: { joke: { type: "string" } }, required: ["joke"] } },
  },
  temperature: 0.7,
  max_tokens: 50,
  stream: false,
};

test("LM Studio's own structured-output example parses: strict as the string \"true\"", () => {
  const parsed = ChatRequest.parse(LM_STUDIO_EXAMPLE);
  expect(parsed.response_format).toMatchObject({ type: "json_schema", json_schema: { strict: true } });
});

test("string booleans and plain decimal strings are read where clients send them", () => {
  const parsed = ChatRequest.parse({
    ...LM_STUDIO_EXAMPLE,
    stream: "true",
    stream_options: { include_usage: "false" },
    temperature: "0.7",
    max_tokens: "256",
    seed: "-3",
  });
  expect(parsed).toMatchObject({ stream: true, stream_options: { include_usage: false }, temperature: 0.7, max_tokens: 256, seed: -3 });
  expect(LoadRequest.parse({ model: "m", echo_load_config: "true", context_length: 4096 }).echo_load_config).toBe(true);
});

test("anything else stays a 400 naming the field", () => {
  for (const [field, value] of [
    ["stream", "yes"],
    ["stream", 1],
    ["temperature", "hot"],
    ["temperature", "1e3"],
    ["temperature", ""],
    ["max_tokens", "12.5"],
    ["temperature", "3"],
  ] as const) {
    const result = ChatRequest.safeParse({ ...LM_STUDIO_EXAMPLE, [field]: value });
    expect(result.success, `${field}: ${JSON.stringify(value)}`).toBe(false);
    expect(result.error?.issues[0]?.path[0]).toBe(field);
  }
  // Messages stay strict: a number is not a message's text.
  expect(ChatRequest.safeParse({ ...LM_STUDIO_EXAMPLE, messages: [{ role: "user", content: 5 }] }).success).toBe(false);
});

test("n and log probabilities are bounded as OpenAI bounds them, with a 400 naming the field beyond", () => {
  for (const [field, value] of [
    ["n", 9],
    ["n", 0],
    ["top_logprobs", 21],
    ["logprobs", "yes"],
  ] as const) {
    const result = ChatRequest.safeParse({ ...LM_STUDIO_EXAMPLE, [field]: value });
    expect(result.error?.issues[0]?.path[0], `${field}: ${value}`).toBe(field);
  }
  expect(CompletionRequest.safeParse({ model: "m", prompt: "x", logprobs: 6 }).error?.issues[0]?.path[0]).toBe("logprobs");
  expect(ChatRequest.safeParse({ ...LM_STUDIO_EXAMPLE, n: 8, logprobs: true, top_logprobs: 20 }).success).toBe(true);
  expect(ChatRequest.safeParse({ ...LM_STUDIO_EXAMPLE, n: 1, logprobs: false, top_logprobs: null }).success).toBe(true);
  expect(CompletionRequest.safeParse({ model: "m", prompt: "x", n: "3", logprobs: 5 }).success).toBe(true);
  expect(CompletionRequest.safeParse({ model: "m", prompt: "x", n: 1, logprobs: null }).success).toBe(true);
});
