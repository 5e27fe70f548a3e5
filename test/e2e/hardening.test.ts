import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, test } from "vitest";
import { AdminClient } from "../../cli/admin-client.ts";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import { UnloadResult } from "../../shared/protocol/model-schemas.ts";
import { startAgent, type AgentProcess } from "../harness/agent-process.ts";
import { startGateway, type GatewayProcess } from "../harness/gateway-process.ts";
import { connectIdleNode, simulatedModel } from "../harness/idle-node.ts";
import { readSse } from "../harness/sse.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * Attacks on the real system (`wrangler dev` and a real agent with llama.cpp): what a key, a node
 * token or a rogue node could do to a fleet before these were closed. The gateway's own suite
 * (gateway/test/security.test.ts) plays the nodes; here the agent and the CLI are the real ones.
 */

const CHAT = "tiny-chat-f32"; // trained context 2048
/** Token "a": a +100 logit bias keeps the model writing it, so a generation lasts as long as max_tokens. */
const TOKEN_A = "395";
const CLI = fileURLToPath(new URL("../../cli/lmgate.ts", import.meta.url));

let gateway: GatewayProcess;
let agent: AgentProcess | undefined;
let dir: string;
let nodeToken: string;

const admin = () => new AdminClient(gateway.url, gateway.adminToken);
/** node-a as the gateway lists it; other tests add nodes of their own (a rogue one, say), so it is found by name. */
const nodeA = async () => (await admin().listNodes()).find((node) => node.name === "node-a");
const post = (path: string, body: unknown, key = gateway.apiKey) =>
  fetch(`${gateway.url}${path}`, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: JSON.stringify(body) });

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lmgate-hardening-"));
  gateway = await startGateway();
  // The node's own token, made for its name, given in a file: nothing secret on the agent's command line.
  nodeToken = (await admin().createNodeToken({ node: "node-a" })).token;
  const tokenFile = join(dir, "node-token");
  await writeFile(tokenFile, `${nodeToken}\n`, { mode: 0o600 });
  agent = await startAgent({ models: [await testModelsDir()], gateway: { url: gateway.url, tokenFile }, name: "node-a" });
  expect(agent.process.spawnargs.join(" ")).not.toContain(nodeToken);
}, 180_000);

afterAll(async () => {
  await agent?.stop();
  await gateway?.stop();
  await rm(dir, { recursive: true, force: true });
});

test("a load beyond the model's trained context is a 400 naming the limit, and the node lives on", async () => {
  const response = await post("/api/v1/models/load", { model: CHAT, context_length: 20_480, parallel: 4 });
  expect(response.status).toBe(400);
  const { error } = ErrorBody.parse(await response.json());
  expect(error.code).toBe("context_length_too_large");
  expect(error.message).toContain("at most 2048");
  expect((await post("/api/v1/models/load", { model: CHAT, context_length: 1e9 })).status).toBe(400);
  expect(await nodeA()).toMatchObject({ name: "node-a", online: true });
  expect(agent?.process.exitCode).toBeNull();
});

test("a node token made for node-a cannot join as another node; node-a stays connected", async () => {
  await expect(connectIdleNode({ url: gateway.url, token: nodeToken, name: "node-b", models: [] })).rejects.toThrow(/4005 .*made for node "node-a"/);
  const nodes = await admin().listNodes();
  expect(nodes.map((node) => node.name)).not.toContain("node-b");
  expect((await nodeA())?.online).toBe(true);
});

test("another key's unload lets a running stream finish: it waits, says so, and the stream ends with its finish_reason", async () => {
  const { key } = await admin().createKey({ name: "drained", models: ["tiny-chat-*"] });
  const { key: operator } = await admin().createKey({ name: "operator", can: ["load"] });
  // Long enough to be still running when the unload comes, on a loaded machine too.
  const response = await post("/v1/completions", { model: CHAT, prompt: "a", max_tokens: 1500, logit_bias: { [TOKEN_A]: 100 }, stream: true }, key);
  expect(response.status).toBe(200);
  const reading = readSse(response);
  await until(async () => (await nodeA())?.in_flight === 1);
  const unload = await post("/api/v1/models/unload", { instance_id: CHAT }, operator);
  expect(unload.status).toBe(200);
  expect(UnloadResult.parse(await unload.json()).drained).toMatchObject({ generations: 1, cut: 0 });
  const { events, done } = await reading;
  expect(done).toBe(true);
  expect(JSON.stringify(events)).toContain('"finish_reason":"length"');
  expect(JSON.stringify(events)).not.toContain("model_unloaded");
});

test("a stream cut by a forced unload (the admin's) ends with a model_unloaded error, never finish_reason stop", async () => {
  const { key } = await admin().createKey({ name: "victim", models: ["tiny-chat-*"] });
  const response = await post(
    "/v1/completions",
    { model: CHAT, prompt: "a", max_tokens: 1500, logit_bias: { [TOKEN_A]: 100 }, stream: true },
    key,
  );
  expect(response.status).toBe(200);
  const reading = readSse(response);
  await until(async () => (await nodeA())?.in_flight === 1);
  expect((await post("/api/v1/models/unload", { instance_id: CHAT, force: true })).status).toBe(200);
  const { events, done } = await reading;
  expect(done).toBe(false);
  expect(ErrorBody.parse(events.at(-1)).error.code).toBe("model_unloaded");
  expect(events.length).toBeGreaterThan(2);
  expect(JSON.stringify(events)).not.toContain('"finish_reason":"stop"');
});

test("names with terminal escapes reach the admin's terminal as plain text", async () => {
  const evil = "evil\u001b[2J\u001b]0;PWNED\u0007";
  const rogue = await connectIdleNode({ url: gateway.url, token: gateway.nodeToken, name: "rogue", models: [simulatedModel(evil, true)] });
  try {
    await admin().createKey({ name: `key${evil}` });
    const { NO_COLOR: _noColor, ...withoutNoColor } = process.env;
    const run = async (...args: string[]) =>
      (
        await promisify(execFile)(process.execPath, [CLI, ...args], {
          env: { ...withoutNoColor, LMGATE_URL: gateway.url, LMGATE_ADMIN_TOKEN: gateway.adminToken, FORCE_COLOR: "1" },
        })
      ).stdout;
    for (const output of [await run("nodes"), await run("keys", "list")]) {
      expect(output).toContain("evil?[2J?]0;PWNED?");
      // Colours of the CLI's own are still there; nothing else starts an escape sequence.
      expect(output.replaceAll(/\u001b\[[0-9;]*m/g, "")).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f]/);
    }
  } finally {
    await rogue.close();
  }
});
