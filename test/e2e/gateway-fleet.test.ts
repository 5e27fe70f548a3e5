import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";
import { AdminClient } from "../../cli/admin-client.ts";
import type { NodeSummary, UsageRow } from "../../shared/gateway-admin/admin-schemas.ts";
import { ChatCompletion } from "../../shared/openai-completions/completion-schemas.ts";
import { startAgent, type AgentProcess } from "../harness/agent-process.ts";
import { startGateway, type GatewayProcess } from "../harness/gateway-process.ts";
import { parsePrometheus, series } from "../harness/prometheus-text.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * The whole system for real, on loopback: `wrangler dev` running the gateway, two agent
 * processes (`node node-agent/cli.ts --gateway …`) with real llama.cpp engines and different
 * models, a third agent in direct mode as the reference, and the official openai client.
 */

const CHAT = "tiny-chat-f32"; // on both nodes
const ONLY_B = "tiny-chat-q8_0";
const ONLY_A = "tiny-embed-f32";

let gateway: GatewayProcess;
let direct: AgentProcess;
const fleet = new Map<string, AgentProcess>();
const cleanup: string[] = [];
let modelDirs: Record<string, string>;

/** A models folder with just these files of the shared test models (symlinked). */
async function modelsFolder(files: string[]): Promise<string> {
  const source = await testModelsDir();
  const dir = await mkdtemp(join(tmpdir(), "lmgate-models-"));
  cleanup.push(dir);
  for (const file of files) {
    await mkdir(dirname(join(dir, file)), { recursive: true });
    await symlink(join(source, file), join(dir, file));
  }
  return dir;
}

async function startNode(name: string): Promise<AgentProcess> {
  const agent = await startAgent({
    models: [modelDirs[name] as string],
    gateway: { url: gateway.url, token: gateway.nodeToken },
    name,
    extraArgs: ["--metrics", "--metrics-port", "0"],
  });
  fleet.set(name, agent);
  return agent;
}

/** The completion tokens a node's own engine counted for `model` (its `--metrics`). */
async function nodeCompletionTokens(name: string, model: string): Promise<number> {
  const url = /metrics on (http:\/\/\S+)/.exec(fleet.get(name)?.output() ?? "")?.[1];
  if (url === undefined) throw new Error(`${name} serves no metrics`);
  const { samples } = parsePrometheus(await (await fetch(url)).text());
  return samples.get(series("lmgate_agent_completion_tokens_total", { model })) ?? 0;
}
const fleetCompletionTokens = async (model: string) =>
  (await nodeCompletionTokens("node-a", model)) + (await nodeCompletionTokens("node-b", model));

const admin = () => new AdminClient(gateway.url, gateway.adminToken);
const nodes = (): Promise<NodeSummary[]> => admin().listNodes();

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Loads the model on every node that holds it: the load API picks a holder that has not loaded it yet. */
async function loadEverywhere(model: string): Promise<void> {
  for (let attempt = 0; attempt < 4; attempt++) {
    const holders = (await nodes()).filter((node) => node.online && node.models.some((entry) => entry.id === model));
    if (holders.every((node) => node.models.find((entry) => entry.id === model)?.state === "loaded")) return;
    const response = await fetch(`${gateway.url}/api/v1/models/load`, {
      method: "POST",
      headers: { authorization: `Bearer ${gateway.apiKey}` },
      body: JSON.stringify({ model }),
    });
    expect(response.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${model} is not loaded on every node that holds it`);
}

const online = async (names: string[]) => {
  const listed = await nodes();
  return names.every((name) => listed.some((node) => node.name === name && node.online));
};

const openai = (apiKey = gateway.apiKey) => new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey, maxRetries: 0, timeout: 30_000 });
const openaiDirect = () => new OpenAI({ baseURL: `${direct.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 30_000 });
const messages = [{ role: "user" as const, content: "Tell me a story about the sea." }];

/** The non-streaming answer through the gateway, with its `gateway` object (LM Studio's v0 shape). */
async function chatV0(body: Record<string, unknown>): Promise<ChatCompletion> {
  const response = await fetch(`${gateway.url}/api/v0/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${gateway.apiKey}` },
    body: JSON.stringify({ model: CHAT, messages, max_tokens: 24, temperature: 0, seed: 7, ...body }),
  });
  expect(response.status).toBe(200);
  return ChatCompletion.parse(await response.json());
}

beforeAll(async () => {
  modelDirs = {
    "node-a": await modelsFolder(["lmgate/tiny-chat-GGUF/tiny-chat-F32.gguf", "lmgate/tiny-embed-GGUF/tiny-embed-F32.gguf"]),
    "node-b": await modelsFolder(["lmgate/tiny-chat-GGUF/tiny-chat-F32.gguf", "lmgate/tiny-chat-GGUF/tiny-chat-Q8_0.gguf"]),
  };
  gateway = await startGateway({ vars: { LMGATE_HEARTBEAT_INTERVAL_MS: "2000", LMGATE_HEARTBEAT_TIMEOUT_MS: "6000" } });
  [direct] = await Promise.all([startAgent({ models: [await testModelsDir()] }), startNode("node-a"), startNode("node-b")]);
  await until(() => online(["node-a", "node-b"]));
}, 180_000);

/** Fault tests kill agents: each test starts with both nodes up (restarted if a test left one dead). */
beforeEach(async () => {
  for (const [name, agent] of fleet) {
    if (agent.process.exitCode !== null || agent.process.signalCode !== null) await startNode(name);
  }
  await until(() => online(["node-a", "node-b"]));
}, 60_000);

afterAll(async () => {
  await Promise.all([...fleet.values(), direct].filter(Boolean).map((agent) => agent.stop()));
  await gateway?.stop();
  for (const dir of cleanup) await rm(dir, { recursive: true, force: true });
});

describe("a fleet of two real agents behind the real gateway", () => {
  test("the openai client chats (stream and not), completes and embeds, each on a node that holds the model", async () => {
    const client = openai();
    const chat = await client.chat.completions.create({ model: ONLY_B, messages, max_tokens: 8, temperature: 0 });
    expect(chat.choices[0]?.message.content?.length).toBeGreaterThan(0);
    expect(chat.usage?.completion_tokens).toBe(8);

    const stream = await client.chat.completions.create({ model: ONLY_B, messages, max_tokens: 8, temperature: 0, stream: true });
    let streamed = "";
    for await (const chunk of stream) streamed += chunk.choices[0]?.delta.content ?? "";
    expect(streamed).toBe(chat.choices[0]?.message.content);

    const completion = await client.completions.create({ model: CHAT, prompt: "Once upon a time", max_tokens: 8, temperature: 0 });
    expect(completion.choices[0]?.text.length).toBeGreaterThan(0);

    const embeddings = await client.embeddings.create({ model: ONLY_A, input: ["hello world", "the sea"] });
    expect(embeddings.data).toHaveLength(2);
    expect(embeddings.data[0]?.embedding.length).toBe(64);
  });

  test("at temperature 0 with a seed, the gateway's output equals direct mode's, streamed or not", async () => {
    const params = { model: CHAT, messages, max_tokens: 24, temperature: 0, seed: 7 };
    const viaDirect = await openaiDirect().chat.completions.create(params);
    const viaGateway = await openai().chat.completions.create(params);
    expect(viaGateway.choices[0]?.message.content).toBe(viaDirect.choices[0]?.message.content);
    expect(viaGateway.usage).toEqual({ ...viaDirect.usage, prompt_tokens_details: expect.anything() });

    let streamed = "";
    for await (const chunk of await openai().chat.completions.create({ ...params, stream: true })) streamed += chunk.choices[0]?.delta.content ?? "";
    expect(streamed).toBe(viaDirect.choices[0]?.message.content);

    const completionParams = { model: CHAT, prompt: "The sea is", max_tokens: 16, temperature: 0, seed: 3 };
    const directText = (await openaiDirect().completions.create(completionParams)).choices[0]?.text;
    expect((await openai().completions.create(completionParams)).choices[0]?.text).toBe(directText);
  });

  test("concurrent requests for a model both nodes hold are spread over both nodes", async () => {
    // Routing prefers a node with the model loaded; with it loaded on both, load decides.
    await loadEverywhere(CHAT);
    const answers = await Promise.all(Array.from({ length: 4 }, () => chatV0({ max_tokens: 48 })));
    expect(new Set(answers.map((answer) => answer.gateway?.node))).toEqual(new Set(["node-a", "node-b"]));
    // Same model, same seed, different machines: the same text.
    expect(new Set(answers.map((answer) => answer.choices[0]?.message.content)).size).toBe(1);
  });

  test("a model nobody holds is a 404 model_not_found", async () => {
    const failure = await openai()
      .chat.completions.create({ model: "no-such-model", messages })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(OpenAI.NotFoundError);
    expect((failure as InstanceType<typeof OpenAI.APIError>).code).toBe("model_not_found");
  });

  test("a stream its client leaves is counted with the tokens its node generated, not as free", async () => {
    const { key, record } = await admin().createKey({ name: "leaver" });
    const generatedBefore = await fleetCompletionTokens(CHAT);
    const stream = await openai(key).chat.completions.create({ model: CHAT, messages, max_tokens: -1, temperature: 0, stream: true });
    let chunks = 0;
    for await (const chunk of stream) {
      expect(chunk.choices[0]?.finish_reason ?? null).toBeNull();
      if (++chunks === 3) break; // leaving the loop aborts the request
    }
    let rows: UsageRow[] = [];
    await until(async () => {
      rows = await admin().usage({ key: record.id });
      return rows.length > 0;
    });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ model: CHAT, requests: 1, errors: 0 });
    expect(rows[0]?.prompt_tokens).toBeGreaterThan(0);
    // Exactly what the node's engine generated (its own count), not what reached the client;
    // under ~2,000, since the generation was stopped.
    let generated = 0;
    await until(async () => (generated = (await fleetCompletionTokens(CHAT)) - generatedBefore) > 0);
    expect(rows[0]?.completion_tokens).toBe(generated);
    expect(generated).toBeLessThan(2_000);
  });

  test("kill -9 an agent mid-stream: the client gets an error promptly, and the next request succeeds on the other node", async () => {
    // After the first chunk both nodes are frozen at once; the one still serving dies mid-stream.
    // A fast (or, on a loaded machine, slow-to-relay) node may have finished all ~2,000 tokens by
    // then: that stream is read to its end and another one tried.
    let iterator: AsyncIterator<unknown> | undefined;
    let serving: NodeSummary | undefined;
    for (let attempt = 1; serving === undefined; attempt++) {
      if (attempt > 5) throw new Error("every stream had finished on its node before the node could be frozen");
      const stream = await openai().chat.completions.create({ model: CHAT, messages, max_tokens: -1, temperature: 0, stream: true });
      iterator = stream[Symbol.asyncIterator]();
      expect((await iterator.next()).done).toBe(false);
      for (const agent of fleet.values()) agent.kill("SIGSTOP");
      serving = (await nodes()).find((node) => node.in_flight > 0);
      for (const [name, agent] of fleet) if (name !== serving?.name) agent.kill("SIGCONT");
      if (serving === undefined) while (!(await iterator.next()).done);
    }
    const victim = serving.name;
    fleet.get(victim)?.kill("SIGKILL");
    let failure: unknown;
    try {
      for (let next = await iterator!.next(); !next.done; next = await iterator!.next()) {
        // draining what was already relayed
      }
    } catch (error) {
      failure = error;
    }
    expect(failure).toBeInstanceOf(OpenAI.APIError);
    expect(String((failure as Error).message)).toMatch(/disconnected/);

    const survivor = victim === "node-a" ? "node-b" : "node-a";
    const next = await chatV0({});
    expect(next.gateway?.node).toBe(survivor);

  });

  test("an agent killed before it answers: the request is retried on the other node and succeeds", async () => {
    const victim = fleet.get("node-a") as AgentProcess;
    await loadEverywhere(CHAT);
    const expected = (await chatV0({ max_tokens: 12 })).choices[0]?.message.content;
    // Frozen, node-a keeps its socket open but answers nothing. Concurrent requests are spread
    // over both nodes, so some of them are sent to node-a and wait there.
    victim.kill("SIGSTOP");
    const pending = Promise.allSettled(Array.from({ length: 4 }, () => chatV0({ max_tokens: 12 })));
    try {
      await until(async () => ((await nodes()).find((node) => node.name === "node-a" && node.online)?.in_flight ?? 0) > 0, 5_000);
    } finally {
      victim.kill("SIGKILL");
    }
    const answers = (await pending).map((outcome) => {
      if (outcome.status === "rejected") throw outcome.reason;
      return outcome.value;
    });
    for (const answer of answers) expect(answer.choices[0]?.message.content).toBe(expected);
    expect(answers.every((answer) => answer.gateway?.node === "node-b")).toBe(true);
    expect(answers.some((answer) => answer.gateway?.retries === 1)).toBe(true);
  });

  test("after a gateway restart the agents reconnect within seconds and serve again", async () => {
    const { port, persistDir, apiKey, nodeToken, adminToken } = gateway;
    const before = new Map((await nodes()).map((node) => [node.name, node.id]));
    await gateway.stop({ keepState: true });
    cleanup.push(persistDir);
    gateway = await startGateway({
      port,
      persistDir,
      secrets: { apiKey, nodeToken, adminToken },
      vars: { LMGATE_HEARTBEAT_INTERVAL_MS: "2000", LMGATE_HEARTBEAT_TIMEOUT_MS: "6000" },
    });
    // The Fleet's state outlives the restart, and forgets the old connections only as it finds them
    // gone: the agents are back when both are online on connections of their own.
    // Backoff is capped at 10 s: twice that is a guard, not a measure.
    const reconnected = async () => (await nodes()).filter((node) => node.online && before.has(node.name) && node.id !== before.get(node.name)).length === 2;
    await until(reconnected, 20_000);
    expect((await chatV0({ max_tokens: 4 })).choices[0]?.finish_reason).toBe("length");
  }, 120_000);
});
