import { join } from "node:path";
import { getLlama } from "node-llama-cpp";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { LocalBackend } from "../../node-agent/serving/local-backend.ts";
import { LocalModelAdmin } from "../../node-agent/serving/model-admin.ts";
import { startDirectServer, type DirectServer } from "../../node-agent/serving/direct-server.ts";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import { ModelObject, OpenAIModelObject } from "../../shared/protocol/model-schemas.ts";
import {
  ChatCompletion,
  ChatCompletionChunk,
  EmbeddingsResponse,
  TextCompletion,
  TextCompletionChunk,
} from "../../shared/openai-completions/completion-schemas.ts";
import { testModelsDir } from "../harness/test-models.ts";
import { readSse } from "../harness/sse.ts";

const CHAT = "tiny-chat-f32";
const CHAT_FILE = "lmgate/tiny-chat-GGUF/tiny-chat-F32.gguf";
const CHAT_Q8 = "tiny-chat-q8_0";
const EMBED = "tiny-embed-f32";

let backend: LocalBackend;
let server: DirectServer;

beforeAll(async () => {
  backend = await LocalBackend.create({ modelDirs: [await testModelsDir()], threads: 1, gpu: false, slots: 4, maxQueue: 8 });
  server = await startDirectServer({ backend, modelAdmin: new LocalModelAdmin(backend, { modelDirs: [await testModelsDir()] }), host: "127.0.0.1", port: 0 });
});
afterAll(async () => {
  await server?.close();
  await backend?.dispose();
});

const post = (path: string, body: unknown, init: RequestInit = {}) =>
  fetch(`${server.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...init,
  });

const chatBody = (content: string, extra: Record<string, unknown> = {}) => ({
  model: CHAT,
  messages: [{ role: "user", content }],
  temperature: 0,
  seed: 7,
  max_tokens: 24,
  ...extra,
});

async function expectError(response: Response, status: number, code?: string) {
  expect(response.status).toBe(status);
  expect(response.headers.get("content-type")).toContain("application/json");
  const body = ErrorBody.parse(await response.json());
  if (code) expect(body.error.code).toBe(code);
  return body.error;
}

describe("model listing", () => {
  test("GET /lmstudio-greeting answers like LM Studio", async () => {
    const response = await fetch(`${server.url}/lmstudio-greeting`);
    expect(await response.json()).toEqual({ lmstudio: true });
  });

  test("GET /api/v0/models lists every model with its metadata, read from the files", async () => {
    const body = (await (await fetch(`${server.url}/api/v0/models`)).json()) as { object: string; data: unknown[] };
    expect(body.object).toBe("list");
    const models = body.data.map((model) => ModelObject.parse(model));
    const byId = new Map(models.map((model) => [model.id, model]));
    expect([...byId.keys()].sort()).toEqual([CHAT, CHAT_Q8, EMBED].sort());
    expect(byId.get(CHAT)).toMatchObject({ type: "llm", arch: "llama", quantization: "F32", publisher: "lmgate", max_context_length: 2048 });
    expect(byId.get(CHAT_Q8)?.quantization).toBe("Q8_0");
    expect(byId.get(EMBED)?.type).toBe("embeddings");
  });

  test("GET /api/v0/models/{id} returns one model, 404 model_not_found listing the others", async () => {
    const model = ModelObject.parse(await (await fetch(`${server.url}/api/v0/models/${CHAT_Q8}`)).json());
    expect(model.id).toBe(CHAT_Q8);
    const error = await expectError(await fetch(`${server.url}/api/v0/models/nope`), 404, "model_not_found");
    expect(error.message).toContain(CHAT);
  });

  test("GET /v1/models is OpenAI-shaped with context_length", async () => {
    const body = (await (await fetch(`${server.url}/v1/models`)).json()) as { data: unknown[] };
    const models = body.data.map((model) => OpenAIModelObject.parse(model));
    expect(models.find((model) => model.id === CHAT)?.context_length).toBeGreaterThan(0);
    expect(OpenAIModelObject.parse(await (await fetch(`${server.url}/v1/models/${CHAT}`)).json()).id).toBe(CHAT);
  });
});

describe("chat and completions", () => {
  test("POST /api/v0/chat/completions fills stats, model_info and runtime from the run", async () => {
    const response = await post("/api/v0/chat/completions", chatBody("Hello there"));
    expect(response.status).toBe(200);
    const body = ChatCompletion.parse(await response.json());
    expect(body.id).toMatch(/^chatcmpl-[a-z0-9]+$/);
    expect(body.model).toBe(CHAT);
    expect(body.choices[0]?.message.content?.length).toBeGreaterThan(0);
    expect(body.usage.prompt_tokens).toBeGreaterThan(0);
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + body.usage.completion_tokens);
    expect(body.stats?.tokens_per_second).toBeGreaterThan(0);
    expect(body.stats?.time_to_first_token).toBeGreaterThan(0);
    expect(body.stats?.generation_time).toBeGreaterThanOrEqual(body.stats?.time_to_first_token ?? 0);
    expect(body.model_info).toEqual({ arch: "llama", quant: "F32", format: "gguf", context_length: 2048 });
    expect(body.runtime?.name).toMatch(/^llama\.cpp-linux-x86_64-(cpu|cuda|vulkan)$/);
    expect(body.runtime?.supported_formats).toEqual(["gguf"]);
  });

  test("/v1/chat/completions keeps OpenAI's plain shape", async () => {
    const body = ChatCompletion.parse(await (await post("/v1/chat/completions", chatBody("Hi"))).json());
    expect(body.stats).toBeUndefined();
    expect(body.model_info).toBeUndefined();
  });

  test("streamed text equals non-streamed text at temperature 0 with a seed, and the final chunk carries stats", async () => {
    const plain = ChatCompletion.parse(await (await post("/api/v0/chat/completions", chatBody("Tell me a story"))).json());
    const response = await post("/api/v0/chat/completions", chatBody("Tell me a story", { stream: true, stream_options: { include_usage: true } }));
    expect(response.headers.get("content-type")).toContain("text/event-stream");
    const { events, done } = await readSse(response);
    expect(done).toBe(true);
    const chunks = events.map((event) => ChatCompletionChunk.parse(event));
    expect(chunks[0]?.choices[0]?.delta.role).toBe("assistant");
    const text = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("");
    expect(text).toBe(plain.choices[0]?.message.content);
    const finishing = chunks.find((chunk) => chunk.choices[0]?.finish_reason);
    expect(finishing?.choices[0]?.finish_reason).toBe(plain.choices[0]?.finish_reason);
    expect(finishing?.stats?.stop_reason).toBe(plain.stats?.stop_reason);
    expect(finishing?.model_info?.quant).toBe("F32");
    const usageChunk = chunks.at(-1);
    expect(usageChunk?.choices).toEqual([]);
    // The same prompt again: its tokens come from the cache this time.
    expect(usageChunk?.usage).toEqual({ ...plain.usage, prompt_tokens_details: { cached_tokens: plain.usage.prompt_tokens - 1 } });
  });

  test("max_tokens stops with finish_reason length / maxPredictedTokensReached", async () => {
    const body = ChatCompletion.parse(await (await post("/api/v0/chat/completions", chatBody("Count", { max_tokens: 5 }))).json());
    expect(body.usage.completion_tokens).toBe(5);
    expect(body.choices[0]?.finish_reason).toBe("length");
    expect(body.stats?.stop_reason).toBe("maxPredictedTokensReached");
  });

  test("a stop string cuts the text before it with stopStringFound", async () => {
    const free = ChatCompletion.parse(await (await post("/api/v0/chat/completions", chatBody("Go on", { max_tokens: 40 }))).json());
    const text = free.choices[0]?.message.content ?? "";
    const stop = text.slice(8, 11);
    expect(stop.length).toBe(3);
    for (const form of [stop, [stop, "\u0000never"]]) {
      const body = ChatCompletion.parse(
        await (await post("/api/v0/chat/completions", chatBody("Go on", { max_tokens: 40, stop: form }))).json(),
      );
      expect(body.choices[0]?.message.content).toBe(text.slice(0, text.indexOf(stop)));
      expect(body.choices[0]?.finish_reason).toBe("stop");
      expect(body.stats?.stop_reason).toBe("stopStringFound");
    }
  });

  test("response_format json_schema gives output that parses and validates", async () => {
    const schema = {
      type: "object",
      properties: { name: { type: "string" }, age: { type: "integer" }, tags: { type: "array", items: { type: "string" } } },
      required: ["name", "age", "tags"],
      additionalProperties: false,
    };
    const body = ChatCompletion.parse(
      await (
        await post(
          "/api/v0/chat/completions",
          chatBody("Describe a person", { max_tokens: 200, response_format: { type: "json_schema", json_schema: { name: "person", schema, strict: true } } }),
        )
      ).json(),
    );
    const value = JSON.parse(body.choices[0]?.message.content ?? "") as Record<string, unknown>;
    expect(Object.keys(value).sort()).toEqual(["age", "name", "tags"]);
    expect(typeof value.name).toBe("string");
    expect(Number.isInteger(value.age)).toBe(true);
    expect(Array.isArray(value.tags)).toBe(true);
  });

  test("tool_choice naming a function returns tool_calls with finish_reason tool_calls", async () => {
    const tools = [
      {
        type: "function",
        function: {
          name: "get_weather",
          description: "Weather for a city",
          // Bounded: a random model never closes an unbounded string by itself.
          parameters: { type: "object", properties: { city: { type: "string", maxLength: 16 } }, required: ["city"] },
        },
      },
    ];
    const body = ChatCompletion.parse(
      await (
        await post(
          "/api/v0/chat/completions",
          chatBody("Weather in Paris?", { max_tokens: 120, tools, tool_choice: { type: "function", function: { name: "get_weather" } } }),
        )
      ).json(),
    );
    expect(body.choices[0]?.finish_reason).toBe("tool_calls");
    expect(body.stats?.stop_reason).toBe("toolCalls");
    const call = body.choices[0]?.message.tool_calls?.[0];
    expect(call?.function.name).toBe("get_weather");
    expect(typeof (JSON.parse(call?.function.arguments ?? "") as { city: unknown }).city).toBe("string");
  });

  test("POST /api/v0/completions applies no template and streams the same text", async () => {
    const request = { model: CHAT, prompt: "Once upon a time", temperature: 0, seed: 3, max_tokens: 16 };
    const body = TextCompletion.parse(await (await post("/api/v0/completions", request)).json());
    expect(body.id).toMatch(/^cmpl-/);
    expect(body.choices[0]?.text.length).toBeGreaterThan(0);
    expect(body.stats?.stop_reason).toBe("maxPredictedTokensReached");
    // The prompt the model saw is the text's own tokens (and BOS), not the chat template's ~2x.
    const vocabulary = await (await getLlama({ gpu: false })).loadModel({ modelPath: join(await testModelsDir(), CHAT_FILE), vocabOnly: true });
    const rawTokens = vocabulary.tokenize(request.prompt).length + (vocabulary.tokens.shouldPrependBosToken ? 1 : 0);
    await vocabulary.dispose();
    expect(body.usage.prompt_tokens).toBe(rawTokens);
    const { events, done } = await readSse(await post("/api/v0/completions", { ...request, stream: true }));
    expect(done).toBe(true);
    const text = events.map((event) => TextCompletionChunk.parse(event).choices[0]?.text ?? "").join("");
    expect(text).toBe(body.choices[0]?.text);
  });

  test("8 concurrent requests over 4 slots all complete, each with its own output", async () => {
    const prompts = Array.from({ length: 8 }, (_, index) => `Request number ${index}`);
    const sequential: string[] = [];
    for (const prompt of prompts) {
      const body = ChatCompletion.parse(await (await post("/api/v0/chat/completions", chatBody(prompt, { max_tokens: 16 }))).json());
      sequential.push(body.choices[0]?.message.content ?? "");
    }
    const concurrent = await Promise.all(
      prompts.map(async (prompt) => {
        const response = await post("/api/v0/chat/completions", chatBody(prompt, { max_tokens: 16 }));
        expect(response.status).toBe(200);
        return ChatCompletion.parse(await response.json()).choices[0]?.message.content ?? "";
      }),
    );
    expect(concurrent).toEqual(sequential);
    expect(new Set(sequential).size).toBeGreaterThan(1);
  });
});

describe("embeddings", () => {
  test("have the model's dimension, one per input, and are deterministic", async () => {
    const first = EmbeddingsResponse.parse(await (await post("/api/v0/embeddings", { model: EMBED, input: ["hello world", "goodbye"] })).json());
    expect(first.data.map((item) => item.index)).toEqual([0, 1]);
    const dimension = first.data[0]?.embedding.length ?? 0;
    expect(dimension).toBeGreaterThan(0);
    expect(first.data[1]?.embedding.length).toBe(dimension);
    expect(first.usage.prompt_tokens).toBeGreaterThan(0);
    const again = EmbeddingsResponse.parse(await (await post("/v1/embeddings", { model: EMBED, input: "hello world" })).json());
    expect(again.data[0]?.embedding).toEqual(first.data[0]?.embedding);
  });
});

describe("bad input gets a clear OpenAI-shaped error", () => {
  test("invalid JSON → 400", async () => {
    await expectError(await post("/v1/chat/completions", "{not json"), 400);
  });
  test("wrong types → 400 naming the field", async () => {
    const error = await expectError(await post("/v1/chat/completions", chatBody("x", { temperature: "hot" })), 400);
    expect(error.param).toBe("temperature");
  });
  test("empty messages → 400", async () => {
    const error = await expectError(await post("/v1/chat/completions", { model: CHAT, messages: [] }), 400);
    expect(error.param).toBe("messages");
  });
  test("unknown model → 404 model_not_found", async () => {
    await expectError(await post("/api/v0/chat/completions", { ...chatBody("x"), model: "nope" }), 404, "model_not_found");
  });
  test("a prompt longer than the context → 400 that says the numbers, also when streaming", async () => {
    const long = Array.from({ length: 3000 }, (_, index) => `w${index}`).join(" ");
    for (const stream of [false, true]) {
      const error = await expectError(await post("/api/v0/chat/completions", chatBody(long, { stream })), 400, "context_length_exceeded");
      expect(error.message).toContain("2048");
    }
  });
  test("unknown route → 404, not LM Studio's 200", async () => {
    await expectError(await fetch(`${server.url}/v1/nothing-here`), 404);
  });
  test("an embeddings request to a chat model → 400", async () => {
    await expectError(await post("/v1/embeddings", { model: CHAT, input: "x" }), 400);
  });
  test("a body over the limit → 413", async () => {
    await expectError(await post("/v1/chat/completions", chatBody("x".repeat(2 * 1024 * 1024))), 413);
  });
});

describe("the official openai client", () => {
  test("chat (plain and streaming), completions, embeddings and models work against /v1", async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "not-needed-in-direct-mode" });
    const models = await client.models.list();
    expect(models.data.map((model) => model.id)).toContain(CHAT);
    const chat = await client.chat.completions.create({ model: CHAT, messages: [{ role: "user", content: "Hi" }], max_tokens: 8, temperature: 0, seed: 1 });
    expect(chat.choices[0]?.message.content?.length).toBeGreaterThan(0);
    let streamed = "";
    for await (const chunk of await client.chat.completions.create({
      model: CHAT,
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 8,
      temperature: 0,
      seed: 1,
      stream: true,
    })) {
      streamed += chunk.choices[0]?.delta.content ?? "";
    }
    expect(streamed).toBe(chat.choices[0]?.message.content);
    const completion = await client.completions.create({ model: CHAT, prompt: "Hello", max_tokens: 4, temperature: 0 });
    expect(completion.choices[0]?.text.length).toBeGreaterThan(0);
    const embedding = await client.embeddings.create({ model: EMBED, input: "hello" });
    expect(embedding.data[0]?.embedding.length).toBeGreaterThan(0);
    await expect(client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] })).rejects.toMatchObject({ status: 404 });
  });
});
