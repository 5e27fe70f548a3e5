import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import OpenAI from "openai";
import { afterAll, beforeAll, expect, test } from "vitest";
import { ListOf, NodeSummary } from "../../shared/gateway-admin/admin-schemas.ts";
import { RequestPage } from "../../shared/gateway-admin/request-log-schemas.ts";
import { startAgent, type AgentProcess } from "../harness/agent-process.ts";
import { startGateway, type GatewayProcess } from "../harness/gateway-process.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * Tracing end to end: a client's W3C `traceparent` goes through the real gateway (wrangler) to a
 * real agent, which exports its spans over OTLP/HTTP (the official SDK's exporter, configured by
 * OTEL_EXPORTER_OTLP_ENDPOINT) to a receiver on 127.0.0.1; the request log keeps the same trace.
 */

const CHAT = "tiny-chat-f32";

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes?: Array<{ key: string; value: Record<string, unknown> }>;
}
interface OtlpExport {
  resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> }; scopeSpans: Array<{ spans: OtlpSpan[] }> }>;
}

let receiver: Server;
const exports: Array<{ contentType: string | undefined; body: OtlpExport }> = [];
let gateway: GatewayProcess;
let agent: AgentProcess;

const spans = () => exports.flatMap((received) => received.body.resourceSpans.flatMap((resource) => resource.scopeSpans.flatMap((scope) => scope.spans)));
async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
const admin = async (path: string) => (await fetch(`${gateway.url}/admin${path}`, { headers: { authorization: `Bearer ${gateway.adminToken}` } })).json();

beforeAll(async () => {
  receiver = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      if (request.method === "POST" && request.url === "/v1/traces") {
        exports.push({ contentType: request.headers["content-type"], body: JSON.parse(Buffer.concat(chunks).toString("utf8")) as OtlpExport });
      }
      response.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const { port } = receiver.address() as AddressInfo;
  gateway = await startGateway();
  agent = await startAgent({
    models: [await testModelsDir()],
    gateway: { url: gateway.url, token: gateway.nodeToken },
    name: "traced-node",
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_BSP_SCHEDULE_DELAY: "100", OTEL_SERVICE_NAME: "" },
  });
  await until(async () => ListOf(NodeSummary).parse(await admin("/nodes")).data.some((node) => node.name === "traced-node" && node.online), "the agent online");
}, 180_000);

afterAll(async () => {
  await agent?.stop();
  await gateway?.stop();
  await new Promise((resolve) => receiver?.close(resolve));
});

test("the client's traceparent reaches the agent, whose queue, prompt and generation spans arrive over OTLP in that trace", async () => {
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const parentId = "00f067aa0ba902b7";
  const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: gateway.apiKey, maxRetries: 0, timeout: 30_000, defaultHeaders: { traceparent: `00-${traceId}-${parentId}-01` } });
  const completion = await client.chat.completions.create({ model: CHAT, messages: [{ role: "user", content: "Tell me about the sea." }], max_tokens: 4 });
  expect(completion.choices[0]?.message.content).toBeTruthy();

  await until(() => spans().filter((span) => span.traceId === traceId).length >= 4, "the request's spans");
  const traced = spans().filter((span) => span.traceId === traceId);
  const request = traced.find((span) => span.name === "lmgate.agent chat");
  expect(request?.parentSpanId).toBe(parentId);
  const children = traced.filter((span) => span !== request);
  expect(children.map((span) => span.name).sort()).toEqual(["generation", "prompt processing", "queue"]);
  for (const child of children) {
    expect(child.parentSpanId).toBe(request?.spanId);
    expect(BigInt(child.startTimeUnixNano)).toBeGreaterThanOrEqual(BigInt(request?.startTimeUnixNano ?? "0"));
    expect(BigInt(child.endTimeUnixNano)).toBeLessThanOrEqual(BigInt(request?.endTimeUnixNano ?? "0"));
  }
  const tokens = request?.attributes?.find((attribute) => attribute.key === "gen_ai.usage.output_tokens")?.value;
  expect(tokens).toEqual({ intValue: completion.usage?.completion_tokens });
  const resource = exports[0]?.body.resourceSpans[0]?.resource.attributes ?? [];
  expect(resource).toContainEqual({ key: "service.name", value: { stringValue: "lmgate-agent" } });
  expect(resource).toContainEqual({ key: "lmgate.node", value: { stringValue: "traced-node" } });
  expect(exports[0]?.contentType).toMatch(/^application\/json/);

  // The request log keeps the trace the request ran in.
  const page = RequestPage.parse(await admin("/requests?limit=1"));
  expect(page.data[0]?.traceparent).toBe(`00-${traceId}-${parentId}-01`);
});

test("without a traceparent the gateway starts a trace, and the agent's spans and the log row share it", async () => {
  const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: gateway.apiKey, maxRetries: 0, timeout: 30_000 });
  await client.chat.completions.create({ model: CHAT, messages: [{ role: "user", content: "Hello again." }], max_tokens: 2 });
  const row = RequestPage.parse(await admin("/requests?limit=1")).data[0];
  const [, traceId, parentId] = row?.traceparent?.split("-") ?? [];
  expect(traceId).toMatch(/^[\da-f]{32}$/);
  await until(() => spans().some((span) => span.traceId === traceId && span.name === "lmgate.agent chat"), "the request's spans");
  expect(spans().find((span) => span.traceId === traceId && span.name === "lmgate.agent chat")?.parentSpanId).toBe(parentId);
});
