import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, expect, test, vi } from "vitest";
import { AdminClient } from "../../cli/admin-client.ts";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import { KeyRecord } from "../../shared/gateway-admin/admin-schemas.ts";
import { DeleteResult, DownloadJob } from "../../shared/protocol/download-schemas.ts";
import { LoadResult } from "../../shared/protocol/model-schemas.ts";
import { V1ModelList, type V1Model } from "../../shared/protocol/v1-model-schemas.ts";
import { startAgent, type AgentProcess } from "../harness/agent-process.ts";
import { startGateway, type GatewayProcess } from "../harness/gateway-process.ts";
import { startHubServer, type HubServer } from "../harness/hub-server.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * Model management through the real gateway: a download from a (local) hub onto the node named,
 * its progress seen at the gateway, the model then listed with its node and answering a chat;
 * load on a chosen node; delete; and which credentials may do each. Each test pulls a model of its own
 * (the hub serves the same GGUF under several names), so none depends on another having run.
 */

let hub: HubServer;
let gateway: GatewayProcess;
const agents: AgentProcess[] = [];
const folders: Record<string, string> = {};
let manager: string;
let user: string;

beforeAll(async () => {
  const source = await testModelsDir();
  hub = await startHubServer();
  const chatFile = await readFile(join(source, "lmgate/tiny-chat-GGUF/tiny-chat-Q8_0.gguf"));
  for (const name of ["tiny-chat", "slow", "doomed", "cli-chat"]) hub.addFile(`test-pub/${name}-GGUF`, `${name}-Q8_0.gguf`, chatFile);
  folders.alpha = await mkdtemp(join(tmpdir(), "lmgate-alpha-"));
  folders.beta = await mkdtemp(join(tmpdir(), "lmgate-beta-"));
  const file = "lmgate/tiny-chat-GGUF/tiny-chat-F32.gguf";
  await mkdir(dirname(join(folders.beta, file)), { recursive: true });
  await symlink(join(source, file), join(folders.beta, file));

  gateway = await startGateway();
  for (const name of ["alpha", "beta"]) {
    agents.push(await startAgent({ models: [folders[name] as string], gateway: { url: gateway.url, token: gateway.nodeToken }, name, env: { HF_ENDPOINT: hub.url } }));
  }
  const admin = new AdminClient(gateway.url, gateway.adminToken);
  manager = (await admin.createKey({ name: "manager", can: ["load", "download"] })).key;
  user = (await admin.createKey({ name: "user" })).key;
  await vi.waitFor(async () => expect(await listing(manager)).not.toEqual([]), { timeout: 30_000, interval: 100 });
}, 180_000);

afterAll(async () => {
  await Promise.all(agents.map((agent) => agent.stop()));
  await gateway?.stop();
  await hub?.close();
  for (const dir of Object.values(folders)) await rm(dir, { recursive: true, force: true });
});

const call = (method: string, path: string, key: string, body?: unknown) =>
  fetch(`${gateway.url}${path}`, { method, headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });

async function listing(key: string) {
  return V1ModelList.parse(await (await call("GET", "/api/v1/models", key)).json()).models;
}

/** The listing's entry for `key` once `check` holds for it, within a deadline. */
function listed(key: string, check: (entry: V1Model | undefined) => boolean = (entry) => entry !== undefined): Promise<V1Model | undefined> {
  return vi.waitFor(
    async () => {
      const entry = (await listing(manager)).find((model) => model.key === key);
      if (!check(entry)) throw new Error(`the listing's ${key} is not as expected yet: ${JSON.stringify(entry)}`);
      return entry;
    },
    { timeout: 20_000, interval: 100 },
  );
}

/** The job's status once `done` holds for it (the job reaches the gateway with the node's next status frame, so 404s until then). */
function jobStatus(jobId: string, done: (job: DownloadJob) => boolean): Promise<DownloadJob> {
  return vi.waitFor(
    async () => {
      const response = await call("GET", `/api/v1/models/download/status/${jobId}`, manager);
      const job = response.status === 404 ? undefined : DownloadJob.parse(await response.json());
      if (job === undefined || !done(job)) throw new Error(`download ${jobId}: ${JSON.stringify(job)}`);
      return job;
    },
    { timeout: 30_000, interval: 50 },
  );
}

/** Downloads `test-pub/<name>-GGUF` onto `node` to completion, and waits for the gateway to list it. */
async function pulled(name: string, node: string): Promise<DownloadJob> {
  const started = DownloadJob.parse(await (await call("POST", "/api/v1/models/download", manager, { model: `test-pub/${name}-GGUF`, quantization: "Q8_0", node })).json());
  expect(started).toMatchObject({ status: "downloading", node });
  const done = await jobStatus(started.job_id as string, (job) => job.status !== "downloading");
  expect(done).toMatchObject({ status: "completed", node, model_key: `${name}-q8_0` });
  await listed(`${name}-q8_0`);
  return done;
}

async function refusal(response: Response, status: number): Promise<string | null> {
  expect(response.status).toBe(status);
  return ErrorBody.parse(await response.json()).error.code;
}

test("a plain API key may list models but not download, load or delete", async () => {
  expect((await listing(user)).map((model) => model.key)).toContain("tiny-chat-f32");
  expect(await refusal(await call("POST", "/api/v1/models/download", user, { model: "test-pub/tiny-chat-GGUF" }), 403)).toBe("action_not_allowed");
  expect(await refusal(await call("POST", "/api/v1/models/load", user, { model: "tiny-chat-f32" }), 403)).toBe("action_not_allowed");
  expect(await refusal(await call("POST", "/api/v1/models/unload", user, { instance_id: "tiny-chat-f32" }), 403)).toBe("action_not_allowed");
  expect(await refusal(await call("POST", "/api/v1/models/delete", user, { model: "tiny-chat-f32" }), 403)).toBe("action_not_allowed");
});

test("a key's model globs hold on /api/v1/models and on load, unload and delete", async () => {
  const admin = new AdminClient(gateway.url, gateway.adminToken);
  const scoped = (await admin.createKey({ name: "scoped-manager", models: ["tiny-embed-*"], can: ["load", "download", "delete"] })).key;
  expect((await listing(manager)).map((model) => model.key)).toContain("tiny-chat-f32");
  expect((await listing(scoped)).map((model) => model.key)).not.toContain("tiny-chat-f32");
  expect(await refusal(await call("POST", "/api/v1/models/load", scoped, { model: "tiny-chat-f32", node: "beta" }), 403)).toBe("model_not_allowed");
  expect(await refusal(await call("POST", "/api/v1/models/unload", scoped, { instance_id: "tiny-chat-f32" }), 403)).toBe("model_not_allowed");
  expect(await refusal(await call("POST", "/api/v1/models/delete", scoped, { model: "tiny-chat-f32" }), 403)).toBe("model_not_allowed");
  expect(await readdir(folders.beta as string, { recursive: true })).toContain("lmgate/tiny-chat-GGUF/tiny-chat-F32.gguf");
});

test("a key with the download right cannot aim a node at its own network: a private address is refused before any request", async () => {
  // Something on the node's loopback that is not its hub: here the gateway itself, under a name and a path no test serves.
  const target = `${gateway.url.replace("127.0.0.1", "localhost")}/admin/keys/x.gguf`;
  const before = await readdir(folders.alpha as string, { recursive: true });
  const response = await call("POST", "/api/v1/models/download", manager, { model: target, node: "alpha" });
  expect(await refusal(response, 403)).toBe("download_source_not_allowed");
  expect(await readdir(folders.alpha as string, { recursive: true })).toEqual(before);
});

test("a download onto a named node reports progress through the gateway, then the model is listed there and answers a chat", async () => {
  const status = await pulled("tiny-chat", "alpha");
  expect(status.downloaded_bytes).toBe(status.total_size_bytes);
  expect(await readdir(join(folders.alpha as string, "test-pub/tiny-chat-GGUF"))).toEqual(["tiny-chat-Q8_0.gguf"]);
  expect(await listed("tiny-chat-q8_0")).toMatchObject({ type: "llm", publisher: "test-pub", quantization: { name: "Q8_0", bits_per_weight: 8 }, nodes: [{ node: "alpha", loaded_instances: [] }] });

  const openai = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: user, maxRetries: 0 });
  const reply = await openai.chat.completions.create({ model: "tiny-chat-q8_0", messages: [{ role: "user", content: "hi" }], max_tokens: 4 });
  expect(reply.choices[0]?.message.content).toEqual(expect.any(String));
});

test("load on a chosen node; the listing gives its instance per node; unknown nodes are 404s", async () => {
  const loaded = LoadResult.parse(await (await call("POST", "/api/v1/models/load", manager, { model: "tiny-chat-f32", node: "beta", context_length: 256, echo_load_config: true })).json());
  expect(loaded).toMatchObject({ instance_id: "tiny-chat-f32", status: "loaded", load_config: { context_length: 256 } });
  const entry = await listed("tiny-chat-f32", (model) => (model?.loaded_instances.length ?? 0) > 0);
  expect(entry?.nodes).toEqual([{ node: "beta", loaded_instances: [{ id: "tiny-chat-f32", node: "beta", config: { context_length: 256, parallel: 4 } }] }]);
  expect(await refusal(await call("POST", "/api/v1/models/load", manager, { model: "tiny-chat-f32", node: "gamma" }), 404)).toBe("node_not_found");
  expect(await refusal(await call("POST", "/api/v1/models/download", manager, { model: "test-pub/tiny-chat-GGUF", node: "gamma" }), 404)).toBe("node_not_found");
});

test("a running download is cancelled through the gateway, and leaves nothing on the node", async () => {
  hub.stall("slow-Q8_0.gguf", 10_000);
  const started = DownloadJob.parse(await (await call("POST", "/api/v1/models/download", manager, { model: "test-pub/slow-GGUF", node: "beta" })).json());
  const status = await jobStatus(started.job_id as string, (job) => job.downloaded_bytes >= 10_000);
  expect(status).toMatchObject({ status: "downloading", node: "beta", model: "test-pub/slow-GGUF/slow-Q8_0.gguf" });
  expect(await refusal(await call("POST", "/api/v1/models/download/cancel", user, { job_id: started.job_id }), 403)).toBe("action_not_allowed");
  const cancelled = DownloadJob.parse(await (await call("POST", "/api/v1/models/download/cancel", manager, { job_id: started.job_id })).json());
  expect(cancelled).toMatchObject({ status: "cancelled", node: "beta" });
  expect(await readdir(join(folders.beta as string, "test-pub/slow-GGUF"))).toEqual([]);
});

test("delete takes the delete right: the admin token deletes from the node that holds the model", async () => {
  await pulled("doomed", "alpha");
  expect(await refusal(await call("POST", "/api/v1/models/delete", manager, { model: "doomed-q8_0" }), 403)).toBe("action_not_allowed");
  const deleted = DeleteResult.parse(await (await call("POST", "/api/v1/models/delete", gateway.adminToken, { model: "doomed-q8_0", force: true })).json());
  expect(deleted).toEqual({ model: "doomed-q8_0", deleted: true, files: ["test-pub/doomed-GGUF/doomed-Q8_0.gguf"], node: "alpha" });
  await listed("doomed-q8_0", (entry) => entry === undefined);
  expect(await readdir(join(folders.alpha as string, "test-pub/doomed-GGUF"))).toEqual([]);
});

test("a download of a model the node already has, named by its key, is already_downloaded", async () => {
  const response = await call("POST", "/api/v1/models/download", manager, { model: "tiny-chat-f32", node: "beta" });
  expect(response.status).toBe(200);
  expect(DownloadJob.parse(await response.json())).toMatchObject({ status: "already_downloaded", model_key: "tiny-chat-f32" });
});

/** `lmgate …` as a user runs it; the admin token comes from the environment, never the command line. */
async function lmgate(...args: string[]): Promise<unknown> {
  const { stdout } = await promisify(execFile)(process.execPath, ["cli/lmgate.ts", "--json", ...args], {
    env: { ...process.env, LMGATE_URL: gateway.url, LMGATE_ADMIN_TOKEN: gateway.adminToken, NO_COLOR: "1" },
  });
  return JSON.parse(stdout);
}

test("the CLI: keys create --can, models pull onto a node, list, load, unload and rm", async () => {
  expect(KeyRecord.parse(((await lmgate("keys", "create", "--name", "ops", "--can", "load,download")) as { record: unknown }).record).can).toEqual(["load", "download"]);
  const pulledByCli = DownloadJob.parse(await lmgate("models", "pull", "test-pub/cli-chat-GGUF", "--quant", "Q8_0", "--node", "beta"));
  expect(pulledByCli).toMatchObject({ status: "completed", node: "beta", model_key: "cli-chat-q8_0" });
  const onBeta = await vi.waitFor(
    async () => {
      const keys = V1ModelList.shape.models.parse(await lmgate("models", "list", "--node", "beta")).map((model) => model.key);
      expect(keys).toContain("cli-chat-q8_0");
      return keys;
    },
    { timeout: 20_000, interval: 100 },
  );
  expect(onBeta).toContain("tiny-chat-f32");
  expect(LoadResult.parse(await lmgate("models", "load", "cli-chat-q8_0", "--node", "beta", "--context-length", "512"))).toMatchObject({ load_config: { context_length: 512 } });
  expect(await lmgate("models", "unload", "cli-chat-q8_0", "--node", "beta")).toMatchObject({ instance_id: "cli-chat-q8_0", drained: { generations: 0, cut: 0 } });
  expect(DeleteResult.parse(await lmgate("models", "rm", "cli-chat-q8_0", "--node", "beta"))).toMatchObject({ node: "beta", deleted: true });
});
