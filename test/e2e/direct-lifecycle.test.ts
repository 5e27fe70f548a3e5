import { afterAll, beforeAll, beforeEach, expect, test } from "vitest";
import { LocalBackend } from "../../node-agent/serving/local-backend.ts";
import { LocalModelAdmin } from "../../node-agent/serving/model-admin.ts";
import { startDirectServer, type DirectServer } from "../../node-agent/serving/direct-server.ts";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import { LoadResult, ModelObject, UnloadResult } from "../../shared/protocol/model-schemas.ts";
import { testModelsDir } from "../harness/test-models.ts";

let backend: LocalBackend;
let server: DirectServer;

// One JIT model at a time, so eviction is observable with tiny models.
beforeAll(async () => {
  backend = await LocalBackend.create({ modelDirs: [await testModelsDir()], threads: 1, gpu: false, slots: 2, maxLoadedModels: 1 });
  server = await startDirectServer({ backend, modelAdmin: new LocalModelAdmin(backend, { modelDirs: [await testModelsDir()] }), host: "127.0.0.1", port: 0 });
});
afterAll(async () => {
  await server?.close();
  await backend?.dispose();
});

const post = (path: string, body: unknown) =>
  fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

async function states(): Promise<Record<string, string>> {
  const body = (await (await fetch(`${server.url}/api/v0/models`)).json()) as { data: unknown[] };
  return Object.fromEntries(body.data.map((raw) => ModelObject.parse(raw)).map((model) => [model.id, model.state]));
}

async function waitForState(model: string, state: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while ((await states())[model] !== state) {
    if (Date.now() > deadline) throw new Error(`${model} did not become ${state} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// Each test starts with nothing loaded, whatever ran before it.
beforeEach(async () => {
  for (const [model, state] of Object.entries(await states())) {
    if (state === "loaded") expect((await post("/api/v1/models/unload", { instance_id: model })).status).toBe(200);
  }
});

const chat = (model: string, extra: Record<string, unknown> = {}) =>
  post("/api/v0/chat/completions", { model, messages: [{ role: "user", content: "hi" }], max_tokens: 4, ...extra });

test("nothing is loaded until a request needs it (JIT), then the model reports loaded with its context", async () => {
  expect(Object.values(await states()).every((state) => state === "not-loaded")).toBe(true);
  expect((await chat("tiny-chat-f32")).status).toBe(200);
  const model = ModelObject.parse(await (await fetch(`${server.url}/api/v0/models/tiny-chat-f32`)).json());
  expect(model.state).toBe("loaded");
  expect(model.loaded_context_length).toBe(2048);
});

test("a JIT load of another model evicts the earlier JIT-loaded one", async () => {
  expect((await chat("tiny-chat-f32")).status).toBe(200);
  expect((await chat("tiny-chat-q8_0")).status).toBe(200);
  const now = await states();
  expect(now["tiny-chat-q8_0"]).toBe("loaded");
  expect(now["tiny-chat-f32"]).toBe("not-loaded");
});

test("a request's ttl unloads the model it loaded once idle that long", async () => {
  expect((await chat("tiny-chat-f32", { ttl: 1 })).status).toBe(200);
  expect((await states())["tiny-chat-f32"]).toBe("loaded");
  await waitForState("tiny-chat-f32", "not-loaded", 10_000);
});

test("explicit load and unload: an explicitly loaded model is never evicted by JIT", async () => {
  const loaded = LoadResult.parse(await (await post("/api/v1/models/load", { model: "tiny-chat-q8_0", context_length: 512, echo_load_config: true })).json());
  expect(loaded).toMatchObject({ type: "llm", instance_id: "tiny-chat-q8_0", status: "loaded" });
  expect(loaded.load_config?.context_length).toBe(512);
  expect((await chat("tiny-chat-f32")).status).toBe(200);
  const now = await states();
  expect(now["tiny-chat-q8_0"]).toBe("loaded");
  expect(now["tiny-chat-f32"]).toBe("loaded");

  expect(UnloadResult.parse(await (await post("/api/v1/models/unload", { instance_id: "tiny-chat-q8_0" })).json())).toEqual({
    instance_id: "tiny-chat-q8_0",
  });
  expect((await states())["tiny-chat-q8_0"]).toBe("not-loaded");
  const missing = await post("/api/v1/models/unload", { instance_id: "tiny-chat-q8_0" });
  expect(missing.status).toBe(404);
  ErrorBody.parse(await missing.json());
});
