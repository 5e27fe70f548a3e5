import { describe, expect, test } from "vitest";
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { CreatedKey, ListOf, UsageRow } from "../../shared/gateway-admin/admin-schemas.ts";
import { KeyView } from "../../shared/gateway-admin/key-view-schemas.ts";
import { RequestPage, type RequestRow } from "../../shared/gateway-admin/request-log-schemas.ts";
import { TRACEPARENT } from "../../shared/protocol/trace-context.ts";
import { RequestLog, type RequestRecord } from "../fleet/state/request-log.ts";
import { ADMIN_TOKEN, chatBody, eventually, FakeAgent, fakeAgentsPerTest, result } from "./fake-agent.ts";

/**
 * The request log (`/admin/requests`) and a key's own view (`GET /v1/key`), against the real Worker
 * and Fleet in workerd, with fake agents on real WebSockets.
 */

const fetchGateway = (path: string, init: RequestInit = {}) => exports.default.fetch(`http://gateway.test${path}`, init);
const admin = (method: string, path: string, body?: unknown) =>
  fetchGateway(`/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
const withKey = (key: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  fetchGateway(path, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${key}`, ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });

async function createKey(request: Record<string, unknown>): Promise<CreatedKey> {
  const response = await admin("POST", "/keys", request);
  expect(response.status).toBe(201);
  return CreatedKey.parse(await response.json());
}

async function requests(query: string): Promise<RequestPage> {
  const response = await admin("GET", `/requests?${query}`);
  expect(response.status).toBe(200);
  return RequestPage.parse(await response.json());
}
const rowsOf = async (keyId: string) => (await requests(`key=${keyId}&limit=500`)).data;
const usageOf = async (keyId: string) => ListOf(UsageRow).parse(await (await admin("GET", `/usage?key=${keyId}`)).json()).data;

const agent = fakeAgentsPerTest();

/** Answers every generation with prompt/completion tokens that differ per request, embeddings with 4 prompt tokens. */
function answerAll(node: FakeAgent): void {
  let counter = 0;
  node.autoAnswer((frame) => {
    counter += 1;
    if (frame.operation.op === "embeddings") {
      node.sendFrame({ type: "result", id: frame.id, result: { model: frame.operation.body.model, embeddings: [[0.1]], usage: { prompt_tokens: 4, total_tokens: 4 } } });
      return;
    }
    const prompt = 3 + counter;
    const completion = 1 + (counter % 3);
    node.complete(frame.id, "hello", {
      usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, prompt_tokens_details: { cached_tokens: 2 } },
    });
  });
}

describe("the request log", () => {
  test("one row per request in every API family, with the same tokens as usage, the route and the node", async () => {
    const node = await agent({ name: "log-a", models: [{ id: "log-chat", state: "loaded" }, { id: "log-embed", state: "loaded", type: "embeddings" }] });
    answerAll(node);
    const { key, record } = await createKey({ name: "families" });
    const calls: Array<[string, unknown]> = [
      ["/v1/chat/completions", chatBody("log-chat")],
      ["/v1/completions", { model: "log-chat", prompt: "hi" }],
      ["/v1/messages", { model: "log-chat", max_tokens: 5, messages: [{ role: "user", content: "hi" }] }],
      ["/v1/responses", { model: "log-chat", input: "hi", store: false }],
      ["/api/v1/chat", { model: "log-chat", input: "hi", store: false }],
      ["/api/v0/chat/completions", chatBody("log-chat")],
      ["/v1/embeddings", { model: "log-embed", input: "hi" }],
    ];
    for (const [path, body] of calls) expect((await withKey(key, path, body)).status, path).toBe(200);

    const rows = await rowsOf(record.id);
    expect(rows.map((row) => `${row.family} ${row.route}`).toReversed()).toEqual([
      "openai POST /v1/chat/completions",
      "openai POST /v1/completions",
      "anthropic POST /v1/messages",
      "openai POST /v1/responses",
      "lmstudio POST /api/v1/chat",
      "lmstudio POST /api/v0/chat/completions",
      "openai POST /v1/embeddings",
    ]);
    for (const row of rows) {
      expect(row).toMatchObject({ key_id: record.id, key_name: "families", node: "log-a", status: 200, error_code: null, retries: 0 });
      expect(row.traceparent).toMatch(TRACEPARENT);
    }
    expect(rows.filter((row) => row.op === "chat").every((row) => row.cached_tokens === 2)).toBe(true);
    // The same tokens as the usage ledger, model by model.
    const usage = await usageOf(record.id);
    for (const model of ["log-chat", "log-embed"]) {
      const logged = rows.filter((row) => row.model === model);
      const counted = usage.find((row) => row.model === model);
      expect(counted).toMatchObject({
        requests: logged.length,
        prompt_tokens: logged.reduce((sum, row) => sum + row.prompt_tokens, 0),
        completion_tokens: logged.reduce((sum, row) => sum + row.completion_tokens, 0),
      });
    }
  });

  test("refused, failed, cancelled and failed-over requests each leave one row saying how they ended", async () => {
    const flaky = await agent({
      name: "log-flaky",
      models: [{ id: "log-fo", state: "loaded" }, { id: "log-err", state: "loaded" }, { id: "log-cancel", state: "loaded" }],
    });
    const { key, record } = await createKey({ name: "endings", models: ["log-*"], rpm: 4 });

    // Refused before routing: a model outside the key's scope.
    expect((await withKey(key, "/v1/chat/completions", chatBody("other-model"))).status).toBe(403);
    // Failed on its node.
    const failed = withKey(key, "/v1/chat/completions", chatBody("log-err"));
    const failedFrame = await flaky.nextRequest();
    flaky.sendFrame({ type: "error", id: failedFrame.id, status: 500, body: { error: { message: "engine broke", type: "server_error", param: null, code: "engine_error" } } });
    expect((await failed).status).toBe(500);
    // Failed over: the first node says 503, the other serves it.
    // The flaky node alone holds the model when the request arrives; the steady one joins before it fails.
    const moved = withKey(key, "/v1/chat/completions", chatBody("log-fo"));
    let first = await flaky.nextRequest();
    const steady = await agent({ name: "log-steady", models: [{ id: "log-fo", state: "loaded" }, { id: "log-ok", state: "loaded" }] });
    answerAll(steady);
    flaky.sendFrame({ type: "error", id: first.id, status: 503, body: { error: { message: "busy", type: "server_error", param: null, code: "busy" } } });
    expect((await moved).status).toBe(200);
    // Cancelled by its client while streaming.
    const controller = new AbortController();
    const cancelled = fetchGateway("/v1/chat/completions", {
      method: "POST",
      headers: { authorization: `Bearer ${key}` },
      body: JSON.stringify(chatBody("log-cancel", { stream: true })),
      signal: controller.signal,
    });
    first = await flaky.nextRequest();
    flaky.sendFrame({ type: "events", id: first.id, events: [{ type: "start", model: "log-cancel" }, { type: "delta", text: "x" }] });
    const reader = (await cancelled).body?.getReader();
    await reader?.read();
    await reader?.cancel();
    await flaky.next((frame) => frame.type === "cancel");
    const spent = { prompt_tokens: 6, completion_tokens: 1, total_tokens: 7 };
    flaky.sendFrame({ type: "events", id: first.id, events: [{ type: "done", result: result({ usage: spent, stats: { ...result().stats, stop_reason: "userStopped" } }) }] });
    // The key's fourth request this minute is its last: the refusal by scope did not count.
    expect((await withKey(key, "/v1/chat/completions", chatBody("log-ok"))).status).toBe(200);
    expect((await withKey(key, "/v1/chat/completions", chatBody("log-ok"))).status).toBe(429);

    let rows: RequestRow[] = [];
    await eventually(async () => (rows = await rowsOf(record.id)).length === 6);
    const byEnding = rows.toReversed().map((row) => ({ model: row.model, status: row.status, code: row.error_code, node: row.node, retries: row.retries }));
    expect(byEnding).toEqual([
      { model: "other-model", status: 403, code: "model_not_allowed", node: null, retries: 0 },
      { model: "log-err", status: 500, code: "engine_error", node: "log-flaky", retries: 0 },
      { model: "log-fo", status: 200, code: null, node: "log-steady", retries: 1 },
      { model: "log-cancel", status: 499, code: null, node: "log-flaky", retries: 0 },
      { model: "log-ok", status: 200, code: null, node: "log-steady", retries: 0 },
      { model: "log-ok", status: 429, code: "rate_limit_exceeded", node: null, retries: 0 },
    ]);
    // The cancelled one counts what its node spent, as usage does.
    expect(rows.find((row) => row.status === 499)).toMatchObject({ prompt_tokens: 6, completion_tokens: 1 });
    const usage = await usageOf(record.id);
    expect(usage.reduce((sum, row) => sum + row.prompt_tokens, 0)).toBe(rows.reduce((sum, row) => sum + row.prompt_tokens, 0));
  });

  test("an unknown key's refusal is a row without a key; the owner filters by key, model, node, status and time, and pages", async () => {
    const node = await agent({ name: "log-filter", models: [{ id: "log-f1", state: "loaded" }, { id: "log-f2", state: "loaded" }] });
    answerAll(node);
    const since = new Date().toISOString();
    expect((await withKey("lmg_not_a_key", "/v1/chat/completions", chatBody("log-f1"))).status).toBe(401);
    const unknown = (await requests(`since=${since}&status=401`)).data;
    expect(unknown).toHaveLength(1);
    expect(unknown[0]).toMatchObject({ key_id: null, key_name: null, status: 401, error_code: "invalid_api_key", route: "POST /v1/chat/completions" });

    const { key, record } = await createKey({ name: "filters" });
    for (let i = 0; i < 5; i++) expect((await withKey(key, "/v1/chat/completions", chatBody(i % 2 === 0 ? "log-f1" : "log-f2"))).status).toBe(200);
    expect((await requests(`key=${record.id}&model=log-f2`)).data).toHaveLength(2);
    expect((await requests(`key=${record.id}&node=log-filter&status=2xx`)).data).toHaveLength(5);
    expect((await requests(`key=${record.id}&status=4xx`)).data).toHaveLength(0);
    expect((await requests(`key=${record.id}&since=${new Date(Date.now() + 60_000).toISOString()}`)).data).toHaveLength(0);

    // Pages of two, newest first, that together are the whole list once.
    const seen: number[] = [];
    let page = await requests(`key=${record.id}&limit=2`);
    for (let turns = 0; turns < 5; turns++) {
      seen.push(...page.data.map((row) => row.seq));
      if (page.next === null) break;
      page = await requests(`key=${record.id}&limit=2&before=${page.next}`);
    }
    expect(seen).toHaveLength(5);
    expect(seen).toEqual([...seen].sort((a, b) => b - a));
    // `after` is what a follower asks: only rows newer than the last it saw, oldest first.
    const newest = seen[0] ?? 0;
    expect((await requests(`key=${record.id}&after=${newest}`)).data).toHaveLength(0);
    expect((await withKey(key, "/v1/chat/completions", chatBody("log-f1"))).status).toBe(200);
    expect((await requests(`key=${record.id}&after=${seen[1]}`)).data.map((row) => row.seq).slice(0, 1)).toEqual([newest]);

    const bad = await admin("GET", "/requests?status=abc");
    expect(bad.status).toBe(400);
    expect((await admin("GET", "/requests?limit=100000")).status).toBe(400);
    expect((await withKey(key, "/admin/requests")).status).toBe(401);
  });

  test("the client's traceparent reaches the node and the log; without one, the gateway starts a trace", async () => {
    const node = await agent({ name: "log-trace", models: [{ id: "log-t", state: "loaded" }] });
    const { key, record } = await createKey({ name: "tracing" });
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const traced = withKey(key, "/v1/chat/completions", chatBody("log-t"), { traceparent });
    let frame = await node.nextRequest();
    expect(frame.traceparent).toBe(traceparent);
    node.complete(frame.id, "ok");
    expect((await traced).status).toBe(200);

    const untraced = withKey(key, "/v1/chat/completions", chatBody("log-t"), { traceparent: "garbage" });
    frame = await node.nextRequest();
    expect(frame.traceparent).toMatch(TRACEPARENT);
    expect(frame.traceparent).not.toContain("4bf92f3577b34da6a3ce929d0e0e4736");
    node.complete(frame.id, "ok");
    expect((await untraced).status).toBe(200);
    const rows = await rowsOf(record.id);
    expect(rows.map((row) => row.traceparent)).toEqual([frame.traceparent, traceparent]);
  });

  test("retention: the log keeps at most its row count and drops rows past its age", async () => {
    await runInDurableObject(env.FLEET.getByName("request-log-retention"), (_instance, state) => {
      const log = new RequestLog(state.storage.sql, { maxRows: 3, maxAgeMs: 60_000, flushAfterMs: 60_000 });
      const now = Date.now();
      const row = (id: string, at: number): RequestRecord => ({
        id, at: new Date(at).toISOString(), key_id: "k", key_name: "k", family: "openai", route: "POST /v1/chat/completions", op: "chat", model: "m",
        node: "n", status: 200, error_code: null, prompt_tokens: 1, cached_tokens: 0, completion_tokens: 1, queue_ms: 0, ttft_ms: 1, duration_ms: 2,
        tokens_per_second: null, retries: 0, traceparent: null,
      });
      log.record(row("old", now - 120_000));
      for (const id of ["a", "b", "c", "d"]) log.record(row(id, now));
      expect(log.query({ limit: 10 }).data.map((kept) => kept.id)).toEqual(["d", "c", "b"]);
      log.flush(now + 61_000);
      expect(log.query({ limit: 10 }).data).toEqual([]);
    });
  });
});

describe("a key's own view, GET /v1/key", () => {
  test("a key sees exactly its own limits, usage and requests, and nothing of other keys or node tokens", async () => {
    const node = await agent({ name: "view-node", models: [{ id: "view-a", state: "loaded" }, { id: "view-b", state: "loaded" }, { id: "secret-c", state: "loaded" }] });
    answerAll(node);
    const mine = await createKey({ name: "mine-view", models: ["view-*"], rpm: 10, tokens_per_day: 1_000 });
    const theirs = await createKey({ name: "theirs-view" });
    const nodeToken = await (await admin("POST", "/node-tokens", { node: "view-node-2" })).json() as { token: string; record: { id: string; prefix: string } };
    for (const model of ["view-a", "view-b", "view-a"]) expect((await withKey(mine.key, "/v1/chat/completions", chatBody(model))).status).toBe(200);
    expect((await withKey(mine.key, "/v1/chat/completions", chatBody("secret-c"))).status).toBe(403);
    for (let i = 0; i < 2; i++) expect((await withKey(theirs.key, "/v1/chat/completions", chatBody("secret-c"))).status).toBe(200);

    const response = await withKey(mine.key, "/v1/key");
    expect(response.status).toBe(200);
    const text = await response.text();
    const view = KeyView.parse(JSON.parse(text));
    const rows = await rowsOf(mine.record.id);
    const usage = await usageOf(mine.record.id);
    const spent = usage.reduce((sum, row) => sum + row.prompt_tokens + row.completion_tokens, 0);
    expect(view).toMatchObject({ id: mine.record.id, name: "mine-view", prefix: mine.record.prefix, models: ["view-*"], can: [], expires_at: null });
    expect(view.usage).toEqual(usage);
    expect(view.requests).toEqual(rows);
    expect(view.requests).toHaveLength(4);
    // The refusal by scope is checked before the rate counts a request, and reading /v1/key does not count.
    expect(view.limits.requests_per_minute).toMatchObject({ limit: 10, used: 3, remaining: 7 });
    expect(view.limits.tokens_per_day).toMatchObject({ limit: 1_000, used: spent, remaining: 1_000 - spent });
    expect(Date.parse(view.limits.tokens_per_day?.resets_at ?? "")).toBeGreaterThan(Date.now());
    expect(view.available_models.map((model) => model.id)).toEqual(["view-a", "view-b"]);
    expect(view.available_models[0]?.nodes?.map((where) => where.node)).toEqual(["view-node"]);
    // Nothing of the other key, of the node token, or of the admin's secrets.
    for (const leak of [theirs.record.id, "theirs-view", theirs.record.prefix, nodeToken.record.id, nodeToken.record.prefix, nodeToken.token, ADMIN_TOKEN, mine.key]) {
      expect(text, leak).not.toContain(leak);
    }
  });

  test("it needs a valid key, and a revoked key is refused", async () => {
    expect((await fetchGateway("/v1/key")).status).toBe(401);
    expect((await withKey("lmg_nope", "/v1/key")).status).toBe(401);
    const { key, record } = await createKey({ name: "revoked-view" });
    expect((await admin("DELETE", `/keys/${record.id}`)).status).toBe(200);
    expect((await withKey(key, "/v1/key")).status).toBe(401);
  });
});
