import { afterAll, beforeAll, expect, test } from "vitest";
import { NodeSummary } from "../../shared/gateway-admin/admin-schemas.ts";
import { ChatCompletion, ChatCompletionChunk } from "../../shared/openai-completions/completion-schemas.ts";
import { startAgent, type AgentProcess } from "../harness/agent-process.ts";
import { startGateway, type GatewayProcess } from "../harness/gateway-process.ts";
import { untilFirstText } from "../harness/sse.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * Graceful shutdown of an agent that serves a real gateway: the stream it runs finishes through
 * the gateway, new work goes to the other node, the node leaves the fleet, and its own
 * `/metrics` port (gateway mode) counted what it served.
 */

const CHAT = "tiny-chat-f32";
/** Token "a": a +100 logit bias keeps the model writing it, so a generation lasts exactly max_tokens. */
const TOKEN_A = "395";
const NAMES = ["drain-a", "drain-b"] as const;

let gateway: GatewayProcess;
const agents = new Map<string, AgentProcess>();

beforeAll(async () => {
  gateway = await startGateway();
  const models = await testModelsDir();
  await Promise.all(
    NAMES.map(async (name) => {
      const agent = await startAgent({
        models: [models],
        gateway: { url: gateway.url, token: gateway.nodeToken },
        name,
        extraArgs: ["--metrics", "--metrics-port", "0"],
      });
      agents.set(name, agent);
    }),
  );
  await until(async () => (await nodes()).filter((node) => node.online).length === 2);
}, 180_000);

afterAll(async () => {
  await Promise.all([...agents.values()].map((agent) => agent.stop()));
  await gateway?.stop();
});

async function nodes(): Promise<NodeSummary[]> {
  const response = await fetch(`${gateway.url}/admin/nodes`, { headers: { authorization: `Bearer ${gateway.adminToken}` } });
  return ((await response.json()) as { data: unknown[] }).data.map((node) => NodeSummary.parse(node));
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const chat = (body: Record<string, unknown>) =>
  fetch(`${gateway.url}/api/v0/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${gateway.apiKey}` },
    body: JSON.stringify({ model: CHAT, messages: [{ role: "user", content: "a" }], ...body }),
  });

function metricsUrl(agent: AgentProcess): string {
  const url = /lmgate-agent: metrics on (http:\/\/\S+)/.exec(agent.output())?.[1];
  if (url === undefined) throw new Error(`no metrics line in:\n${agent.output()}`);
  return url;
}

/** One sample of a counter from an agent's metrics port (0 when the series does not exist yet). */
async function sample(agent: AgentProcess, series: string): Promise<number> {
  const text = await (await fetch(metricsUrl(agent))).text();
  const line = text.split("\n").find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

test("SIGTERM on a node mid-stream: the stream finishes through the gateway, new requests go elsewhere, the node leaves and exits 0", async () => {
  // The model loads on one node; routing then prefers that node while it has a free slot.
  const load = await fetch(`${gateway.url}/api/v1/models/load`, {
    method: "POST",
    headers: { authorization: `Bearer ${gateway.apiKey}` },
    body: JSON.stringify({ model: CHAT }),
  });
  expect(load.status).toBe(200);

  const response = await chat({ max_tokens: 1800, logit_bias: { [TOKEN_A]: 100 }, stream: true, stream_options: { include_usage: true } });
  expect(response.status).toBe(200);
  const reading = await untilFirstText(response);
  const busy = (await nodes()).find((node) => node.in_flight > 0);
  expect(busy).toBeDefined();
  const leaving = agents.get(busy?.name ?? "") as AgentProcess;
  const stayingName = NAMES.find((name) => name !== busy?.name) as string;
  const staying = agents.get(stayingName) as AgentProcess;

  leaving.kill("SIGTERM");
  await until(() => leaving.output().includes("SIGTERM: shutting down"));
  // Whichever node the gateway tries first, the leaving one answers 503 and the gateway retries on the other.
  const after = await chat({ max_tokens: 6 });
  expect(after.status).toBe(200);
  const answer = ChatCompletion.parse(await after.json());
  expect(answer.gateway?.node).toBe(stayingName);

  const { events, done } = await reading.rest();
  expect(done).toBe(true);
  const chunks = events.map((event) => ChatCompletionChunk.parse(event));
  expect(chunks.findLast((chunk) => chunk.choices.length > 0)?.choices[0]?.finish_reason).toBe("length");
  expect(chunks.at(-1)?.usage?.completion_tokens).toBe(1800);

  expect(await leaving.exited).toBe(0);
  expect(leaving.output()).toContain("lmgate-agent: left the gateway");
  await until(async () => !(await nodes()).some((node) => node.name === busy?.name && node.online), 10_000);

  // Gateway mode has /metrics on a port of its own; the staying node counted exactly what it served.
  const series = `lmgate_agent_requests_total{route="chat/completions",model="${CHAT}",status="200"}`;
  expect(await sample(staying, series)).toBe(1);
  expect(await sample(staying, `lmgate_agent_completion_tokens_total{model="${CHAT}"}`)).toBe(answer.usage.completion_tokens);
});
