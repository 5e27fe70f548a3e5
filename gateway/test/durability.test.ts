import { expect, onTestFinished, test } from "vitest";
import { env, exports } from "cloudflare:workers";
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import { CreatedKey, FleetStats } from "../../shared/gateway-admin/admin-schemas.ts";
import { parsePrometheus, series } from "../../test/harness/prometheus-text.ts";
import { fleetStub } from "../env.ts";
import { ADMIN_TOKEN, api, chatBody, eventually, FakeAgent } from "./fake-agent.ts";

/**
 * What the Fleet must not forget when it hibernates after a quiet spell (or is evicted, or the
 * runtime restarts it): a key's requests per minute, the Prometheus counters, the dashboard's traffic.
 * `evictDurableObject` drops the object's memory and keeps the agents' sockets, as hibernation does.
 */

const MODEL = "durable-chat";

const admin = (method: string, path: string, body?: unknown) =>
  exports.default.fetch(`http://gateway.test/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });

async function connectNode(): Promise<void> {
  const node = await FakeAgent.connect({ name: "durable-gpu", models: [{ id: MODEL, state: "loaded" }] });
  onTestFinished(() => node.close());
  node.autoAnswer((frame) => node.complete(frame.id, "hello"));
}

const hibernate = () => evictDurableObject(fleetStub(env), { webSockets: "hibernate" });

async function scrape() {
  const response = await exports.default.fetch("http://gateway.test/metrics", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(response.status).toBe(200);
  return parsePrometheus(await response.text());
}

test("a key's requests per minute hold across hibernation: rpm 1 means one request a minute", async () => {
  await connectNode();
  const created = await admin("POST", "/keys", { name: "one-a-minute", rpm: 1 });
  const { key } = CreatedKey.parse(await created.json());
  const chat = () => api("/v1/chat/completions", chatBody(MODEL), { headers: { authorization: `Bearer ${key}` } });

  expect((await chat()).status).toBe(200);
  expect((await chat()).status).toBe(429);
  for (let round = 0; round < 2; round += 1) {
    await hibernate();
    const response = await chat();
    expect(response.status).toBe(429);
    expect(ErrorBody.parse(await response.json()).error.code).toBe("rate_limit_exceeded");
    const retryAfter = Number(response.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
  }
});

test("Prometheus counters and the dashboard's traffic survive hibernation", async () => {
  await connectNode();
  const requests = series("lmgate_gateway_requests_total", { route: "chat/completions", model: MODEL, status: "200" });
  const durations = series("lmgate_gateway_request_duration_seconds_count", { route: "chat/completions", model: MODEL });
  const before = (await scrape()).samples;
  for (let index = 0; index < 2; index += 1) expect((await api("/v1/chat/completions", chatBody(MODEL))).status).toBe(200);
  const stats = async () => FleetStats.parse(await (await admin("GET", "/stats")).json());
  const trafficBefore = (await stats()).series.reduce((total, bucket) => total + bucket.requests, 0);
  // The two chats are in the dashboard's traffic, so what survives below is something.
  expect(trafficBefore).toBeGreaterThanOrEqual(2);
  const counted = (await scrape()).samples;
  expect((counted.get(requests) ?? 0) - (before.get(requests) ?? 0)).toBe(2);

  await hibernate();
  const after = (await scrape()).samples;
  expect(after.get(requests)).toBe(counted.get(requests));
  expect(after.get(durations)).toBe(counted.get(durations));
  expect((await stats()).series.reduce((total, bucket) => total + bucket.requests, 0)).toBe(trafficBefore);

  // And they go on counting from there.
  expect((await api("/v1/chat/completions", chatBody(MODEL))).status).toBe(200);
  expect((await scrape()).samples.get(requests)).toBe((counted.get(requests) ?? 0) + 1);
});

test("counts are saved within moments of a request, unscraped, so a Fleet that falls asleep right after keeps them", async () => {
  await connectNode();
  const requests = series("lmgate_gateway_requests_total", { route: "chat/completions", model: MODEL, status: "200" });
  const before = (await scrape()).samples.get(requests) ?? 0;
  expect((await api("/v1/chat/completions", chatBody(MODEL))).status).toBe(200);
  // What the Fleet has saved, read from its storage as the next life of the object will.
  const saved = () =>
    runInDurableObject(fleetStub(env), (_fleet, state) => {
      const row = state.storage.sql.exec<{ state: string }>("SELECT state FROM saved_state WHERE part = 'metrics'").toArray()[0];
      const metrics = row === undefined ? {} : (JSON.parse(row.state) as Record<string, Array<{ values: string[]; state: { value: number } }>>);
      const entry = metrics.lmgate_gateway_requests_total?.find((series) => series.values.join() === ["chat/completions", MODEL, "200"].join());
      return entry?.state.value ?? 0;
    });
  await eventually(async () => (await saved()) === before + 1);
  await hibernate();
  expect((await scrape()).samples.get(requests)).toBe(before + 1);
});

test("after a restart of the whole gateway, a connection the store lists but no node object holds is offline; a held one stays online", async () => {
  const live = await FakeAgent.connect({ name: "still-here", models: [{ id: MODEL, state: "loaded" }] });
  onTestFinished(() => live.close());
  // What a restart of the whole gateway leaves: the registry's row of a connection whose socket died with its object.
  await runInDurableObject(fleetStub(env), (_fleet, state) => {
    state.storage.sql.exec(
      `INSERT INTO nodes (name, conn_id, info_json, status_json, connected_at, disconnected_at)
       SELECT 'gone-gpu', 'gone-conn', info_json, status_json, connected_at, NULL FROM nodes WHERE name = 'still-here'`,
    );
  });
  await hibernate();
  const listed = async () => {
    const { data } = (await (await admin("GET", "/nodes")).json()) as { data: Array<{ name: string; online: boolean }> };
    return data.filter((node) => node.name === "gone-gpu" || node.name === "still-here").map((node) => [node.name, node.online]).sort();
  };
  await eventually(async () => JSON.stringify(await listed()) === JSON.stringify([["gone-gpu", false], ["still-here", true]]));
  expect(await listed()).toEqual([
    ["gone-gpu", false],
    ["still-here", true],
  ]);
});
