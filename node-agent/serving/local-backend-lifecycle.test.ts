import { afterAll, beforeAll, beforeEach, expect, test } from "vitest";
import { ApiError } from "../../shared/protocol/api-error.ts";
import type { GenerationEvent } from "../../shared/protocol/generation-events.ts";
import { LoadResult } from "../../shared/protocol/model-schemas.ts";
import { ChatRequest, CompletionRequest, LoadRequest, UnloadRequest } from "../../shared/protocol/request-schemas.ts";
import { testModelsDir } from "../../test/harness/test-models.ts";
import { LocalBackend } from "./local-backend.ts";

const CHAT = "tiny-chat-f32";
const CHAT_Q8 = "tiny-chat-q8_0";
const EMBED = "tiny-embed-f32";
/** Token "a": a +100 logit bias keeps the model writing it, so a generation lasts as long as max_tokens. */
const TOKEN_A = "395";

// One slot, one waiting request and one model at a time make queueing and eviction observable.
let backend: LocalBackend;
const progress: Array<[string, number]> = [];
const never = new AbortController().signal;

beforeAll(async () => {
  backend = await LocalBackend.create({
    modelDirs: [await testModelsDir()],
    gpu: false,
    slots: 1,
    maxQueue: 1,
    maxLoadedModels: 1,
    onLoadProgress: (model, fraction) => progress.push([model, fraction]),
  });
});
afterAll(async () => {
  await backend?.dispose();
});
beforeEach(async () => {
  for (const model of backend.status().models) if (model.state === "loaded") await backend.unloadModel(unload(model.id));
  progress.length = 0;
});

const unload = (id: string) => UnloadRequest.parse({ instance_id: id });
const load = (body: Record<string, unknown>) => backend.loadModel(LoadRequest.parse(body));
/** llama.cpp decodes run for CHAT since its load (the agent's `lmgate_agent_decodes_total`). */
const decodes = () => backend.slotUsage().find((usage) => usage.model === CHAT)?.batches?.decodes ?? 0;
const states = () => Object.fromEntries(backend.status().models.map((model) => [model.id, model.state]));
const chatRequest = (model = CHAT, extra: Record<string, unknown> = {}) =>
  ChatRequest.parse({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 4, ...extra });
/** Runs until max_tokens: about a second here, long enough to queue behind or abort. */
const longRequest = (model = CHAT) => CompletionRequest.parse({ model, prompt: "a", max_tokens: 1500, logit_bias: { [TOKEN_A]: 100 } });

async function drain(events: AsyncIterable<GenerationEvent>): Promise<GenerationEvent[]> {
  const all: GenerationEvent[] = [];
  for await (const event of events) all.push(event);
  return all;
}

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test("a request loads its model just in time; concurrent requests share that one load", async () => {
  expect(states()[CHAT]).toBe("not-loaded");
  await Promise.all([drain(backend.chat(chatRequest(), never)), drain(backend.chat(chatRequest(), never))]);
  expect(states()[CHAT]).toBe("loaded");
  expect(progress.filter(([model, fraction]) => model === CHAT && fraction === 1)).toHaveLength(1);
  expect(progress[0]).toEqual([CHAT, 0]);
  expect(progress.every(([, fraction], index) => index === 0 || fraction >= (progress[index - 1]?.[1] ?? 0))).toBe(true);
});

test("a JIT load over the model limit evicts the least recently used idle JIT model; explicit loads are never evicted", async () => {
  await drain(backend.chat(chatRequest(CHAT), never));
  await drain(backend.chat(chatRequest(CHAT_Q8), never));
  expect(states()).toMatchObject({ [CHAT]: "not-loaded", [CHAT_Q8]: "loaded" });

  const loaded = LoadResult.parse(await load({ model: CHAT, context_length: 512, echo_load_config: true }));
  expect(loaded).toMatchObject({ type: "llm", instance_id: CHAT, status: "loaded", load_config: { context_length: 512, parallel: 1 } });
  await backend.embeddings({ model: EMBED, input: "hello", encoding_format: undefined, ttl: undefined }, never);
  expect(states()).toMatchObject({ [CHAT]: "loaded", [CHAT_Q8]: "not-loaded", [EMBED]: "loaded" });
  expect(backend.status().models.find((model) => model.id === CHAT)?.loaded_context_length).toBe(512);
});

test("a JIT-loaded model unloads after its request's ttl of idleness, never while a request is still running", async () => {
  const events = backend.chat(chatRequest(CHAT, { ttl: 1 }), never)[Symbol.asyncIterator]();
  await events.next();
  // The request lasts until its consumer has the result, however long that takes. A witness (on a
  // backend of its own: this one holds one model) loaded after it with the same ttl unloads first;
  // by then CHAT's ttl would have run out too, had its idle time started.
  const witness = await LocalBackend.create({ modelDirs: [await testModelsDir()], gpu: false, slots: 1 });
  try {
    await witness.loadModel(LoadRequest.parse({ model: CHAT_Q8, ttl: 1 }));
    await waitUntil(() => witness.status().models.find((model) => model.id === CHAT_Q8)?.state === "not-loaded", 5000);
  } finally {
    await witness.dispose();
  }
  expect(states()[CHAT]).toBe("loaded");
  while (!(await events.next()).done);
  const idleSince = Date.now();
  await waitUntil(() => states()[CHAT] === "not-loaded", 5000);
  expect(Date.now() - idleSince).toBeGreaterThan(900);
});

test("a request ends at its done: a consumer that stops pulling there, as the API app does, leaves its model idle for its ttl", async () => {
  const events = backend.chat(chatRequest(CHAT, { ttl: 1 }), never)[Symbol.asyncIterator]();
  let last = await events.next();
  while (!last.done && last.value.type !== "done") last = await events.next();
  expect(last.value).toMatchObject({ type: "done" });
  // Never pulled again, never closed: the ttl still runs out.
  await waitUntil(() => states()[CHAT] === "not-loaded", 5000);
});

test("explicit load: idle TTL only when asked; unload of a model that is not loaded is a 404 that says so", async () => {
  const result = await load({ model: CHAT_Q8, ttl: 1 });
  expect(result.load_config).toBeUndefined();
  await waitUntil(() => states()[CHAT_Q8] === "not-loaded", 5000);
  await load({ model: CHAT_Q8 });
  expect(await backend.unloadModel(unload(CHAT_Q8))).toEqual({ instance_id: CHAT_Q8 });
  await load({ model: CHAT });
  const missing = await backend.unloadModel(unload(CHAT_Q8)).catch((error: unknown) => error);
  expect(missing).toBeInstanceOf(ApiError);
  expect(missing).toMatchObject({ status: 404, code: "model_not_loaded" });
  // Behind a gateway this reaches keys that may not see the other loaded models.
  expect((missing as ApiError).message).not.toContain(CHAT);
  await expect(load({ model: "nope" })).rejects.toMatchObject({ status: 404, code: "model_not_found" });
});

test("a load with other settings while the model is in use is a 409 model_in_use; the running request goes on", async () => {
  const running = backend.completion(longRequest(), never)[Symbol.asyncIterator]();
  expect((await running.next()).value).toMatchObject({ type: "start" });
  await expect(load({ model: CHAT, context_length: 512 })).rejects.toMatchObject({ status: 409, code: "model_in_use" });
  expect((await running.next()).value).toMatchObject({ type: "delta" });
  await running.return?.(undefined);
  expect(backend.status().busy[CHAT]).toBe(0);
});

test("a full queue answers 503 with Retry-After; an aborted queued request leaves the queue", async () => {
  const running = backend.completion(longRequest(), never)[Symbol.asyncIterator]();
  expect((await running.next()).value).toMatchObject({ type: "start" });
  const giveUp = new AbortController();
  const queued = backend.completion(longRequest(), giveUp.signal)[Symbol.asyncIterator]().next();
  await waitUntil(() => backend.slotUsage().find((usage) => usage.model === CHAT)?.queued === 1, 5000);
  const refused = await drain(backend.completion(longRequest(), never)).catch((error: unknown) => error);
  expect(refused).toMatchObject({ status: 503, code: "no_capacity" });
  expect((refused as ApiError).retryAfter).toBeGreaterThan(0);

  giveUp.abort();
  await expect(queued).rejects.toMatchObject({ status: 499 });
  const next = backend.chat(chatRequest(), never)[Symbol.asyncIterator]();
  const nowQueued = next.next();
  await running.return?.(undefined);
  expect((await nowQueued).value).toMatchObject({ type: "start" });
  // Let it go, so no request of this test is still running when the next one counts status changes.
  await next.return?.(undefined);
  expect(backend.status().busy[CHAT]).toBe(0);
});

test("aborting a running generation ends it as userStopped and frees its slot at once", async () => {
  const abort = new AbortController();
  const events = backend.completion(longRequest(), abort.signal)[Symbol.asyncIterator]();
  await events.next();
  let next = await events.next();
  expect(next.value).toMatchObject({ type: "delta" });
  expect(backend.status().busy[CHAT]).toBe(1);
  abort.abort();
  while (!next.done && next.value.type !== "done") next = await events.next();
  expect(next.value).toMatchObject({ type: "done", result: { finish_reason: "stop", stats: { stop_reason: "userStopped" } } });
  // Stopped, not run out: far short of the 1,500 tokens it asked for (which the logit bias makes it write).
  expect(next.value?.type === "done" && next.value.result.usage.completion_tokens).toBeLessThan(longRequest().max_tokens! / 2);
  expect(backend.status().busy[CHAT]).toBe(0);
});

test("a consumer that stops iterating stops the generation; unloading stops running ones with modelUnloaded", async () => {
  const events = backend.completion(longRequest(), never)[Symbol.asyncIterator]();
  await events.next();
  const decodesAtStart = decodes();
  await events.return?.(undefined);
  expect(backend.status().busy[CHAT]).toBe(0);
  // Stopped, not run out in the background: the engine decoded far fewer than the 1,500 tokens
  // the logit bias would make it write (one decode per token once the prompt is in).
  const decodesAtStop = decodes();
  expect(decodesAtStop - decodesAtStart).toBeLessThan(longRequest().max_tokens! / 2);
  // And nothing decodes for it afterwards: while a short request runs to its end, the engine's
  // decodes grow by no more than that request's own tokens (each decode carries at least one).
  const short = (await drain(backend.chat(chatRequest(), never))).at(-1);
  const shortTokens = short?.type === "done" ? short.result.usage.prompt_tokens + short.result.usage.completion_tokens : 0;
  expect(shortTokens).toBeGreaterThan(0);
  expect(decodes() - decodesAtStop).toBeLessThanOrEqual(shortTokens);

  const running = drain(backend.completion(longRequest(), never));
  await waitUntil(() => backend.status().busy[CHAT] === 1, 2000);
  await backend.unloadModel(unload(CHAT));
  const finished = await running;
  expect(finished.at(-1)).toMatchObject({ type: "done", result: { stats: { stop_reason: "modelUnloaded" } } });
});

test("status listeners hear loads, unloads and slots going busy and free", async () => {
  const seen: string[] = [];
  const unsubscribe = backend.onStatusChange(() => {
    const status = backend.status();
    const state = `${status.models.find((model) => model.id === CHAT)?.state}:${status.busy[CHAT] ?? "-"}`;
    // Free memory, measured again after a load or unload, is news of its own: the state repeats then.
    if (seen.at(-1) !== state) seen.push(state);
  });
  await drain(backend.chat(chatRequest(), never));
  await backend.unloadModel(unload(CHAT));
  unsubscribe();
  await drain(backend.chat(chatRequest(), never));
  expect(seen).toEqual(["loaded:0", "loaded:1", "loaded:0", "not-loaded:-"]);
});
