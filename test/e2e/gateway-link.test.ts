import { rm } from "node:fs/promises";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { NodeSummary } from "../../shared/gateway-admin/admin-schemas.ts";
import { ModelList } from "../../shared/protocol/model-schemas.ts";
import { startGatewayLink, type GatewayLink } from "../../node-agent/link/gateway-link.ts";
import { ScriptedSource } from "../harness/scripted-source.ts";
import { startGateway, type GatewayProcess } from "../harness/gateway-process.ts";

/**
 * The real gateway (wrangler dev, workerd, the Fleet Durable Object) with real gateway links,
 * over loopback, and the official openai client. The nodes' engines are scripted here (no model
 * is needed to prove the transport); test/e2e/gateway-fleet.test.ts runs real agent processes.
 */

let gateway: GatewayProcess;
const stateDirs: string[] = [];
const links: GatewayLink[] = [];
const sources = {
  a: new ScriptedSource({ models: ["shared-m", "only-a", "embed-a"], words: (request) => words(request, "a") }),
  b: new ScriptedSource({ models: ["shared-m", "only-b"], words: (request) => words(request, "b") }),
};

function words(request: { max_tokens?: number | undefined }, node: string): string[] {
  return Array.from({ length: request.max_tokens ?? 5 }, (_, i) => `${node}${i} `);
}

function link(name: string, source: ScriptedSource, url = gateway.url): GatewayLink {
  const started = startGatewayLink({
    url,
    token: gateway.nodeToken,
    nodeName: name,
    agentVersion: "test",
    source,
    tuning: { backoff: { initialMs: 50, maxMs: 500 } },
  });
  links.push(started);
  return started;
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const client = () => new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: gateway.apiKey, maxRetries: 0 });

async function nodes(): Promise<NodeSummary[]> {
  const response = await fetch(`${gateway.url}/admin/nodes`, { headers: { authorization: `Bearer ${gateway.adminToken}` } });
  return (await response.json() as { data: unknown[] }).data.map((node) => NodeSummary.parse(node));
}

beforeAll(async () => {
  gateway = await startGateway();
  const a = link("node-a", sources.a);
  const b = link("node-b", sources.b);
  await until(() => a.connected && b.connected);
}, 120_000);

afterAll(async () => {
  await Promise.all(links.map((started) => started.close()));
  await gateway?.stop();
  for (const dir of stateDirs) await rm(dir, { recursive: true, force: true });
});

describe("through the real gateway", () => {
  test("the openai client chats, streaming and not, on the node that holds the model", async () => {
    const openai = client();
    const reply = await openai.chat.completions.create({ model: "only-b", messages: [{ role: "user", content: "hi" }], max_tokens: 3 });
    expect(reply.choices[0]?.message.content).toBe("b0 b1 b2 ");
    expect(reply.usage?.completion_tokens).toBe(3);

    const stream = await openai.chat.completions.create({
      model: "only-a",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 40,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: number | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      usage = chunk.usage?.completion_tokens ?? usage;
    }
    expect(text).toBe(words({ max_tokens: 40 }, "a").join(""));
    expect(usage).toBe(40);
  });

  test("completions and embeddings go through too", async () => {
    const openai = client();
    const completion = await openai.completions.create({ model: "only-a", prompt: "x", max_tokens: 2 });
    expect(completion.choices[0]?.text).toBe("a0 a1 ");
    const embeddings = await openai.embeddings.create({ model: "embed-a", input: ["abc", "de"], encoding_format: "float" });
    expect(embeddings.data.map((item) => item.embedding)).toEqual([[3, 1], [2, 1]]);
  });

  test("the model list is the union of both nodes, with where each model lives", async () => {
    // Other tests add nodes of their own: this one looks at what node-a and node-b hold.
    const list = ModelList.parse(await (await fetch(`${gateway.url}/api/v0/models`, { headers: { authorization: `Bearer ${gateway.apiKey}` } })).json());
    const ours = list.data.filter((model) => model.nodes?.some((node) => node.node === "node-a" || node.node === "node-b"));
    expect(ours.map((model) => model.id)).toEqual(["embed-a", "only-a", "only-b", "shared-m"]);
    expect(list.data.find((model) => model.id === "shared-m")?.nodes?.map((node) => node.node)).toEqual(["node-a", "node-b"]);
    const summaries = (await nodes()).filter((node) => node.name === "node-a" || node.name === "node-b");
    expect(summaries.map((node) => [node.name, node.online])).toEqual([["node-a", true], ["node-b", true]]);
  });

  test("concurrent requests for a model two nodes hold are spread over both", async () => {
    const openai = client();
    const replies = await Promise.all(
      Array.from({ length: 4 }, () => openai.chat.completions.create({ model: "shared-m", messages: [{ role: "user", content: "hi" }], max_tokens: 50 })),
    );
    const servedBy = new Set(replies.map((reply) => reply.choices[0]?.message.content?.[0]));
    expect(servedBy).toEqual(new Set(["a", "b"]));
  });

  test("a client that disconnects mid-stream cancels the generation on its node", async () => {
    const slow = new ScriptedSource({ models: ["slow-m"], delayMs: 20, words: () => Array.from({ length: 1_000 }, () => "w ") });
    const slowLink = link("node-slow", slow);
    await until(() => slowLink.connected);
    const controller = new AbortController();
    const stream = await client().chat.completions.create(
      { model: "slow-m", messages: [{ role: "user", content: "hi" }], stream: true },
      { signal: controller.signal },
    );
    let chunks = 0;
    for await (const _chunk of stream) {
      if (++chunks < 3) continue;
      controller.abort();
      break;
    }
    await until(() => slow.aborted.length === 1, 5_000);
    expect(slow.pulled).toBeLessThan(1_000);
  });

  // The link's credit window against a scripted source: a real engine (node-llama-cpp) is
  // producer-driven and runs to max_tokens; what it writes waits in the agent, bounded by that.
  test("a client that stops reading stops the node's link from pulling more from its source", async () => {
    // 40 MB of text: far more than every socket buffer on the way can hold.
    const word = `${"x".repeat(99)} `;
    const fast = new ScriptedSource({
      models: ["flood-m", "ping-m"],
      words: (request) => (request.model === "ping-m" ? ["pong"] : Array.from({ length: 400_000 }, () => word)),
    });
    const fastLink = link("node-flood", fast);
    await until(() => fastLink.connected);
    const response = await fetch(`${gateway.url}/v1/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${gateway.apiKey}` },
      body: JSON.stringify({ model: "flood-m", prompt: "x", stream: true }),
    });
    const reader = response.body!.getReader();
    await reader.read();
    // Nobody reads now. The source may run ahead only by what the pipes and the window hold:
    // wait until it stalls, i.e. pulls no word while another request goes through the gateway
    // to the same link and back. Frames on the link's socket keep their order, so any credit
    // the gateway granted before that request's frame has reached the link by then. A ping that
    // fails (a link swamped by a source that does not stall drops) went through nothing: try again.
    const ping = () => client().completions.create({ model: "ping-m", prompt: "x", max_tokens: 1 }).then((reply) => reply.choices[0]?.text, () => undefined);
    let pulled = -1;
    await until(async () => {
      pulled = fast.pulled;
      const pong = await ping();
      // The ping's own word is the one pull allowed.
      return pong === "pong" && fast.pulled === pulled + 1;
    }, 30_000);
    // What did run ahead sits in socket and runtime buffers along the way (~10 MB on loopback
    // here), a fixed amount: the rest of the 40 MB was never generated.
    expect(pulled).toBeLessThan(200_000);
    // Paused, not ended: the generation is still there for the client to read on.
    expect(fast.aborted).toEqual([]);
    await reader.cancel();
    await until(() => fast.aborted.length === 1, 5_000);
  });

  test("a link that closes says goodbye: the Fleet lists its node as stopped on purpose, not lost", async () => {
    const leaving = link("node-c", new ScriptedSource({ models: ["only-c"] }));
    await until(() => leaving.connected);
    await leaving.close();
    // Closed for good: not one of the links the restart test below expects back.
    links.splice(links.indexOf(leaving), 1);
    await until(async () => (await nodes()).some((node) => node.name === "node-c" && !node.online));
    expect((await nodes()).find((node) => node.name === "node-c")).toMatchObject({ online: false, left: "shutdown" });
  });

  test("a model nobody holds is a 404 model_not_found", async () => {
    const failure = await client()
      .chat.completions.create({ model: "nobody-has-it", messages: [{ role: "user", content: "hi" }] })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(OpenAI.NotFoundError);
    expect((failure as InstanceType<typeof OpenAI.NotFoundError>).code).toBe("model_not_found");
  });

  test("after a gateway restart every node reconnects within seconds and serves again", async () => {
    const { port, persistDir } = gateway;
    await gateway.stop({ keepState: true });
    stateDirs.push(persistDir);
    await until(() => links.every((started) => !started.connected), 10_000);
    const restarted = await startGateway({
      port,
      persistDir,
      secrets: { apiKey: gateway.apiKey, nodeToken: gateway.nodeToken, adminToken: gateway.adminToken },
    });
    gateway = restarted;
    await until(() => links.every((candidate) => candidate.connected), 30_000);
    const reply = await client().chat.completions.create({ model: "only-b", messages: [{ role: "user", content: "hi" }], max_tokens: 1 });
    expect(reply.choices[0]?.message.content).toBe("b0 ");
  }, 120_000);
});
