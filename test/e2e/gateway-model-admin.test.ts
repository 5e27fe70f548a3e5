import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, expect, test } from "vitest";
import { AdminClient } from "../../cli/admin-client.ts";
import { ErrorBody } from "../../shared/errors.ts";
import { KeyRecord } from "../../shared/schemas/admin.ts";
import { DeleteResult, DownloadJob } from "../../shared/schemas/downloads.ts";
import { LoadResult } from "../../shared/schemas/models.ts";
import { V1ModelList } from "../../shared/schemas/v1-models.ts";
import { startAgent, type AgentProcess } from "../harness/agent-process.ts";
import { startGateway, type GatewayProcess } from "../harness/gateway-process.ts";
import { startHubServer, type HubServer } from "../harness/hub-server.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * Model management through the real gateway: a download from a (local) hub onto the node named,
 * its progress seen at the gateway, the model then listed with its node and answering a chat;
 * load on a chosen node; delete; and which credentials may do each.
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
  hub.addFile("test-pub/tiny-chat-GGUF", "tiny-chat-Q8_0.gguf", await readFile(join(source, "lmgate/tiny-chat-GGUF/tiny-chat-Q8_0.gguf")));
  hub.addFile("test-pub/slow-GGUF", "slow-Q8_0.gguf", await readFile(join(source, "lmgate/tiny-chat-GGUF/tiny-chat-Q8_0.gguf")));
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
  while ((await listing(manager)).length === 0) await new Promise((resolve) => setTimeout(resolve, 100));
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

async function refusal(response: Response, status: number): Promise<string | null> {
  expect(response.status).toBe(status);
  return ErrorBody.parse(await response.json()).error.code;
}

test("a plain API key may list models but not download, load or delete", async () => {
  expect((await listing(user)).map((model) => model.key)).toEqual(["tiny-chat-f32"]);
  expect(await refusal(await call("POST", "/api/v1/models/download", user, { model: "test-pub/tiny-chat-GGUF" }), 403)).toBe("action_not_allowed");
  expect(await refusal(await call("POST", "/api/v1/models/load", user, { model: "tiny-chat-f32" }), 403)).toBe("action_not_allowed");
  expect(await refusal(await call("POST", "/api/v1/models/unload", user, { instance_id: "tiny-chat-f32" }), 403)).toBe("action_not_allowed");
  expect(await refusal(await call("POST", "/api/v1/models/delete", user, { model: "tiny-chat-f32" }), 403)).toBe("action_not_allowed");
});

test("a key with the download right cannot aim a node at its own network: a private address is refused before any request", async () => {
  // Something on the node's loopback that is not its hub: here the gateway itself, under a name and a path no test serves.
  const target = `${gateway.url.replace("127.0.0.1", "localhost")}/admin/keys/x.gguf`;
  const response = await call("POST", "/api/v1/models/download", manager, { model: target, node: "alpha" });
  expect(await refusal(response, 403)).toBe("download_source_not_allowed");
  expect(await readdir(folders.alpha as string)).toEqual([]);
});

test("a download onto a named node reports progress through the gateway, then the model is listed there and answers a chat", async () => {
  const started = DownloadJob.parse(await (await call("POST", "/api/v1/models/download", manager, { model: "test-pub/tiny-chat-GGUF", quantization: "Q8_0", node: "alpha" })).json());
  expect(started).toMatchObject({ status: "downloading", node: "alpha" });
  let status = started;
  while (status.status === "downloading") {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const response = await call("GET", `/api/v1/models/download/status/${started.job_id}`, manager);
    // The job reaches the gateway with the node's next status frame.
    if (response.status !== 404) status = DownloadJob.parse(await response.json());
  }
  expect(status).toMatchObject({ status: "completed", node: "alpha", model_key: "tiny-chat-q8_0" });
  expect(status.downloaded_bytes).toBe(status.total_size_bytes);
  expect(await readdir(join(folders.alpha as string, "test-pub/tiny-chat-GGUF"))).toEqual(["tiny-chat-Q8_0.gguf"]);

  let entry;
  while (!(entry = (await listing(manager)).find((model) => model.key === "tiny-chat-q8_0"))) await new Promise((resolve) => setTimeout(resolve, 100));
  expect(entry).toMatchObject({ type: "llm", publisher: "test-pub", quantization: { name: "Q8_0", bits_per_weight: 8 }, nodes: [{ node: "alpha", loaded_instances: [] }] });

  const openai = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: user, maxRetries: 0 });
  const reply = await openai.chat.completions.create({ model: "tiny-chat-q8_0", messages: [{ role: "user", content: "hi" }], max_tokens: 4 });
  expect(reply.choices[0]?.message.content).toEqual(expect.any(String));
});

test("load on a chosen node; the listing gives its instance per node; unknown nodes are 404s", async () => {
  const loaded = LoadResult.parse(await (await call("POST", "/api/v1/models/load", manager, { model: "tiny-chat-f32", node: "beta", context_length: 256, echo_load_config: true })).json());
  expect(loaded).toMatchObject({ instance_id: "tiny-chat-f32", status: "loaded", load_config: { context_length: 256 } });
  let entry;
  while ((entry = (await listing(manager)).find((model) => model.key === "tiny-chat-f32"))?.loaded_instances.length === 0) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  expect(entry?.nodes).toEqual([{ node: "beta", loaded_instances: [{ id: "tiny-chat-f32", node: "beta", config: { context_length: 256, parallel: 4 } }] }]);
  expect(await refusal(await call("POST", "/api/v1/models/load", manager, { model: "tiny-chat-f32", node: "gamma" }), 404)).toBe("node_not_found");
  expect(await refusal(await call("POST", "/api/v1/models/download", manager, { model: "test-pub/tiny-chat-GGUF", node: "gamma" }), 404)).toBe("node_not_found");
});

test("a running download is cancelled through the gateway, and leaves nothing on the node", async () => {
  hub.stall("slow-Q8_0.gguf", 10_000);
  const started = DownloadJob.parse(await (await call("POST", "/api/v1/models/download", manager, { model: "test-pub/slow-GGUF", node: "beta" })).json());
  let status = started;
  while (status.downloaded_bytes < 10_000) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const response = await call("GET", `/api/v1/models/download/status/${started.job_id}`, manager);
    if (response.status !== 404) status = DownloadJob.parse(await response.json());
  }
  expect(status).toMatchObject({ status: "downloading", node: "beta", model: "test-pub/slow-GGUF/slow-Q8_0.gguf" });
  expect(await refusal(await call("POST", "/api/v1/models/download/cancel", user, { job_id: started.job_id }), 403)).toBe("action_not_allowed");
  const cancelled = DownloadJob.parse(await (await call("POST", "/api/v1/models/download/cancel", manager, { job_id: started.job_id })).json());
  expect(cancelled).toMatchObject({ status: "cancelled", node: "beta" });
  expect(await readdir(join(folders.beta as string, "test-pub/slow-GGUF"))).toEqual([]);
});

test("delete takes the delete right: the admin token deletes from the node that holds the model", async () => {
  expect(await refusal(await call("POST", "/api/v1/models/delete", manager, { model: "tiny-chat-q8_0" }), 403)).toBe("action_not_allowed");
  const deleted = DeleteResult.parse(await (await call("POST", "/api/v1/models/delete", gateway.adminToken, { model: "tiny-chat-q8_0", force: true })).json());
  expect(deleted).toEqual({ model: "tiny-chat-q8_0", deleted: true, files: ["test-pub/tiny-chat-GGUF/tiny-chat-Q8_0.gguf"], node: "alpha" });
  while ((await listing(manager)).some((model) => model.key === "tiny-chat-q8_0")) await new Promise((resolve) => setTimeout(resolve, 100));
  expect(await readdir(join(folders.alpha as string, "test-pub/tiny-chat-GGUF"))).toEqual([]);
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
  const pulled = DownloadJob.parse(await lmgate("models", "pull", "test-pub/tiny-chat-GGUF", "--quant", "Q8_0", "--node", "beta"));
  expect(pulled).toMatchObject({ status: "completed", node: "beta", model_key: "tiny-chat-q8_0" });
  let onBeta: string[] = [];
  while (!onBeta.includes("tiny-chat-q8_0")) {
    onBeta = V1ModelList.shape.models.parse(await lmgate("models", "list", "--node", "beta")).map((model) => model.key);
  }
  expect(onBeta.sort()).toEqual(["tiny-chat-f32", "tiny-chat-q8_0"]);
  expect(LoadResult.parse(await lmgate("models", "load", "tiny-chat-q8_0", "--node", "beta", "--context-length", "512"))).toMatchObject({ load_config: { context_length: 512 } });
  expect(await lmgate("models", "unload", "tiny-chat-q8_0", "--node", "beta")).toMatchObject({ instance_id: "tiny-chat-q8_0", drained: { generations: 0, cut: 0 } });
  expect(DeleteResult.parse(await lmgate("models", "rm", "tiny-chat-q8_0", "--node", "beta"))).toMatchObject({ node: "beta", deleted: true });
});
