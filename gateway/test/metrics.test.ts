import { expect, onTestFinished, test } from "vitest";
import { exports } from "cloudflare:workers";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import { CreatedKey } from "../../shared/gateway-admin/admin-schemas.ts";
import { ChatCompletion, ChatCompletionChunk } from "../../shared/openai-completions/completion-schemas.ts";
import { parsePrometheus, series } from "../../test/harness/prometheus-text.ts";
import { TEST_BINDINGS } from "./bindings.ts";
import { ADMIN_TOKEN, API_KEY, api, chatBody, eventually, FakeAgent, type RequestFrame } from "./fake-agent.ts";

/** `GET /metrics` on the gateway: who may read it, and counters that move by exactly what known traffic adds. */

const METRICS_TOKEN = TEST_BINDINGS.LMGATE_METRICS_TOKEN;
const MODEL = "metrics-chat";
const NODE = "metrics-gpu";

const getMetrics = (authorization?: string) =>
  exports.default.fetch("http://gateway.test/metrics", { headers: authorization === undefined ? {} : { authorization } });

async function scrape() {
  const response = await getMetrics(`Bearer ${ADMIN_TOKEN}`);
  expect(response.status).toBe(200);
  return parsePrometheus(await response.text());
}

/**
 * Waits until no node is connected: another test's node may still be leaving (its socket closes
 * after that test), and the gauges below count every connected node.
 */
async function emptyFleet(): Promise<void> {
  await eventually(async () => (await scrape()).samples.get("lmgate_gateway_nodes_connected") === 0);
}

/** A node holding MODEL, loaded, that answers each chat with its own usage and speed, so sums cannot come out right by accident. */
async function connectNode(): Promise<FakeAgent> {
  await emptyFleet();
  const node = await FakeAgent.connect({ name: NODE, models: [{ id: MODEL, state: "loaded" }] });
  onTestFinished(() => node.close());
  let counter = 0;
  node.autoAnswer((frame) => answer(node, frame, (counter += 1)));
  return node;
}

function answer(node: FakeAgent, frame: RequestFrame, n: number): void {
  const usage = { prompt_tokens: 3 + n, completion_tokens: 2 * n, total_tokens: 3 + 3 * n };
  node.complete(frame.id, "hello", { usage, stats: { tokens_per_second: 10 * n, time_to_first_token: 0.001, generation_time: 0.002, stop_reason: "eosFound" } });
}

test("/metrics refuses callers without the admin or metrics token with a 401", async () => {
  const missing = await getMetrics();
  expect(missing.status).toBe(401);
  expect(ErrorBody.parse(await missing.json()).error.code).toBe("invalid_token");
  expect((await getMetrics("Bearer not-the-token")).status).toBe(401);
  const apiKey = await getMetrics(`Bearer ${API_KEY}`);
  expect(apiKey.status).toBe(401);
  expect(ErrorBody.parse(await apiKey.json()).error.message).toMatch(/API key/);

  for (const token of [ADMIN_TOKEN, METRICS_TOKEN]) {
    const response = await getMetrics(`Bearer ${token}`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(parsePrometheus(await response.text()).types.get("lmgate_gateway_requests_total")).toBe("counter");
  }
  // The metrics token reads metrics and nothing else.
  const admin = await exports.default.fetch("http://gateway.test/admin/keys", { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  expect(admin.status).toBe(401);
});

test("/metrics parses as Prometheus text and its counters move by exactly what known traffic adds", async () => {
  await connectNode();
  const before = await scrape();

  // Three plain chats and two streamed ones (with their usage), then a model nobody holds.
  const usages: Array<{ prompt_tokens: number; completion_tokens: number }> = [];
  for (let index = 0; index < 3; index += 1) {
    const response = await api("/v1/chat/completions", chatBody(MODEL));
    expect(response.status).toBe(200);
    usages.push(ChatCompletion.parse(await response.json()).usage);
  }
  for (let index = 0; index < 2; index += 1) {
    const response = await api("/api/v0/chat/completions", chatBody(MODEL, { stream: true, stream_options: { include_usage: true } }));
    expect(response.status).toBe(200);
    const chunks = (await response.text()).split("\n\n").filter((block) => block.startsWith("data: {"));
    const usage = ChatCompletionChunk.parse(JSON.parse(chunks.at(-1)!.slice("data: ".length))).usage;
    expect(usage).toBeDefined();
    usages.push(usage!);
  }
  expect((await api("/v1/chat/completions", chatBody("no-such-model"))).status).toBe(404);

  const after = await scrape();
  const delta = (key: string) => (after.samples.get(key) ?? 0) - (before.samples.get(key) ?? 0);
  const sum = (field: "prompt_tokens" | "completion_tokens") => usages.reduce((total, usage) => total + usage[field], 0);

  expect(after.types.get("lmgate_gateway_requests_total")).toBe("counter");
  expect(delta(series("lmgate_gateway_requests_total", { route: "chat/completions", model: MODEL, status: "200" }))).toBe(5);
  // A model id nobody has never becomes a label value: callers could mint unbounded series.
  expect(delta(series("lmgate_gateway_requests_total", { route: "chat/completions", model: "unknown", status: "404" }))).toBe(1);
  expect([...after.samples.keys()].some((key) => key.includes("no-such-model"))).toBe(false);

  expect(delta(series("lmgate_gateway_prompt_tokens_total", { model: MODEL }))).toBe(sum("prompt_tokens"));
  expect(delta(series("lmgate_gateway_completion_tokens_total", { model: MODEL }))).toBe(sum("completion_tokens"));

  expect(after.types.get("lmgate_gateway_time_to_first_token_seconds")).toBe("histogram");
  expect(delta(series("lmgate_gateway_time_to_first_token_seconds_count", { route: "chat/completions", model: MODEL }))).toBe(5);
  expect(delta(series("lmgate_gateway_request_duration_seconds_count", { route: "chat/completions", model: MODEL }))).toBe(5);
  expect(delta(series("lmgate_gateway_request_duration_seconds_count", { route: "chat/completions", model: "unknown" }))).toBe(1);
  // The node's own decode speeds, 10 tokens/s × the request's number, passed through.
  expect(delta(series("lmgate_gateway_tokens_per_second_count", { model: MODEL }))).toBe(5);
  expect(delta(series("lmgate_gateway_tokens_per_second_sum", { model: MODEL }))).toBe(10 * (1 + 2 + 3 + 4 + 5));

  expect(after.samples.get("lmgate_gateway_nodes_connected")).toBe(1);
  expect(after.samples.get(series("lmgate_gateway_slots", { node: NODE, model: MODEL }))).toBe(2);
  expect(after.samples.get(series("lmgate_gateway_slots_busy", { node: NODE, model: MODEL }))).toBe(0);
  expect(after.samples.get("lmgate_gateway_queue_depth")).toBe(0);
  expect(after.samples.get("lmgate_gateway_requests_in_flight")).toBe(0);
});

test("slot, in-flight and node gauges are read from the fleet at scrape time", async () => {
  const node = await connectNode();
  const held = node.nextRequest();
  const response = api("/v1/chat/completions", chatBody(MODEL));
  const frame = await held;

  const during = await scrape();
  expect(during.samples.get(series("lmgate_gateway_slots_busy", { node: NODE, model: MODEL }))).toBe(1);
  expect(during.samples.get("lmgate_gateway_requests_in_flight")).toBe(1);

  answer(node, frame, 1);
  expect((await response).status).toBe(200);
  node.close();
  await eventually(async () => (await scrape()).samples.get("lmgate_gateway_nodes_connected") === 0);
  // A node that left takes its slot series with it.
  const slotSeries = [...(await scrape()).samples.keys()].filter((key) => key.startsWith("lmgate_gateway_slots"));
  expect(slotSeries.some((key) => key.includes(NODE))).toBe(false);
});

test("a node that says hello again under a known name counts as a reconnect", async () => {
  const reconnects = series("lmgate_gateway_node_reconnects_total", { node: "metrics-flaky" });
  await emptyFleet();
  const before = (await scrape()).samples.get(reconnects) ?? 0;
  const first = await FakeAgent.connect({ name: "metrics-flaky", models: [] });
  expect((await scrape()).samples.get(reconnects) ?? 0).toBe(before);
  first.close();
  await eventually(async () => (await scrape()).samples.get("lmgate_gateway_nodes_connected") === 0);
  const second = await FakeAgent.connect({ name: "metrics-flaky", models: [] });
  onTestFinished(() => second.close());
  expect((await scrape()).samples.get(reconnects)).toBe(before + 1);
});

test("requests refused before routing are counted by error code, and not as routed requests", async () => {
  await connectNode();
  const created = await exports.default.fetch("http://gateway.test/admin/keys", {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "metrics-scoped", models: ["other-*"] }),
  });
  const { key } = CreatedKey.parse(await created.json());
  const before = await scrape();

  expect((await api("/v1/chat/completions", chatBody(MODEL), { headers: { authorization: `Bearer ${key}` } })).status).toBe(403);
  expect((await api("/v1/chat/completions", chatBody(MODEL), { headers: { authorization: "Bearer lmg_made-up-key" } })).status).toBe(401);

  const after = await scrape();
  const delta = (key: string) => (after.samples.get(key) ?? 0) - (before.samples.get(key) ?? 0);
  expect(delta(series("lmgate_gateway_requests_refused_total", { code: "model_not_allowed" }))).toBe(1);
  expect(delta(series("lmgate_gateway_requests_refused_total", { code: "invalid_api_key" }))).toBe(1);
  const routed = [...after.samples.keys()].filter((key) => key.startsWith("lmgate_gateway_requests_total{"));
  expect(routed.every((key) => delta(key) === 0)).toBe(true);
});
