import { availableParallelism } from "node:os";
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from "vitest";
import { ApiError } from "../../shared/protocol/api-error.ts";
import { Hardware, NodeStatus } from "../../shared/protocol/frames.ts";
import { GenerationResult, type GenerationEvent } from "../../shared/protocol/generation-events.ts";
import { ModelObject } from "../../shared/protocol/model-schemas.ts";
import { ChatRequest, CompletionRequest, EmbeddingsRequest } from "../../shared/protocol/request-schemas.ts";
import { testModelsDir } from "../../test/harness/test-models.ts";
import { defaultThreads } from "../engine/threads.ts";
import { LocalBackend } from "./local-backend.ts";

const CHAT = "tiny-chat-f32";
const CHAT_Q8 = "tiny-chat-q8_0";
const EMBED = "tiny-embed-f32";
/** Token "a" of the tiny models' vocabulary: a +100 logit bias makes the model write it forever. */
const TOKEN_A = "395";

let backend: LocalBackend;
const never = new AbortController().signal;

beforeAll(async () => {
  backend = await LocalBackend.create({ modelDirs: [await testModelsDir()], gpu: false, slots: 4 });
});
afterAll(async () => {
  await backend?.dispose();
});

const chatRequest = (extra: Record<string, unknown> = {}) =>
  ChatRequest.parse({ model: CHAT, messages: [{ role: "user", content: "Hello there" }], temperature: 0, seed: 7, max_tokens: 24, ...extra });
const completionRequest = (extra: Record<string, unknown> = {}) =>
  CompletionRequest.parse({ model: CHAT, prompt: "Once upon a time", temperature: 0, seed: 3, max_tokens: 16, ...extra });

async function collect(events: AsyncIterable<GenerationEvent>) {
  const all: GenerationEvent[] = [];
  for await (const event of events) all.push(event);
  const last = all.at(-1);
  if (last?.type !== "done") throw new Error("the generation ended without a done event");
  const text = all.map((event) => (event.type === "delta" ? event.text : "")).join("");
  return { events: all, text, result: GenerationResult.parse(last.result) };
}

const chat = (extra?: Record<string, unknown>) => collect(backend.chat(chatRequest(extra), never));

/** The first event (or failure) of a run, with nothing consumed after it. */
async function firstOutcome(events: AsyncIterable<GenerationEvent>) {
  const iterator = events[Symbol.asyncIterator]();
  try {
    return { event: (await iterator.next()).value as GenerationEvent | undefined };
  } catch (error) {
    return { error };
  } finally {
    await iterator.return?.();
  }
}

describe("what the backend reports about itself", () => {
  test("every model is listed from disk, none loaded before a request needs it", async () => {
    // A backend of its own: the shared one has whatever models earlier tests loaded.
    const fresh = await LocalBackend.create({ modelDirs: [await testModelsDir()], gpu: false, slots: 4 });
    onTestFinished(() => fresh.dispose());
    const models = (await fresh.listModels()).map((model) => ModelObject.parse(model));
    expect(models.map((model) => [model.id, model.state])).toEqual([
      [CHAT, "not-loaded"],
      [CHAT_Q8, "not-loaded"],
      [EMBED, "not-loaded"],
    ]);
    expect(models[0]).toMatchObject({ type: "llm", publisher: "lmgate", quantization: "F32", max_context_length: 2048, capabilities: ["tool_use"] });
    expect(models[0]?.loaded_context_length).toBeUndefined();
  });

  test("runtime, threads, slots, hardware and status have the gateway protocol's shapes", async () => {
    expect(backend.runtime).toEqual({
      name: expect.stringMatching(/^llama\.cpp-linux-x86_64-cpu$/),
      version: expect.stringContaining("node-llama-cpp 3."),
      supported_formats: ["gguf"],
    });
    // Whatever this machine's cores: the CPU-only default (threads.test.ts has the rule's cases).
    expect(backend.threads).toBe(defaultThreads({ gpu: false, cores: availableParallelism(), mathCores: availableParallelism() }));
    expect(backend.slotsPerModel).toBe(4);
    const hardware = Hardware.parse(await backend.hardware());
    expect(hardware).toMatchObject({ cores: availableParallelism(), gpu: null, gpu_devices: [], vram_bytes: null });
    expect(hardware.memory_bytes).toBeGreaterThan(0);
    const status = NodeStatus.parse(backend.status());
    // For placement: free memory, and what each model takes to load (F32 weights outweigh Q8_0).
    expect(status.memory).toEqual({ ram_free_bytes: expect.any(Number), vram_free_bytes: null });
    expect(status.memory?.ram_free_bytes).toBeGreaterThan(0);
    expect(Object.keys(status.footprints ?? {}).sort()).toEqual([CHAT, CHAT_Q8, EMBED]);
    expect(status.footprints?.[CHAT]?.ram_bytes).toBeGreaterThan(status.footprints?.[CHAT_Q8]?.ram_bytes ?? Infinity);
  });
});

describe("chat and completion", () => {
  test("chat generates text through the model's template, with usage, stats, model_info and runtime filled in", async () => {
    const { events, text, result } = await chat();
    // The prompt is counted before it is read, and countTokens counts it the same way.
    expect(events[0]).toMatchObject({ type: "start", model: CHAT, prompt_tokens: result.usage.prompt_tokens });
    expect(await backend.countTokens(chatRequest())).toEqual({ prompt_tokens: result.usage.prompt_tokens });
    expect(text.length).toBeGreaterThan(0);
    expect(result.usage).toEqual({
      prompt_tokens: expect.any(Number),
      completion_tokens: 24,
      total_tokens: result.usage.prompt_tokens + 24,
      prompt_tokens_details: { cached_tokens: expect.any(Number) },
    });
    // The template wraps the three words in a system prompt and role markers.
    expect(result.usage.prompt_tokens).toBeGreaterThan(20);
    expect(result.stats.tokens_per_second).toBeGreaterThan(0);
    expect(result.stats.time_to_first_token).toBeGreaterThan(0);
    expect(result.stats.generation_time).toBeGreaterThanOrEqual(result.stats.time_to_first_token);
    expect(result.model_info).toEqual({ arch: "llama", quant: "F32", format: "gguf", context_length: 2048 });
    expect(result.runtime).toEqual(backend.runtime);
    const status = NodeStatus.parse(backend.status());
    expect(status.models.find((model) => model.id === CHAT)).toMatchObject({ state: "loaded", loaded_context_length: 2048 });
    expect(status.busy[CHAT]).toBe(0);
    expect(status.speed[CHAT]?.tokens_per_second).toBeGreaterThan(0);
  });

  test("the same seed at temperature 0 gives the same text, and the deltas add up to it", async () => {
    const first = await chat({ max_tokens: 40 });
    const second = await chat({ max_tokens: 40 });
    expect(second.text).toBe(first.text);
    expect(first.events.filter((event) => event.type === "delta").length).toBeGreaterThan(1);
    expect(new Set((await Promise.all([chat({ seed: 1, temperature: 1.5 }), chat({ seed: 2, temperature: 1.5 })])).map((run) => run.text)).size).toBe(2);
  });

  test("completion uses no template: the prompt's own tokens only, and deterministic text", async () => {
    const first = await collect(backend.completion(completionRequest(), never));
    const second = await collect(backend.completion(completionRequest(), never));
    expect(first.text.length).toBeGreaterThan(0);
    expect(second.text).toBe(first.text);
    expect(first.result.usage.prompt_tokens).toBeLessThan(12);
    expect(first.result.usage.completion_tokens).toBe(16);
  });

  test("max_tokens ends with length / maxPredictedTokensReached; max_completion_tokens wins over it", async () => {
    const { result } = await chat({ max_tokens: 5 });
    expect(result).toMatchObject({ finish_reason: "length", usage: { completion_tokens: 5 }, stats: { stop_reason: "maxPredictedTokensReached" } });
    expect((await chat({ max_tokens: 50, max_completion_tokens: 3 })).result.usage.completion_tokens).toBe(3);
  });

  test("a stop string (alone or in a list) cuts the text before it with stopStringFound", async () => {
    const free = (await chat({ max_tokens: 40 })).text;
    const stop = free.slice(8, 11);
    for (const form of [stop, ["\u0000never", stop]]) {
      const { text, result } = await chat({ max_tokens: 40, stop: form });
      expect(text).toBe(free.slice(0, free.indexOf(stop)));
      expect(result).toMatchObject({ finish_reason: "stop", stats: { stop_reason: "stopStringFound" } });
    }
  });

  test("logit_bias steers sampling by token id; an id outside the vocabulary is a 400", async () => {
    const { events } = await chat({ max_tokens: 6, logit_bias: { [TOKEN_A]: 100 } });
    const deltas = events.flatMap((event) => (event.type === "delta" ? [event.text] : []));
    expect(deltas.join("")).toMatch(/^ ?a+$/);
    const { error } = await firstOutcome(backend.chat(chatRequest({ logit_bias: { "999999": 5 } }), never));
    expect(error).toMatchObject({ status: 400, param: "logit_bias" });
  });

  test("a prompt longer than the context is a 400 with the numbers, before any event", async () => {
    const long = Array.from({ length: 3000 }, (_, index) => `w${index}`).join(" ");
    for (const run of [
      backend.chat(chatRequest({ messages: [{ role: "user", content: long }] }), never),
      backend.completion(completionRequest({ prompt: long }), never),
    ]) {
      const { event, error } = await firstOutcome(run);
      expect(event).toBeUndefined();
      expect(error).toBeInstanceOf(ApiError);
      expect(error).toMatchObject({ status: 400, code: "context_length_exceeded" });
      expect((error as ApiError).message).toContain("2048");
    }
    expect(backend.status().busy[CHAT]).toBe(0);
  });

  test("without max_tokens generation may run to the end of the loaded context: contextLengthReached", async () => {
    await backend.loadModel({ model: CHAT_Q8, context_length: 256, parallel: 1, ttl: undefined, echo_load_config: undefined });
    try {
      const prompt = Array.from({ length: 60 }, (_, index) => `w${index}`).join(" ");
      const request = completionRequest({ model: CHAT_Q8, prompt, max_tokens: -1, logit_bias: { [TOKEN_A]: 100 } });
      const { result } = await collect(backend.completion(request, never));
      expect(result).toMatchObject({ finish_reason: "length", stats: { stop_reason: "contextLengthReached" }, model_info: { context_length: 256 } });
      // One cell stays free: node-llama-cpp would shift (drop) the context's start to fill it.
      expect(result.usage.total_tokens).toBe(255);
    } finally {
      await backend.unloadModel({ instance_id: CHAT_Q8, model: undefined });
    }
  });

  test("a prompt that extends the slot's previous one is read from its cache: prompt_tokens_details.cached_tokens", async () => {
    const opening = [{ role: "system", content: `Conversation ${crypto.randomUUID()}.` }, { role: "user", content: "Hello there" }];
    const first = await chat({ messages: opening, max_tokens: 4 });
    // Only the template's first tokens can be shared with whatever ran before.
    expect(first.result.usage.prompt_tokens_details?.cached_tokens).toBeLessThan(first.result.usage.prompt_tokens / 2);
    const next = await chat({ messages: [...opening, { role: "assistant", content: first.text }, { role: "user", content: "And then?" }], max_tokens: 4 });
    expect(next.result.usage.prompt_tokens_details?.cached_tokens).toBeGreaterThan(first.result.usage.prompt_tokens - 8);
    const again = await chat({ messages: [...opening, { role: "assistant", content: first.text }, { role: "user", content: "And then?" }], max_tokens: 4 });
    // All of it but the last token, which is evaluated again for the first token's logits.
    expect(again.result.usage.prompt_tokens_details?.cached_tokens).toBe(again.result.usage.prompt_tokens - 1);
  });

  test("8 concurrent requests over 4 slots all complete, each equal to its own sequential result", async () => {
    const prompts = Array.from({ length: 8 }, (_, index) => `Request number ${index}`);
    const request = (content: string) => chatRequest({ messages: [{ role: "user", content }], max_tokens: 16 });
    const sequential: string[] = [];
    for (const prompt of prompts) sequential.push((await collect(backend.chat(request(prompt), never))).text);
    let busiest = 0;
    const unsubscribe = backend.onStatusChange(() => {
      busiest = Math.max(busiest, backend.status().busy[CHAT] ?? 0);
    });
    const concurrent = await Promise.all(prompts.map(async (prompt) => (await collect(backend.chat(request(prompt), never))).text));
    unsubscribe();
    expect(concurrent).toEqual(sequential);
    expect(new Set(sequential).size).toBeGreaterThan(1);
    expect(busiest).toBe(4);
    expect(backend.status().busy[CHAT]).toBe(0);
  });
});

describe("structured output and tools", () => {
  const person = {
    type: "object",
    properties: {
      name: { type: "string", maxLength: 12 },
      age: { type: "integer" },
      mood: { enum: ["happy", "sad"] },
      tags: { type: "array", items: { type: "string", maxLength: 6 }, maxItems: 3 },
    },
    required: ["name", "age", "mood", "tags"],
    additionalProperties: false,
  };

  test("response_format json_schema gives JSON that validates against the schema", async () => {
    const { text, result } = await chat({
      max_tokens: -1,
      messages: [{ role: "user", content: "Describe a person" }],
      response_format: { type: "json_schema", json_schema: { name: "person", schema: person, strict: true } },
    });
    expect(result.finish_reason).toBe("stop");
    const value = JSON.parse(text) as Record<string, unknown>;
    expect(Object.keys(value).sort()).toEqual(["age", "mood", "name", "tags"]);
    expect(typeof value.name === "string" && value.name.length <= 12).toBe(true);
    expect(Number.isInteger(value.age)).toBe(true);
    expect(["happy", "sad"]).toContain(value.mood);
    expect(Array.isArray(value.tags) && value.tags.length <= 3 && value.tags.every((tag) => typeof tag === "string")).toBe(true);
  });

  test("json_object gives JSON; a schema the grammar cannot enforce is a 400 naming response_format", async () => {
    const { text } = await chat({ max_tokens: -1, response_format: { type: "json_object" }, temperature: 0.7, seed: 11 });
    expect(() => JSON.parse(text)).not.toThrow();
    const unsupported = { type: "json_schema", json_schema: { schema: { type: "string", pattern: "^a+$" } } };
    const { error } = await firstOutcome(backend.chat(chatRequest({ response_format: unsupported }), never));
    expect(error).toMatchObject({ status: 400, param: "response_format" });
    expect((error as ApiError).message).toContain("pattern");
  });

  const weather = {
    type: "function",
    function: {
      name: "get_weather",
      description: "Weather for a city",
      parameters: {
        type: "object",
        properties: { city: { type: "string", maxLength: 16 }, unit: { enum: ["celsius", "fahrenheit"] } },
        required: ["city", "unit"],
      },
    },
  };
  const clock = { type: "function", function: { name: "get_time", parameters: { type: "object", properties: { zone: { enum: ["utc", "local"] } } } } };

  test("a named tool_choice forces a call: tool_calls with valid JSON arguments, finish_reason tool_calls", async () => {
    const { text, result } = await chat({
      messages: [{ role: "user", content: "Weather in Paris?" }],
      max_tokens: 200,
      tools: [clock, weather],
      tool_choice: { type: "function", function: { name: "get_weather" } },
    });
    expect(text).toBe("");
    expect(result).toMatchObject({ finish_reason: "tool_calls", stats: { stop_reason: "toolCalls" } });
    expect(result.tool_calls).toHaveLength(1);
    const call = result.tool_calls![0]!;
    expect(call).toMatchObject({ id: expect.stringMatching(/^call_/), type: "function", function: { name: "get_weather" } });
    const args = JSON.parse(call.function.arguments) as { city: unknown; unit: unknown };
    expect(typeof args.city).toBe("string");
    expect(["celsius", "fahrenheit"]).toContain(args.unit);
  });

  test("tool_choice required calls one of the tools; auto shows the tools to the model; none hides them", async () => {
    const required = await chat({ max_tokens: 200, tools: [clock, weather], tool_choice: "required" });
    expect(["get_time", "get_weather"]).toContain(required.result.tool_calls?.[0]?.function.name);

    const plain = await chat();
    const offered = await chat({ tools: [clock, weather] });
    const hidden = await chat({ tools: [clock, weather], tool_choice: "none" });
    expect(offered.result.usage.prompt_tokens).toBeGreaterThan(plain.result.usage.prompt_tokens + 50);
    expect(offered.result.finish_reason).not.toBe("tool_calls");
    expect(hidden.result.usage.prompt_tokens).toBe(plain.result.usage.prompt_tokens);
  });

  test("a tool round trip in the history (call, then result) is rendered and continued", async () => {
    const base = [{ role: "user", content: "Weather in Paris?" }];
    const roundTrip = [
      ...base,
      { role: "assistant", tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris","unit":"celsius"}' } }] },
      { role: "tool", tool_call_id: "call_1", content: "sunny, 21 degrees" },
    ];
    const before = await chat({ messages: base, tools: [weather] });
    const after = await chat({ messages: roundTrip, tools: [weather] });
    expect(after.result.usage.prompt_tokens).toBeGreaterThan(before.result.usage.prompt_tokens + 20);
    expect(after.result.usage.completion_tokens).toBeGreaterThan(0);
  });
});

describe("embeddings", () => {
  const embed = (input: string | string[], model = EMBED) => backend.embeddings(EmbeddingsRequest.parse({ model, input }), never);

  test("have the model's dimension, one per input, honest token counts, and are deterministic", async () => {
    const first = await embed(["hello world", "goodbye"]);
    expect(first.model).toBe(EMBED);
    expect(first.embeddings.map((vector) => vector.length)).toEqual([64, 64]);
    // Each input gets the model's own [CLS] … [SEP] around its word pieces.
    expect(first.usage.prompt_tokens).toBeGreaterThanOrEqual(3 + 4);
    expect(first.usage.total_tokens).toBe(first.usage.prompt_tokens);
    const again = await embed("hello world");
    expect(again.embeddings[0]).toEqual(first.embeddings[0]);
    expect(first.embeddings[1]).not.toEqual(first.embeddings[0]);
    expect(backend.status().models.find((model) => model.id === EMBED)).toMatchObject({ state: "loaded", loaded_context_length: 512 });
  });

  test("the wrong kind of model, empty or over-long input are 400s; an unknown model is a 404 listing the models", async () => {
    await expect(embed("x", CHAT)).rejects.toMatchObject({ status: 400, param: "model" });
    await expect(collect(backend.chat(chatRequest({ model: EMBED }), never))).rejects.toMatchObject({ status: 400, param: "model" });
    await expect(embed(["fine", ""])).rejects.toMatchObject({ status: 400, param: "input" });
    await expect(embed("word ".repeat(600))).rejects.toMatchObject({ status: 400, code: "context_length_exceeded" });
    const missing = await embed("x", "nope").catch((error: unknown) => error);
    expect(missing).toMatchObject({ status: 404, code: "model_not_found" });
    expect((missing as ApiError).message).toContain(CHAT_Q8);
  });
});
