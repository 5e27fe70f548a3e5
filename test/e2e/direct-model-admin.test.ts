import { mkdir, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, expect, test, vi } from "vitest";
import { DEMO_MODELS } from "../../node-agent/demo-models/demo-models.ts";
import { writeSplitModel } from "../../node-agent/demo-models/model-spec.ts";
import { startDirectServer, type DirectServer } from "../../node-agent/serving/direct-server.ts";
import { LocalBackend } from "../../node-agent/serving/local-backend.ts";
import { LocalModelAdmin } from "../../node-agent/serving/model-admin.ts";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import { DeleteResult, DownloadJob } from "../../shared/protocol/download-schemas.ts";
import { LoadResult, UnloadResult } from "../../shared/protocol/model-schemas.ts";
import { V1ModelList } from "../../shared/protocol/v1-model-schemas.ts";
import { startHubServer, type HubServer } from "../harness/hub-server.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * LM Studio's v1 model API on an agent in direct mode: a download from a (local) hub into a models
 * folder, then load, chat, unload, delete. Each test downloads a model of its own (the hub serves the
 * same GGUF under several names), so none depends on another having run.
 */

let hub: HubServer;
let dir: string;
let backend: LocalBackend;
let admin: LocalModelAdmin;
let server: DirectServer;

beforeAll(async () => {
  const models = await testModelsDir();
  hub = await startHubServer();
  const chatFile = await readFile(join(models, "lmgate/tiny-chat-GGUF/tiny-chat-Q8_0.gguf"));
  for (const name of ["tiny-chat", "load-chat", "doomed-chat"]) hub.addFile(`test-pub/${name}-GGUF`, `${name}-Q8_0.gguf`, chatFile);
  hub.addFile("test-pub/tiny-embed-GGUF", "tiny-embed-F32.gguf", await readFile(join(models, "lmgate/tiny-embed-GGUF/tiny-embed-F32.gguf")));
  dir = await mkdtemp(join(tmpdir(), "lmgate-direct-admin-"));
  const chat = DEMO_MODELS.find((model) => model.path.endsWith("tiny-chat-Q8_0.gguf"));
  await mkdir(join(dir, ".split-source"));
  for (const path of await writeSplitModel(join(dir, ".split-source"), "tiny-split-Q8_0", chat!.spec, 2)) {
    hub.addFile("test-pub/tiny-split-GGUF", path.split("/").at(-1)!, await readFile(path));
  }
  backend = await LocalBackend.create({ modelDirs: [dir], threads: 1, gpu: false, slots: 2 });
  admin = new LocalModelAdmin(backend, { modelDirs: [dir], hub: { endpoint: hub.url }, freeBytes: async () => 100 * 1024 ** 3 });
  server = await startDirectServer({ backend, modelAdmin: admin, host: "127.0.0.1", port: 0 });
});
afterAll(async () => {
  await server?.close();
  await admin?.dispose();
  await backend?.dispose();
  await hub?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const post = (path: string, body: unknown) =>
  fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

async function listing() {
  return V1ModelList.parse(await (await fetch(`${server.url}/api/v1/models`)).json()).models;
}

const entry = async (key: string) => (await listing()).find((model) => model.key === key);

async function downloaded(model: string, quantization?: string): Promise<DownloadJob> {
  const started = DownloadJob.parse(await (await post("/api/v1/models/download", { model, quantization })).json());
  expect(started.status).toBe("downloading");
  return vi.waitFor(
    async () => {
      const status = DownloadJob.parse(await (await fetch(`${server.url}/api/v1/models/download/status/${started.job_id}`)).json());
      expect(status.status, `download of ${model}`).not.toBe("downloading");
      return status;
    },
    { timeout: 30_000, interval: 50 },
  );
}

test("a downloaded model appears in the v1 listing, field for field, and answers a chat", async () => {
  expect(await entry("tiny-chat-q8_0")).toBeUndefined();
  const done = await downloaded("test-pub/tiny-chat-GGUF", "Q8_0");
  expect(done).toMatchObject({ status: "completed", model_key: "tiny-chat-q8_0" });
  expect(done.downloaded_bytes).toBe(done.total_size_bytes);
  expect(await readdir(join(dir, "test-pub/tiny-chat-GGUF"))).toEqual(["tiny-chat-Q8_0.gguf"]);

  expect(await entry("tiny-chat-q8_0")).toEqual({
    type: "llm",
    publisher: "test-pub",
    key: "tiny-chat-q8_0",
    display_name: "tiny-chat",
    architecture: "llama",
    quantization: { name: "Q8_0", bits_per_weight: 8 },
    size_bytes: done.total_size_bytes,
    params_string: null,
    loaded_instances: [],
    max_context_length: 2048,
    format: "gguf",
    capabilities: { vision: false, trained_for_tool_use: true },
    description: null,
  });

  const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const reply = await openai.chat.completions.create({ model: "tiny-chat-q8_0", messages: [{ role: "user", content: "hi" }], max_tokens: 4 });
  expect(reply.choices[0]?.message.content).toEqual(expect.any(String));
  expect((await entry("tiny-chat-q8_0"))?.loaded_instances).toEqual([{ id: "tiny-chat-q8_0", config: { context_length: 2048, parallel: 2 } }]);

  const again = DownloadJob.parse(await (await post("/api/v1/models/download", { model: "test-pub/tiny-chat-GGUF", quantization: "Q8_0" })).json());
  expect(again.status).toBe("already_downloaded");
  expect(again.job_id).toBeUndefined();
  // Named by its key, as LM Studio's own listing gives it: the model is there, nothing to fetch.
  const byKey = await post("/api/v1/models/download", { model: "tiny-chat-q8_0" });
  expect(byKey.status).toBe(200);
  expect(DownloadJob.parse(await byKey.json())).toMatchObject({ status: "already_downloaded", model_key: "tiny-chat-q8_0", total_size_bytes: done.total_size_bytes });
});

test("load answers LM Studio's fields and echoes its config; unload by instance id", async () => {
  expect((await downloaded("test-pub/load-chat-GGUF")).status).toBe("completed");
  expect((await entry("load-chat-q8_0"))?.loaded_instances).toEqual([]);
  const loaded = LoadResult.parse(await (await post("/api/v1/models/load", { model: "load-chat-q8_0", context_length: 512, echo_load_config: true })).json());
  expect(loaded).toMatchObject({ type: "llm", instance_id: "load-chat-q8_0", status: "loaded", load_config: { context_length: 512, parallel: 2 } });
  expect(loaded.load_time_seconds).toBeGreaterThan(0);
  expect((await entry("load-chat-q8_0"))?.loaded_instances).toEqual([{ id: "load-chat-q8_0", config: { context_length: 512, parallel: 2 } }]);
  expect(UnloadResult.parse(await (await post("/api/v1/models/unload", { instance_id: "load-chat-q8_0" })).json())).toEqual({ instance_id: "load-chat-q8_0" });
  expect((await entry("load-chat-q8_0"))?.loaded_instances).toEqual([]);
});

test("an embedding model's entry has no architecture or capabilities, as in LM Studio", async () => {
  expect((await downloaded("test-pub/tiny-embed-GGUF")).status).toBe("completed");
  const embed = (await listing()).find((model) => model.key === "tiny-embed-f32");
  expect(embed).toMatchObject({ type: "embedding", quantization: { name: "F32", bits_per_weight: 32 }, max_context_length: 512 });
  expect(embed).not.toHaveProperty("architecture");
  expect(embed).not.toHaveProperty("capabilities");
});

test("delete is refused while the model is loaded, unless forced; then the files and the entry are gone", async () => {
  expect((await downloaded("test-pub/doomed-chat-GGUF")).status).toBe("completed");
  expect((await post("/api/v1/models/load", { model: "doomed-chat-q8_0" })).status).toBe(200);
  const refused = await post("/api/v1/models/delete", { model: "doomed-chat-q8_0" });
  expect(refused.status).toBe(409);
  expect(ErrorBody.parse(await refused.json()).error.code).toBe("model_loaded");
  expect(await readdir(join(dir, "test-pub/doomed-chat-GGUF"))).toEqual(["doomed-chat-Q8_0.gguf"]);

  const others = (await listing()).map((model) => model.key).filter((key) => key !== "doomed-chat-q8_0");
  const deleted = DeleteResult.parse(await (await post("/api/v1/models/delete", { model: "doomed-chat-q8_0", force: true })).json());
  expect(deleted).toEqual({ model: "doomed-chat-q8_0", deleted: true, files: ["test-pub/doomed-chat-GGUF/doomed-chat-Q8_0.gguf"] });
  expect(await readdir(join(dir, "test-pub/doomed-chat-GGUF"))).toEqual([]);
  // Only that model is gone from the listing.
  expect((await listing()).map((model) => model.key)).toEqual(others);
  expect((await post("/api/v1/models/delete", { model: "doomed-chat-q8_0" })).status).toBe(404);
});

test("a split GGUF downloads as one model that answers a chat, and deletes whole", async () => {
  expect(await downloaded("test-pub/tiny-split-GGUF", "Q8_0")).toMatchObject({ status: "completed", model_key: "tiny-split-q8_0" });
  const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });
  const reply = await openai.chat.completions.create({ model: "tiny-split-q8_0", messages: [{ role: "user", content: "hi" }], max_tokens: 4 });
  expect(reply.choices[0]?.message.content).toEqual(expect.any(String));
  const deleted = DeleteResult.parse(await (await post("/api/v1/models/delete", { model: "tiny-split-q8_0", force: true })).json());
  expect(deleted.files).toEqual(["test-pub/tiny-split-GGUF/tiny-split-Q8_0-00001-of-00002.gguf", "test-pub/tiny-split-GGUF/tiny-split-Q8_0-00002-of-00002.gguf"]);
  expect(await readdir(join(dir, "test-pub/tiny-split-GGUF"))).toEqual([]);
});

test("bad requests get LM Studio-shaped errors with the right status", async () => {
  const cases: [string, unknown, number, string][] = [
    ["/api/v1/models/download", {}, 400, "invalid_request"],
    ["/api/v1/models/download", { model: "test-pub/missing-GGUF" }, 404, "model_not_found"],
    ["/api/v1/models/download", { model: "test-pub/tiny-chat-GGUF", quantization: "Q2_K" }, 404, "model_not_found"],
    ["/api/v1/models/download/cancel", { job_id: "job_0123456789" }, 404, "job_not_found"],
  ];
  for (const [path, body, status, code] of cases) {
    const response = await post(path, body);
    expect(response.status, `${path} ${JSON.stringify(body)}`).toBe(status);
    expect(ErrorBody.parse(await response.json()).error.code).toBe(code);
  }
  const unknownJob = await fetch(`${server.url}/api/v1/models/download/status/job_0123456789`);
  expect(unknownJob.status).toBe(404);
  expect(ErrorBody.parse(await unknownJob.json()).error.code).toBe("job_not_found");
});
