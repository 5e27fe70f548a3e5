import { expect, test } from "vitest";
import { ApiError, modelNotFound } from "../../shared/protocol/api-error.ts";
import type { GenerationEvent, GenerationResult } from "../../shared/protocol/generation-events.ts";
import { ChatRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "../../shared/protocol/request-schemas.ts";
import { Drain } from "./drain.ts";
import type { NodeSource } from "../link/node-source.ts";
import { TrackedBackend, type FinishedRequest, type RequestRoute } from "./tracked-backend.ts";

const result: GenerationResult = {
  finish_reason: "stop",
  usage: { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 },
  stats: { tokens_per_second: 50, time_to_first_token: 0.002, generation_time: 0.05, stop_reason: "eosFound" },
  model_info: { arch: "llama", quant: "F32", format: "gguf", context_length: 64 },
  runtime: { name: "test", version: "0", supported_formats: ["gguf"] },
};

/** A source whose chat emits `start`, two deltas and `done`, or fails as told. */
function fakeSource(options: { fail?: unknown; failAfterStart?: unknown; stopped?: boolean } = {}): NodeSource {
  return {
    runtime: result.runtime,
    slotsPerModel: 1,
    status: () => ({ models: [], busy: {}, speed: {} }),
    hardware: async () => ({ cpu: "x", cores: 1, memory_bytes: 1, gpu: null, gpu_devices: [], vram_bytes: null }),
    onStatusChange: () => () => {},
    listModels: async () => [],
    async *chat(): AsyncGenerator<GenerationEvent> {
      if (options.fail) throw options.fail;
      yield { type: "start", model: "m" };
      if (options.failAfterStart) throw options.failAfterStart;
      yield { type: "delta", text: "a" };
      yield { type: "delta", text: "b" };
      yield { type: "done", result: options.stopped ? { ...result, stats: { ...result.stats, stop_reason: "userStopped" } } : result };
    },
    completion: () => {
      throw new Error("unused");
    },
    embeddings: async () => ({ model: "e", embeddings: [[0]], usage: { prompt_tokens: 4, total_tokens: 4 } }),
    loadModel: async () => ({ type: "llm", instance_id: "m", load_time_seconds: 0, status: "loaded" }),
    unloadModel: async () => {
      throw new ApiError(404, "not loaded", { code: "model_not_loaded" });
    },
  };
}

function recorder() {
  const started: RequestRoute[] = [];
  const ended: FinishedRequest[] = [];
  return { started, ended, observer: { onRequestStart: (route: RequestRoute) => started.push(route), onRequestEnd: (request: FinishedRequest) => ended.push(request) } };
}

const chatRequest = (model = "m") => ChatRequest.parse({ model, messages: [{ role: "user", content: "hi" }] });
const never = new AbortController().signal;
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

test("a generation is recorded once, at its done event, with usage, speed and time to first token", async () => {
  const { started, ended, observer } = recorder();
  const backend = new TrackedBackend(fakeSource(), { observer });
  const events: GenerationEvent[] = [];
  // Stop pulling at `done`, as the API app does: the request must count as ended already.
  for await (const event of backend.chat(chatRequest(), never)) {
    events.push(event);
    if (event.type === "done") break;
  }
  expect(events.map((event) => event.type)).toEqual(["start", "delta", "delta", "done"]);
  expect(started).toEqual(["chat/completions"]);
  expect(ended).toHaveLength(1);
  expect(ended[0]).toMatchObject({ route: "chat/completions", model: "m", status: 200, promptTokens: 11, completionTokens: 3, tokensPerSecond: 50 });
  expect(ended[0]?.timeToFirstTokenSeconds).toBeGreaterThanOrEqual(0.002);
  expect(ended[0]?.seconds).toBeGreaterThanOrEqual(0);
});

test("failures are recorded with their status; unknown model ids become 'unknown'; a caller who leaves is a 499, with the tokens spent when the engine reports them", async () => {
  const { ended, observer } = recorder();
  const failing = (fail: Record<string, unknown>) => new TrackedBackend(fakeSource(fail), { observer });
  await expect(failing({ fail: modelNotFound("made-up", []) }).chat(chatRequest("made-up"), never).next()).rejects.toThrow(ApiError);

  const midway = failing({ failAfterStart: new Error("boom") }).chat(chatRequest(), never);
  await midway.next();
  await expect(midway.next()).rejects.toThrow("boom");

  const left = new TrackedBackend(fakeSource(), { observer }).chat(chatRequest(), never);
  await left.next();
  await left.return(undefined);

  // Aborted, then drained to its result (what the link does after the gateway's cancel).
  for await (const event of new TrackedBackend(fakeSource({ stopped: true }), { observer }).chat(chatRequest(), never)) {
    if (event.type === "done") break;
  }

  await expect(new TrackedBackend(fakeSource(), { observer }).unloadModel(UnloadRequest.parse({ instance_id: "m" }))).rejects.toThrow("not loaded");
  await new TrackedBackend(fakeSource(), { observer }).embeddings(EmbeddingsRequest.parse({ model: "e", input: "x" }), never);

  expect(ended.map(({ route, model, status }) => `${route} ${model} ${status}`)).toEqual([
    "chat/completions unknown 404",
    "chat/completions m 500",
    "chat/completions m 499",
    "chat/completions m 499",
    "models/unload m 404",
    "embeddings e 200",
  ]);
  expect(ended.at(-1)?.promptTokens).toBe(4);
  expect(ended[3]).toMatchObject({ promptTokens: 11, completionTokens: 3 });
});

test("with a drain, running requests hold it until shortly after their result, and new ones get a 503 once it closes", async () => {
  const drain = new Drain();
  const { ended, observer } = recorder();
  const backend = new TrackedBackend(fakeSource(), { drain, observer });
  const running = backend.chat(chatRequest(), never);
  await running.next();
  expect(drain.active).toBe(1);

  const closed = drain.close(5_000);
  const refused = await backend.chat(chatRequest(), never).next().catch((error: unknown) => error);
  expect(refused).toBeInstanceOf(ApiError);
  expect(refused).toMatchObject({ status: 503, code: "shutting_down" });
  expect((refused as ApiError).retryAfter).toBeGreaterThan(0);
  await expect(backend.loadModel(LoadRequest.parse({ model: "m" }))).rejects.toMatchObject({ status: 503 });

  for (let next = await running.next(); !next.done; next = await running.next()) if (next.value.type === "done") break;
  // The consumer sends the result on in the same turn; the drain hears of the end a turn later.
  expect(drain.active).toBe(1);
  await nextTurn();
  expect(drain.active).toBe(0);
  await expect(closed).resolves.toBe(true);
  expect(ended.map(({ status }) => status)).toEqual([503, 503, 200]);
});

test("a drain that cannot empty in time resolves to false at its deadline", async () => {
  const drain = new Drain();
  const end = drain.begin();
  expect(await drain.close(10)).toBe(false);
  expect(drain.draining).toBe(true);
  end();
  end();
  expect(drain.active).toBe(0);
  expect(await drain.close(10)).toBe(true);
});
