import { afterAll, beforeAll, expect, test, vi } from "vitest";
import { ApiError } from "../../shared/protocol/api-error.ts";
import { ChatRequest, LoadRequest, UnloadRequest } from "../../shared/protocol/request-schemas.ts";
import { testModelsDir } from "../../test/harness/test-models.ts";
import { LocalBackend } from "./local-backend.ts";
import { ensureModel, LONG_CHAT_MODEL } from "../demo-models/demo-models.ts";

/**
 * Loads a caller asks for are bounded where they run, with real llama.cpp: by the model's trained
 * context and by the memory the node gives its models (here 512 MiB, so the bound is reachable
 * with a tiny model: with flash attention node-llama-cpp estimates ~10 MB for the tiny chat
 * model's default load, ~210 MB for the long one's, several GB for the long one with 64 slots).
 */

const CHAT = "tiny-chat-f32"; // trained context: 2048
const CHAT_Q8 = "tiny-chat-q8_0";
const LONG = "long-chat-q8_0"; // trained context: 65536
const MEMORY = 512 * 2 ** 20;

let backend: LocalBackend;

beforeAll(async () => {
  await ensureModel(await testModelsDir(), LONG_CHAT_MODEL);
  backend = await LocalBackend.create({ modelDirs: [await testModelsDir()], gpu: false, memoryBytes: MEMORY });
});
afterAll(async () => {
  await backend?.dispose();
});

const load = (body: Record<string, unknown>) => backend.loadModel(LoadRequest.parse({ model: CHAT, ...body }));
const stateOf = (id: string) => backend.status().models.find((model) => model.id === id)?.state;

async function refusal(promise: Promise<unknown>): Promise<ApiError> {
  const error = await promise.then(
    () => null,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(ApiError);
  return error as ApiError;
}

test("a context_length beyond the model's trained context is a 400 naming the limit; nothing loads", async () => {
  const error = await refusal(load({ context_length: 20_480, parallel: 4 }));
  expect(error.status).toBe(400);
  expect(error.code).toBe("context_length_too_large");
  expect(error.message).toContain("at most 2048");
  expect(stateOf(CHAT)).toBe("not-loaded");
});

test("a load whose memory estimate exceeds what the node gives is a 400 naming both; a smaller one loads", async () => {
  const error = await refusal(load({ model: LONG, context_length: 65536, parallel: 64 }));
  expect(error.status).toBe(400);
  expect(error.code).toBe("load_exceeds_memory");
  expect(error.message).toMatch(/needs about \d+\.\d GiB .* at most 0\.5 GiB/);
  expect(stateOf(LONG)).toBe("not-loaded");

  await load({ context_length: 2048, parallel: 2 });
  expect(stateOf(CHAT)).toBe("loaded");
  await backend.unloadModel(UnloadRequest.parse({ instance_id: CHAT }));
});

test("a JIT load is bounded the same way: a node that gives too little memory refuses the request", async () => {
  const small = await LocalBackend.create({ modelDirs: [await testModelsDir()], gpu: false, memoryBytes: 2 ** 20 });
  try {
    const chat = small.chat(ChatRequest.parse({ model: CHAT, messages: [{ role: "user", content: "hi" }], max_tokens: 2 }), new AbortController().signal);
    const error = await refusal(chat.next());
    expect(error.status).toBe(400);
    expect(error.code).toBe("load_exceeds_memory");
    expect(small.status().models.every((model) => model.state === "not-loaded")).toBe(true);
  } finally {
    await small.dispose();
  }
});

test("a ttl beyond setTimeout's 2^31 ms does not unload the model at once", async () => {
  await load({ ttl: Math.ceil(2 ** 31 / 1000) });
  // Before the fix the timer overflowed and fired after 1 ms. A witness loaded after it with a ttl
  // of 1 s unloads first: by then an overflowed timer would long have fired.
  await backend.loadModel(LoadRequest.parse({ model: CHAT_Q8, ttl: 1 }));
  await vi.waitFor(() => expect(stateOf(CHAT_Q8)).toBe("not-loaded"), { timeout: 10_000, interval: 20 });
  expect(stateOf(CHAT)).toBe("loaded");
  await backend.unloadModel(UnloadRequest.parse({ instance_id: CHAT }));
});

test("request schemas refuse absurd load numbers and a ttl over 365 days", () => {
  expect(LoadRequest.safeParse({ model: CHAT, context_length: 1e9 }).success).toBe(false);
  expect(LoadRequest.safeParse({ model: CHAT, parallel: 65 }).success).toBe(false);
  expect(LoadRequest.safeParse({ model: CHAT, ttl: 366 * 86_400 }).success).toBe(false);
  expect(ChatRequest.safeParse({ model: CHAT, messages: [{ role: "user", content: "x" }], ttl: 2 ** 40 }).success).toBe(false);
});

test("a load that does not say takes all the context the model was trained for, halved while it would take over half the node's memory", async () => {
  const contextOf = async (target: LocalBackend) => {
    const loaded = await target.loadModel(LoadRequest.parse({ model: LONG, echo_load_config: true }));
    await target.unloadModel(UnloadRequest.parse({ instance_id: LONG }));
    return loaded.load_config?.context_length;
  };
  const roomy = await LocalBackend.create({ modelDirs: [await testModelsDir()], gpu: false, memoryBytes: 64 * 2 ** 30 });
  try {
    expect(await contextOf(roomy)).toBe(65536);
  } finally {
    await roomy.dispose();
  }
  // 256 MiB: four slots of 64k tokens are estimated at more than half of it.
  const tight = await LocalBackend.create({ modelDirs: [await testModelsDir()], gpu: false, memoryBytes: 256 * 2 ** 20 });
  try {
    const halved = await contextOf(tight);
    expect(halved).toBeLessThan(65536);
    expect(halved).toBeGreaterThanOrEqual(4096);
    expect(65536 % halved!).toBe(0);
  } finally {
    await tight.dispose();
  }
  // A model trained for less than the agent's floor keeps its own (tiny-chat: 2048).
  expect((await backend.loadModel(LoadRequest.parse({ model: CHAT, echo_load_config: true }))).load_config?.context_length).toBe(2048);
  await backend.unloadModel(UnloadRequest.parse({ instance_id: CHAT }));
});
