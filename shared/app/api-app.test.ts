import { describe, expect, test } from "vitest";
import { readSse } from "../../test/harness/sse.ts";
import { createApiApp } from "./api-app.ts";
import type { InferenceBackend } from "./inference-backend.ts";
import { ApiError, modelNotFound, noCapacity } from "../protocol/api-error.ts";
import type { GatewayInfo, GenerationEvent, GenerationResult } from "../protocol/generation-events.ts";
import type { ModelObject } from "../protocol/model-schemas.ts";
import type { ModelAdmin } from "../model-management/model-admin-backend.ts";

/**
 * The API app on its own, against a scripted `InferenceBackend`: which route calls what, the
 * bodies it shapes for each API family, its SSE framing and its errors. The real backends (the
 * engine, the fleet) are tested end to end in test/e2e.
 */

const gateway: GatewayInfo = { node: "box-1", queue_ms: 4, overhead_ms: 2, retries: 1 };

const result: GenerationResult = {
  finish_reason: "stop",
  usage: { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 },
  stats: { tokens_per_second: 41.5, time_to_first_token: 0.012, generation_time: 0.06, stop_reason: "eosFound" },
  model_info: { arch: "llama", quant: "Q4_K_M", format: "gguf", context_length: 2048 },
  runtime: { name: "llama.cpp-test", version: "1.2.3", supported_formats: ["gguf"] },
  gateway,
};

const models: ModelObject[] = [
  {
    id: "acme/chat-7b",
    object: "model",
    type: "llm",
    publisher: "acme",
    arch: "llama",
    compatibility_type: "gguf",
    quantization: "Q4_K_M",
    state: "loaded",
    max_context_length: 8192,
    loaded_context_length: 2048,
  },
  {
    id: "embed-small",
    object: "model",
    type: "embeddings",
    publisher: "acme",
    arch: "bert",
    compatibility_type: "gguf",
    quantization: "F16",
    state: "not-loaded",
    max_context_length: 512,
  },
];

const HAPPY: GenerationEvent[] = [
  { type: "start", model: "acme/chat-7b" },
  { type: "delta", text: "Hel" },
  { type: "delta", text: "lo" },
  { type: "done", result },
];

interface Call {
  method: keyof InferenceBackend;
  body?: unknown;
}

/** A backend that answers from a script and records what the app asked of it. */
function fakeBackend(options: { events?: GenerationEvent[]; failWith?: unknown; failAfter?: number } = {}) {
  const calls: Call[] = [];
  const signals: AbortSignal[] = [];
  async function* generation(events: GenerationEvent[], signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    signals.push(signal);
    for (const [index, event] of events.entries()) {
      if (options.failWith !== undefined && index === (options.failAfter ?? 0)) throw options.failWith;
      yield event;
    }
  }
  const backend: InferenceBackend = {
    listModels: async () => {
      calls.push({ method: "listModels" });
      return models;
    },
    chat: (body, signal) => {
      calls.push({ method: "chat", body });
      return generation(options.events ?? HAPPY, signal);
    },
    completion: (body, signal) => {
      calls.push({ method: "completion", body });
      return generation(options.events ?? HAPPY, signal);
    },
    embeddings: async (body) => {
      calls.push({ method: "embeddings", body });
      return { model: "embed-small", embeddings: [[0.5, -1], [0.25, 2]], usage: { prompt_tokens: 3, total_tokens: 3 }, gateway };
    },
    loadModel: async (body) => {
      calls.push({ method: "loadModel", body });
      return { type: "llm", instance_id: "acme/chat-7b", load_time_seconds: 1.5, status: "loaded" };
    },
    unloadModel: async (body) => {
      calls.push({ method: "unloadModel", body });
      return { instance_id: "acme/chat-7b" };
    },
  };
  return { backend, calls, signals };
}

/** Model management is not under test here: any call to it fails the test. */
const noModelAdmin: ModelAdmin = new Proxy({} as ModelAdmin, {
  get: (_, method) => () => Promise.reject(new Error(`unexpected model admin call: ${String(method)}`)),
});

function apiApp(backend: InferenceBackend, options: { maxBodyBytes?: number; onUnexpectedError?: (error: unknown) => void } = {}) {
  return createApiApp({ backend: () => backend, modelAdmin: () => noModelAdmin, openApi: { title: "test", apiKeys: false }, ...options });
}

const post = (body: unknown) => ({ method: "POST", body: typeof body === "string" ? body : JSON.stringify(body) });

const chat = (extra: Record<string, unknown> = {}) => ({ model: "acme/chat-7b", messages: [{ role: "user", content: "Hi" }], ...extra });

async function errorOf(response: Response) {
  expect(response.headers.get("content-type")).toMatch(/^application\/json/);
  return ((await response.json()) as { error: { message: string; type: string; param: string | null; code: string | null } }).error;
}

describe("routes", () => {
  test("GET /lmstudio-greeting answers LM Studio's probe without touching the backend", async () => {
    const { backend, calls } = fakeBackend();
    const response = await apiApp(backend).request("/lmstudio-greeting");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ lmstudio: true });
    expect(calls).toEqual([]);
  });

  test("GET /api/v0/models lists the backend's models as LM Studio objects, unchanged", async () => {
    const response = await apiApp(fakeBackend().backend).request("/api/v0/models");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ object: "list", data: models });
  });

  test("GET /api/v0/models/{model} finds a model whose id has a slash in it", async () => {
    const response = await apiApp(fakeBackend().backend).request("/api/v0/models/acme/chat-7b");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual(models[0]);
  });

  test("GET /v1/models lists OpenAI model objects, with the loaded context length when there is one", async () => {
    const response = await apiApp(fakeBackend().backend).request("/v1/models");
    expect(await response.json()).toEqual({
      object: "list",
      data: [
        { id: "acme/chat-7b", object: "model", created: 0, owned_by: "acme", context_length: 2048 },
        { id: "embed-small", object: "model", created: 0, owned_by: "acme", context_length: 512 },
      ],
    });
    const one = await apiApp(fakeBackend().backend).request("/v1/models/embed-small");
    expect(await one.json()).toEqual({ id: "embed-small", object: "model", created: 0, owned_by: "acme", context_length: 512 });
  });

  test("an unknown model id is a 404 model_not_found that lists the models there are, on both families", async () => {
    for (const path of ["/api/v0/models/nope", "/v1/models/nope"]) {
      const response = await apiApp(fakeBackend().backend).request(path);
      expect(response.status).toBe(404);
      const error = await errorOf(response);
      expect(error).toMatchObject({ type: "invalid_request_error", param: "model", code: "model_not_found" });
      expect(error.message).toContain("acme/chat-7b\nembed-small");
    }
  });

  test("each chat and completion route calls its own backend method with the validated body", async () => {
    const cases = [
      ["/api/v0/chat/completions", "chat"],
      ["/v1/chat/completions", "chat"],
      ["/api/v0/completions", "completion"],
      ["/v1/completions", "completion"],
    ] as const;
    for (const [path, method] of cases) {
      const { backend, calls } = fakeBackend();
      const body = method === "chat" ? chat({ user: "someone", n: 1 }) : { model: "acme/chat-7b", prompt: "Once", user: "someone" };
      const response = await apiApp(backend).request(path, post(body));
      expect(response.status, path).toBe(200);
      expect(calls.map((call) => call.method)).toEqual([method]);
      // Fields the API does not know are stripped before the backend sees the request.
      expect(calls[0]?.body).not.toHaveProperty("user");
      expect(calls[0]?.body).toMatchObject({ model: "acme/chat-7b" });
    }
  });

  test("a body sent without a JSON content type (curl -d) is still read as JSON", async () => {
    const { backend, calls } = fakeBackend();
    const response = await apiApp(backend).request("/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: JSON.stringify(chat()),
    });
    expect(response.status).toBe(200);
    expect(calls[0]?.method).toBe("chat");
  });

  test("load and unload pass the request to the backend and its answer back", async () => {
    const { backend, calls } = fakeBackend();
    const app = apiApp(backend);
    const loaded = await app.request("/api/v1/models/load", post({ model: "acme/chat-7b", context_length: 4096, parallel: 2 }));
    expect(loaded.status).toBe(200);
    expect(await loaded.json()).toEqual({ type: "llm", instance_id: "acme/chat-7b", load_time_seconds: 1.5, status: "loaded" });
    const unloaded = await app.request("/api/v1/models/unload", post({ instance_id: "acme/chat-7b" }));
    expect(await unloaded.json()).toEqual({ instance_id: "acme/chat-7b" });
    expect(calls).toEqual([
      { method: "loadModel", body: { model: "acme/chat-7b", context_length: 4096, parallel: 2 } },
      { method: "unloadModel", body: { instance_id: "acme/chat-7b" } },
    ]);
  });

  test("an unknown path or method is a 404 not_found in the API's error shape", async () => {
    const app = apiApp(fakeBackend().backend);
    for (const [method, path] of [["GET", "/v2/models"], ["GET", "/v1/chat/completions"], ["DELETE", "/api/v0/models"]] as const) {
      const response = await app.request(path, { method });
      expect(response.status).toBe(404);
      expect(await errorOf(response)).toEqual({
        message: `Unexpected endpoint or method. (${method} ${path})`,
        type: "invalid_request_error",
        param: null,
        code: "not_found",
      });
    }
  });
});

describe("response bodies", () => {
  test("/api/v0 chat carries the backend's stats, model_info, runtime and gateway object unchanged", async () => {
    const response = await apiApp(fakeBackend().backend).request("/api/v0/chat/completions", post(chat()));
    const body = await response.json();
    expect(body).toMatchObject({
      object: "chat.completion",
      model: "acme/chat-7b",
      choices: [{ index: 0, logprobs: null, finish_reason: "stop", message: { role: "assistant", content: "Hello" } }],
      usage: result.usage,
      stats: result.stats,
      model_info: result.model_info,
      runtime: result.runtime,
      gateway,
    });
    expect((body as { id: string }).id).toMatch(/^chatcmpl-[a-z0-9]{24}$/);
    // OpenAI's key order: some clients print bodies as they arrive.
    expect(Object.keys(body as object).slice(0, 4)).toEqual(["id", "object", "created", "model"]);
  });

  test("/v1 chat keeps OpenAI's plain shape: no stats, model_info or runtime, but the one gateway object", async () => {
    const response = await apiApp(fakeBackend().backend).request("/v1/chat/completions", post(chat()));
    const body = (await response.json()) as Record<string, unknown>;
    expect(body).not.toHaveProperty("stats");
    expect(body).not.toHaveProperty("model_info");
    expect(body).not.toHaveProperty("runtime");
    expect(body.gateway).toEqual(gateway);
    expect(body.usage).toEqual(result.usage);
  });

  test("a text completion answers with text_completion choices", async () => {
    const response = await apiApp(fakeBackend().backend).request("/api/v0/completions", post({ model: "acme/chat-7b", prompt: "Once" }));
    const body = await response.json();
    expect(body).toMatchObject({
      object: "text_completion",
      choices: [{ index: 0, text: "Hello", logprobs: null, finish_reason: "stop" }],
      stats: result.stats,
    });
    expect((body as { id: string }).id).toMatch(/^cmpl-/);
  });

  test("tool calls come back as the message's tool_calls, with null content when there is no text", async () => {
    const toolCall = { id: "call_1", type: "function" as const, function: { name: "weather", arguments: '{"city":"Oslo"}' } };
    const events: GenerationEvent[] = [
      { type: "start", model: "acme/chat-7b" },
      { type: "done", result: { ...result, finish_reason: "tool_calls", tool_calls: [toolCall] } },
    ];
    const response = await apiApp(fakeBackend({ events }).backend).request("/v1/chat/completions", post(chat()));
    expect(await response.json()).toMatchObject({
      choices: [{ finish_reason: "tool_calls", message: { role: "assistant", content: null, tool_calls: [toolCall] } }],
    });
  });

  test("embeddings come as floats, or as little-endian float32 base64 when asked", async () => {
    const app = apiApp(fakeBackend().backend);
    const floats = await app.request("/v1/embeddings", post({ model: "embed-small", input: ["a", "b"] }));
    expect(await floats.json()).toEqual({
      object: "list",
      data: [
        { object: "embedding", embedding: [0.5, -1], index: 0 },
        { object: "embedding", embedding: [0.25, 2], index: 1 },
      ],
      model: "embed-small",
      usage: { prompt_tokens: 3, total_tokens: 3 },
      gateway,
    });
    const encoded = await app.request("/api/v0/embeddings", post({ model: "embed-small", input: "a", encoding_format: "base64" }));
    const { data } = (await encoded.json()) as { data: Array<{ embedding: string }> };
    const bytes = Uint8Array.from(atob(data[0]!.embedding), (char) => char.charCodeAt(0));
    expect([...new Float32Array(bytes.buffer)]).toEqual([0.5, -1]);
  });
});

describe("validation errors", () => {
  const cases: Array<{ name: string; path: string; body: unknown; param: string | null; message: RegExp }> = [
    { name: "an empty body", path: "/v1/chat/completions", body: "", param: null, message: /body is empty/ },
    { name: "a body that is not JSON", path: "/api/v0/chat/completions", body: "{model:", param: null, message: /not valid JSON/ },
    { name: "no model", path: "/v1/chat/completions", body: { messages: [{ role: "user", content: "Hi" }] }, param: "model", message: /^Invalid 'model'/ },
    { name: "no messages", path: "/api/v0/chat/completions", body: { model: "m", messages: [] }, param: "messages", message: /messages must not be empty/ },
    { name: "a field of the wrong type", path: "/v1/completions", body: { model: "m", prompt: "x", max_tokens: "many" }, param: "max_tokens", message: /^Invalid 'max_tokens'/ },
    { name: "a bad nested field", path: "/v1/chat/completions", body: chat({ messages: [{ role: "user", content: 5 }] }), param: "messages.0.content", message: /^Invalid 'messages\.0\.content'/ },
    { name: "two prompts", path: "/api/v0/completions", body: { model: "m", prompt: ["a", "b"] }, param: "prompt", message: /^Invalid 'prompt'/ },
    { name: "embeddings without input", path: "/v1/embeddings", body: { model: "m" }, param: "input", message: /^Invalid 'input'/ },
    { name: "load without a model", path: "/api/v1/models/load", body: {}, param: "model", message: /^Invalid 'model'/ },
    { name: "unload without instance_id", path: "/api/v1/models/unload", body: {}, param: "instance_id", message: /instance_id is required/ },
  ];

  for (const { name, path, body, param, message } of cases) {
    test(`${name} is a 400 invalid_request naming the field, and never reaches the backend (${path})`, async () => {
      const { backend, calls } = fakeBackend();
      const response = await apiApp(backend).request(path, post(body));
      expect(response.status).toBe(400);
      const error = await errorOf(response);
      expect(error).toMatchObject({ type: "invalid_request_error", code: "invalid_request", param });
      expect(error.message).toMatch(message);
      expect(calls).toEqual([]);
    });
  }

  test("a body over the limit is a 413 payload_too_large", async () => {
    const { backend, calls } = fakeBackend();
    const response = await apiApp(backend, { maxBodyBytes: 64 }).request("/v1/chat/completions", post(chat({ stop: "x".repeat(100) })));
    expect(response.status).toBe(413);
    expect(await errorOf(response)).toMatchObject({ code: "payload_too_large", message: expect.stringContaining("64 bytes") });
    expect(calls).toEqual([]);
  });
});

describe("backend errors", () => {
  test("an ApiError from the backend keeps its status, shape and Retry-After", async () => {
    const { backend } = fakeBackend({ failWith: noCapacity("Every slot is busy.", 2.2) });
    const response = await apiApp(backend).request("/v1/chat/completions", post(chat()));
    expect(response.status).toBe(503);
    expect(response.headers.get("retry-after")).toBe("3");
    expect(await errorOf(response)).toEqual({ message: "Every slot is busy.", type: "server_error", param: null, code: "no_capacity" });
  });

  test("a streamed request refused before it starts gets its own status, not a 200 stream", async () => {
    const { backend } = fakeBackend({ failWith: modelNotFound("nope", ["acme/chat-7b"]) });
    const response = await apiApp(backend).request("/api/v0/chat/completions", post(chat({ stream: true })));
    expect(response.status).toBe(404);
    expect(await errorOf(response)).toMatchObject({ code: "model_not_found", param: "model" });
  });

  test("anything else is a 500 internal_error that says nothing of the cause, which goes to onUnexpectedError", async () => {
    const unexpected: unknown[] = [];
    const cause = new Error("secret detail from deep inside");
    const { backend } = fakeBackend({ failWith: cause });
    const response = await apiApp(backend, { onUnexpectedError: (error) => unexpected.push(error) }).request("/v1/completions", post({ model: "m", prompt: "x" }));
    expect(response.status).toBe(500);
    const error = await errorOf(response);
    expect(error).toMatchObject({ type: "server_error", code: "internal_error" });
    expect(error.message).not.toContain("secret");
    expect(unexpected).toEqual([cause]);
  });

  test("ApiErrors, even 5xx ones, are expected and not reported as unexpected", async () => {
    const unexpected: unknown[] = [];
    const { backend } = fakeBackend({ failWith: new ApiError(502, "The node went away.", { code: "node_disconnected" }) });
    const response = await apiApp(backend, { onUnexpectedError: (error) => unexpected.push(error) }).request("/v1/chat/completions", post(chat()));
    expect(response.status).toBe(502);
    expect(unexpected).toEqual([]);
  });

  test("a generation that ends without done is a 502 incomplete_generation", async () => {
    const { backend } = fakeBackend({ events: HAPPY.slice(0, 3) });
    const response = await apiApp(backend).request("/v1/chat/completions", post(chat()));
    expect(response.status).toBe(502);
    expect(await errorOf(response)).toMatchObject({ code: "incomplete_generation" });
  });
});

describe("SSE streams", () => {
  test("a chat stream is data: frames of chunks (role, deltas, finish), then data: [DONE], each frame ending in a blank line", async () => {
    const response = await apiApp(fakeBackend().backend).request("/v1/chat/completions", post(chat({ stream: true })));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(response.headers.get("cache-control")).toBe("no-cache");
    const text = await response.text();
    const frames = text.split("\n\n");
    expect(frames.pop()).toBe("");
    expect(frames.every((frame) => frame.startsWith("data: ") && !frame.includes("\n"))).toBe(true);
    expect(frames.at(-1)).toBe("data: [DONE]");
    const chunks = frames.slice(0, -1).map((frame) => JSON.parse(frame.slice("data: ".length)) as Record<string, unknown>);
    expect(chunks.map((chunk) => (chunk.choices as Array<Record<string, unknown>>)[0])).toEqual([
      { index: 0, logprobs: null, finish_reason: null, delta: { role: "assistant", content: "" } },
      { index: 0, logprobs: null, finish_reason: null, delta: { content: "Hel" } },
      { index: 0, logprobs: null, finish_reason: null, delta: { content: "lo" } },
      { index: 0, logprobs: null, finish_reason: "stop", delta: {} },
    ]);
    // One id for the whole stream; OpenAI's object name for chunks.
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    expect(chunks.every((chunk) => chunk.object === "chat.completion.chunk" && chunk.model === "acme/chat-7b")).toBe(true);
    // /v1: the last chunk has the gateway object but none of LM Studio's extras, and no usage unless asked.
    expect(chunks.at(-1)).toMatchObject({ gateway });
    expect(chunks.at(-1)).not.toHaveProperty("stats");
    expect(chunks.some((chunk) => "usage" in chunk)).toBe(false);
  });

  test("an /api/v0 stream carries stats, model_info and runtime on its finishing chunk", async () => {
    const response = await apiApp(fakeBackend().backend).request("/api/v0/chat/completions", post(chat({ stream: true })));
    const { events, done } = await readSse(response);
    expect(done).toBe(true);
    expect(events.at(-1)).toMatchObject({ stats: result.stats, model_info: result.model_info, runtime: result.runtime, gateway });
    expect(events.slice(0, -1).some((chunk) => "stats" in (chunk as object))).toBe(false);
  });

  test("stream_options.include_usage adds one chunk with usage and no choices before [DONE]", async () => {
    const response = await apiApp(fakeBackend().backend).request(
      "/v1/chat/completions",
      post(chat({ stream: true, stream_options: { include_usage: true } })),
    );
    const { events, done } = await readSse(response);
    expect(done).toBe(true);
    expect(events.at(-1)).toMatchObject({ object: "chat.completion.chunk", choices: [], usage: result.usage });
    expect(events.at(-2)).toMatchObject({ choices: [{ finish_reason: "stop" }] });
  });

  test("a text completion stream has no role chunk: text deltas, then the finish", async () => {
    const response = await apiApp(fakeBackend().backend).request("/v1/completions", post({ model: "acme/chat-7b", prompt: "Once", stream: true }));
    const { events, done } = await readSse(response);
    expect(done).toBe(true);
    expect(events.map((chunk) => (chunk as { choices: unknown[] }).choices[0])).toEqual([
      { index: 0, logprobs: null, finish_reason: null, text: "Hel" },
      { index: 0, logprobs: null, finish_reason: null, text: "lo" },
      { index: 0, logprobs: null, finish_reason: "stop", text: "" },
    ]);
    expect(events.every((chunk) => (chunk as { object: string }).object === "text_completion")).toBe(true);
  });

  test("streamed tool calls arrive as one delta with indexed tool_calls before the finishing chunk", async () => {
    const toolCall = { id: "call_1", type: "function" as const, function: { name: "weather", arguments: "{}" } };
    const events: GenerationEvent[] = [
      { type: "start", model: "acme/chat-7b" },
      { type: "done", result: { ...result, finish_reason: "tool_calls", tool_calls: [toolCall] } },
    ];
    const response = await apiApp(fakeBackend({ events }).backend).request("/v1/chat/completions", post(chat({ stream: true })));
    const { events: chunks } = await readSse(response);
    expect(chunks.slice(1).map((chunk) => (chunk as { choices: unknown[] }).choices[0])).toEqual([
      { index: 0, logprobs: null, finish_reason: null, delta: { tool_calls: [{ index: 0, ...toolCall }] } },
      { index: 0, logprobs: null, finish_reason: "tool_calls", delta: {} },
    ]);
  });

  test("a failure after the stream started is one error event and the end: no finish, no [DONE]", async () => {
    const failure = new ApiError(502, "The node disconnected in the middle of the generation.", { code: "node_disconnected" });
    const { backend } = fakeBackend({ failWith: failure, failAfter: 2 });
    const response = await apiApp(backend).request("/v1/chat/completions", post(chat({ stream: true })));
    expect(response.status).toBe(200);
    const { events, done } = await readSse(response);
    expect(done).toBe(false);
    expect(events.at(-1)).toEqual({ error: { message: failure.message, type: "server_error", param: null, code: "node_disconnected" } });
    expect(events.some((chunk) => (chunk as { choices?: Array<{ finish_reason: unknown }> }).choices?.[0]?.finish_reason === "stop")).toBe(false);
  });

  test("a stream the backend ends without done ends with an incomplete_generation error event, no [DONE]", async () => {
    const { backend } = fakeBackend({ events: HAPPY.slice(0, 3) });
    const response = await apiApp(backend).request("/api/v0/chat/completions", post(chat({ stream: true })));
    const { events, done } = await readSse(response);
    expect(done).toBe(false);
    expect(events.at(-1)).toMatchObject({ error: { code: "incomplete_generation" } });
  });

  test("a client that stops reading aborts the backend's signal, with client_closed as the reason", async () => {
    const { backend, signals } = fakeBackend();
    const app = apiApp(backend);
    const response = await app.request("/v1/chat/completions", post(chat({ stream: true })));
    const reader = response.body!.getReader();
    await reader.read();
    expect(signals[0]?.aborted).toBe(false);
    await reader.cancel();
    expect(signals[0]?.aborted).toBe(true);
    expect(signals[0]?.reason).toMatchObject({ status: 499, code: "client_closed" });
  });
});
