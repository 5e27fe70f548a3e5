import { describe, expect, onTestFinished, test } from "vitest";
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import { CreatedKey, CreatedNodeToken, KeyRecord, ListOf, NodeSummary, UsageRow } from "../../shared/gateway-admin/admin-schemas.ts";
import { CLOSE_CODES, HEARTBEAT_PING } from "../../shared/protocol/frames.ts";
import { sha256Hex } from "../fleet/access/credentials.ts";
import { DEFAULT_FLEET } from "../env.ts";
import { ADMIN_TOKEN, api, chatBody, dialGateway, eventually, FakeAgent, result } from "./fake-agent.ts";

/** The security suite of issue 4, against the real Worker and Fleet in workerd. */

const fetchGateway = (path: string, init: RequestInit = {}) => exports.default.fetch(`http://gateway.test${path}`, init);

const admin = async (method: string, path: string, body?: unknown) =>
  fetchGateway(`/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });

async function createKey(request: Record<string, unknown>): Promise<CreatedKey> {
  const response = await admin("POST", "/keys", request);
  expect(response.status).toBe(201);
  return CreatedKey.parse(await response.json());
}

const withKey = (key: string, path: string, body?: unknown) =>
  fetchGateway(path, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${key}` },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });

async function expectError(response: Response, status: number, code?: string) {
  expect(response.status).toBe(status);
  const body = ErrorBody.parse(await response.json());
  if (code !== undefined) expect(body.error.code).toBe(code);
  return body.error;
}

/**
 * A node holding tiny-chat, tiny-embed and big-chat. Connected inside each test: workerd ties a
 * socket's I/O to the test that opened it, so a node shared across tests would stop pinging.
 */
async function connectNode(): Promise<FakeAgent> {
  const node = await FakeAgent.connect({
    name: "gpu-1",
    models: [{ id: "tiny-chat", state: "loaded" }, { id: "tiny-embed", type: "embeddings" }, { id: "big-chat" }],
  });
  onTestFinished(() => node.close());
  let counter = 0;
  node.autoAnswer((frame) => {
    counter += 1;
    if (frame.operation.op === "load") {
      node.sendFrame({ type: "result", id: frame.id, result: { type: "llm", instance_id: frame.operation.body.model, load_time_seconds: 0.1, status: "loaded" } });
      return;
    }
    if (frame.operation.op === "unload") {
      node.sendFrame({ type: "result", id: frame.id, result: { instance_id: frame.operation.body.instance_id ?? "" } });
      return;
    }
    if (frame.operation.op === "embeddings") {
      node.sendFrame({ type: "result", id: frame.id, result: { model: "tiny-embed", embeddings: [[0.1, 0.2]], usage: { prompt_tokens: 4, total_tokens: 4 } } });
      return;
    }
    // Different usage per request, so a sum cannot come out right by accident.
    const prompt = 3 + (counter % 5);
    const completion = 1 + (counter % 3);
    node.complete(frame.id, "hello", { usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } });
  });
  return node;
}

describe("keys", () => {
  test("the secret is shown once at creation; listings show only its prefix", async () => {
    const created = await createKey({ name: "alice", models: ["tiny-*"], rpm: 60 });
    expect(created.key).toMatch(/^lmg_[A-Za-z0-9_-]{43}$/);
    expect(created.key.startsWith(created.record.prefix)).toBe(true);
    const listing = await (await admin("GET", "/keys")).text();
    expect(listing).not.toContain(created.key);
    const keys = ListOf(KeyRecord).parse(JSON.parse(listing)).data;
    expect(keys.find((key) => key.id === created.record.id)).toMatchObject({ name: "alice", models: ["tiny-*"], rpm: 60 });
  });

  test("storage holds only SHA-256 hashes: no secret anywhere in the keys table", async () => {
    const created = await createKey({ name: "hash-check" });
    const rows = await runInDurableObject(env.FLEET.getByName(DEFAULT_FLEET), (_instance, state) =>
      state.storage.sql.exec("SELECT * FROM api_keys").toArray(),
    );
    const dump = JSON.stringify(rows);
    expect(dump).not.toContain(created.key);
    expect(dump).toContain(await sha256Hex(created.key));
  });

  test("a key limited to tiny-* neither lists nor uses other models (403)", async () => {
    await connectNode();
    const { key } = await createKey({ name: "scoped", models: ["tiny-*"] });
    for (const path of ["/v1/models", "/api/v0/models"]) {
      const ids = ((await (await withKey(key, path)).json()) as { data: Array<{ id: string }> }).data.map((model) => model.id);
      expect(ids.sort()).toEqual(["tiny-chat", "tiny-embed"]);
    }
    expect((await withKey(key, "/v1/chat/completions", chatBody("tiny-chat"))).status).toBe(200);
    await expectError(await withKey(key, "/v1/chat/completions", chatBody("big-chat")), 403, "model_not_allowed");
    await expectError(await withKey(key, "/v1/chat/completions", chatBody("big-chat", { stream: true })), 403, "model_not_allowed");
    await expectError(await withKey(key, "/v1/embeddings", { model: "big-chat", input: "x" }), 403, "model_not_allowed");
  });

  test("a 404 lists only the models the key may use", async () => {
    await connectNode();
    const { key } = await createKey({ name: "scoped-404", models: ["tiny-*"] });
    const error = await expectError(await withKey(key, "/v1/chat/completions", chatBody("tiny-chat-nope")), 404, "model_not_found");
    expect(error.message).toContain("tiny-chat");
    expect(error.message).not.toContain("big-chat");
    // The deployment's own key sees them all.
    expect((await expectError(await api("/v1/chat/completions", chatBody("tiny-chat-nope")), 404)).message).toContain("big-chat");
  });

  test("revoking a key refuses its very next request", async () => {
    const { key, record } = await createKey({ name: "to-revoke" });
    expect((await withKey(key, "/v1/models")).status).toBe(200);
    expect((await admin("DELETE", `/keys/${record.id}`)).status).toBe(200);
    const error = await expectError(await withKey(key, "/v1/models"), 401, "invalid_api_key");
    expect(error.message).toMatch(/revoked/);
  });

  test("an expired key is refused, and a scope change holds from the next request", async () => {
    await connectNode();
    const { key, record } = await createKey({ name: "expiring", expires_at: new Date(Date.now() + 60_000).toISOString() });
    expect((await withKey(key, "/v1/chat/completions", chatBody("big-chat"))).status).toBe(200);
    await admin("PATCH", `/keys/${record.id}`, { models: ["tiny-*"] });
    await expectError(await withKey(key, "/v1/chat/completions", chatBody("big-chat")), 403);
    await admin("PATCH", `/keys/${record.id}`, { expires_at: new Date(Date.now() - 1_000).toISOString() });
    expect((await expectError(await withKey(key, "/v1/models"), 401, "invalid_api_key")).message).toMatch(/expired/);
  });

  test("over its requests per minute a key gets 429 with Retry-After", async () => {
    await connectNode();
    const { key } = await createKey({ name: "slow", rpm: 2 });
    expect((await withKey(key, "/v1/chat/completions", chatBody("tiny-chat"))).status).toBe(200);
    expect((await withKey(key, "/v1/chat/completions", chatBody("tiny-chat"))).status).toBe(200);
    const response = await withKey(key, "/v1/chat/completions", chatBody("tiny-chat"));
    expect(Number(response.headers.get("retry-after"))).toBeGreaterThan(0);
    await expectError(response, 429, "rate_limit_exceeded");
  });

  test("over its tokens per day a key gets 429 with Retry-After", async () => {
    await connectNode();
    const { key } = await createKey({ name: "budget", tokens_per_day: 3 });
    expect((await withKey(key, "/v1/chat/completions", chatBody("tiny-chat"))).status).toBe(200);
    const response = await withKey(key, "/v1/chat/completions", chatBody("tiny-chat"));
    expect(Number(response.headers.get("retry-after"))).toBeGreaterThan(0);
    await expectError(response, 429, "tokens_per_day_exceeded");
  });

  test("tokens per day hold while generating: max_tokens is capped to what is left, parallel requests share it", async () => {
    const node = await FakeAgent.connect({ name: "gpu-greedy", models: [{ id: "tiny-chat", state: "loaded" }] });
    onTestFinished(() => node.close());
    const asked: number[] = [];
    // A node that spends every token it is allowed.
    node.autoAnswer((frame) => {
      const body = frame.operation.body as { max_tokens?: number };
      asked.push(body.max_tokens ?? Number.NaN);
      node.complete(frame.id, "x", { usage: { prompt_tokens: 0, completion_tokens: body.max_tokens ?? 5_000, total_tokens: body.max_tokens ?? 5_000 } });
    });

    const { key: small, record: smallRecord } = await createKey({ name: "budget-50", tokens_per_day: 50 });
    expect((await withKey(small, "/v1/chat/completions", chatBody("tiny-chat", { max_tokens: 600 }))).status).toBe(200);
    expect(asked).toEqual([50]);
    await expectError(await withKey(small, "/v1/chat/completions", chatBody("tiny-chat")), 429, "tokens_per_day_exceeded");

    asked.length = 0;
    const { key, record } = await createKey({ name: "budget-100", tokens_per_day: 100 });
    const statuses = await Promise.all(
      Array.from({ length: 6 }, () => withKey(key, "/v1/chat/completions", chatBody("tiny-chat", { max_tokens: 30 })).then((response) => response.status)),
    );
    expect(statuses.filter((status) => status === 429).length).toBeGreaterThan(0);
    expect(asked.reduce((sum, tokens) => sum + tokens, 0)).toBe(100);
    for (const id of [smallRecord.id, record.id]) {
      const rows = ListOf(UsageRow).parse(await (await admin("GET", `/usage?key=${id}`)).json()).data;
      expect(rows.reduce((sum, row) => sum + row.completion_tokens, 0)).toBe(id === record.id ? 100 : 50);
    }
  });

  test("tokens per day hold for every one of n choices: max_tokens is capped to an even share of what is left", async () => {
    const node = await FakeAgent.connect({ name: "gpu-choices", models: [{ id: "tiny-chat", state: "loaded" }], generationFeatures: ["choices"] });
    onTestFinished(() => node.close());
    const asked: number[] = [];
    // Each of the n choices spends every token it is allowed.
    node.autoAnswer((frame) => {
      const body = frame.operation.body as { max_tokens?: number; n?: number };
      asked.push(body.max_tokens ?? Number.NaN);
      const spent = (body.max_tokens ?? 5_000) * (body.n ?? 1);
      node.complete(frame.id, "x", { usage: { prompt_tokens: 0, completion_tokens: spent, total_tokens: spent } });
    });

    const { key, record } = await createKey({ name: "budget-choices", tokens_per_day: 100 });
    expect((await withKey(key, "/v1/chat/completions", chatBody("tiny-chat", { max_tokens: 80, n: 2 }))).status).toBe(200);
    expect(asked).toEqual([50]);
    const rows = ListOf(UsageRow).parse(await (await admin("GET", `/usage?key=${record.id}`)).json()).data;
    expect(rows.reduce((sum, row) => sum + row.completion_tokens, 0)).toBe(100);
    await expectError(await withKey(key, "/v1/chat/completions", chatBody("tiny-chat")), 429, "tokens_per_day_exceeded");
  });

  // The right one still gets through (gateway/test/hardening-round-two.test.ts).
  test("past 10 wrong admin or metrics tokens a minute, an address gets 429 for the next wrong one; others do not", async () => {
    for (const [path, address] of [["/admin/keys", "203.0.113.7"], ["/metrics", "203.0.113.8"]] as const) {
      const attempt = (token: string, from: string = address) =>
        fetchGateway(path, { headers: { authorization: `Bearer ${token}`, "cf-connecting-ip": from } });
      for (let index = 0; index < 10; index += 1) expect((await attempt(`guess-${index}`)).status).toBe(401);
      const blocked = await attempt("guess-10");
      expect(Number(blocked.headers.get("retry-after"))).toBeGreaterThan(0);
      await expectError(blocked, 429, "too_many_attempts");
      expect((await attempt(ADMIN_TOKEN, "198.51.100.1")).status).toBe(200);
    }
  });

  test("listing models counts against requests per minute", async () => {
    const { key } = await createKey({ name: "lister", rpm: 3 });
    expect((await withKey(key, "/v1/models")).status).toBe(200);
    expect((await withKey(key, "/api/v0/models")).status).toBe(200);
    expect((await withKey(key, "/api/v1/models")).status).toBe(200);
    await expectError(await withKey(key, "/api/v1/models"), 429, "rate_limit_exceeded");
  });

  test("the admin API refuses API keys and wrong tokens", async () => {
    const { key } = await createKey({ name: "not-admin" });
    const node = CreatedNodeToken.parse(await (await admin("POST", "/node-tokens", { node: "not-admin-node" })).json());
    // The admin token with its last character changed, cut short, and with one more: none is the token.
    const lastChanged = `${ADMIN_TOKEN.slice(0, -1)}${ADMIN_TOKEN.endsWith("x") ? "y" : "x"}`;
    for (const wrong of [key, node.token, lastChanged, ADMIN_TOKEN.slice(0, -1), `${ADMIN_TOKEN}x`, "not-the-admin-token"]) {
      await expectError(await fetchGateway("/admin/keys", { headers: { authorization: `Bearer ${wrong}` } }), 401, "invalid_token");
    }
    // Only in the Bearer scheme.
    expect((await fetchGateway("/admin/keys", { headers: { authorization: ADMIN_TOKEN } })).status).toBe(401);
    expect((await fetchGateway("/admin/keys")).status).toBe(401);
    expect((await fetchGateway("/admin/keys", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status).toBe(200);
  });
});

describe("node tokens", () => {
  test("a node joins with its own token, which is no API key; an API key cannot join", async () => {
    const created = CreatedNodeToken.parse(await (await admin("POST", "/node-tokens", { node: "gpu-2" })).json());
    expect(created.token).toMatch(/^lmgn_/);
    await expectError(await withKey(created.token, "/v1/models"), 401, "invalid_api_key");
    const { key } = await createKey({ name: "sneaky" });
    expect((await dialGateway(key)).status).toBe(401);
    expect((await dialGateway("lmgn_made-up")).status).toBe(401);

    const node = await FakeAgent.connect({ name: "gpu-2", models: [{ id: "tiny-chat" }], token: created.token });
    expect((await admin("DELETE", `/node-tokens/${created.record.id}`)).status).toBe(200);
    // Revocation closes the socket at once, and the token no longer connects.
    expect((await node.closed).code).toBe(4004);
    expect((await dialGateway(created.token)).status).toBe(401);
    await expect(FakeAgent.connect({ name: "gpu-2", models: [], token: created.token })).rejects.toThrow(/401/);
  });

  test("a token made for one node cannot say hello as another: the impostor is refused, the real node untouched", async () => {
    const real = await FakeAgent.connect({ name: "node-a", models: [{ id: "tiny-chat", state: "loaded" }] });
    onTestFinished(() => real.close());
    const { token } = CreatedNodeToken.parse(await (await admin("POST", "/node-tokens", { node: "evil-pc" })).json());
    const impostor = FakeAgent.connect({ name: "node-a", models: [{ id: "tiny-chat", state: "loaded" }], token });
    await expect(impostor).rejects.toMatchObject({ code: CLOSE_CODES.nameNotAllowed, message: expect.stringContaining('made for node "evil-pc"') });

    // node-a still serves: the next request, prompt included, goes to it.
    const response = api("/v1/chat/completions", chatBody("tiny-chat"));
    const { id } = await real.nextRequest();
    real.complete(id, "from the real node-a");
    expect(await (await response).text()).toContain("from the real node-a");
    const listed = ListOf(NodeSummary).parse(await (await admin("GET", "/nodes")).json()).data.filter((node) => node.name === "node-a");
    expect(listed.map((node) => node.online)).toEqual([true]);
    // The token still serves the node it was made for.
    (await FakeAgent.connect({ name: "evil-pc", models: [], token })).close();
  });

  test("a node token holds at most 4 sockets; the next upgrade gets 429", async () => {
    const { token } = CreatedNodeToken.parse(await (await admin("POST", "/node-tokens", { node: "many" })).json());
    const sockets: WebSocket[] = [];
    onTestFinished(() => sockets.forEach((ws) => ws.close()));
    for (let index = 0; index < 4; index += 1) {
      const response = await dialGateway(token);
      expect(response.status).toBe(101);
      response.webSocket!.accept();
      sockets.push(response.webSocket!);
    }
    await expectError(await dialGateway(token), 429, "too_many_connections");
  });

  test("made-up names leave at most 100 offline nodes listed", async () => {
    for (let index = 0; index < 105; index += 1) {
      (await FakeAgent.connect({ name: `churn-${index}`, models: [] })).close();
    }
    await eventually(async () => {
      const nodes = ListOf(NodeSummary).parse(await (await admin("GET", "/nodes")).json()).data;
      const offline = nodes.filter((node) => !node.online);
      return offline.length === 100 && offline.some((node) => node.name === "churn-104") && !offline.some((node) => node.name === "churn-0");
    });
  });

  test("a node name with terminal escapes is refused at hello", async () => {
    await expect(FakeAgent.connect({ name: "esc\u001b[2J\u001b]0;PWNED\u0007", models: [] })).rejects.toMatchObject({ code: CLOSE_CODES.badFrame });
  });
});

describe("a generation cut by an unload", () => {
  const unloaded = () =>
    result({
      usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 },
      stats: { tokens_per_second: 100, time_to_first_token: 0.01, generation_time: 0.1, stop_reason: "modelUnloaded" },
    });

  test("ends as a model_unloaded error, never with finish_reason stop, and counts as an error with its tokens", async () => {
    const node = await FakeAgent.connect({ name: "gpu-cut", models: [{ id: "tiny-chat", state: "loaded" }] });
    onTestFinished(() => node.close());
    const { key, record } = await createKey({ name: "cut-victim" });

    const streamed = withKey(key, "/v1/chat/completions", chatBody("tiny-chat", { stream: true }));
    const first = await node.nextRequest();
    node.complete(first.id, "half an ans", unloaded());
    const text = await (await streamed).text();
    expect(text).toContain('"code":"model_unloaded"');
    expect(text).not.toContain('"finish_reason":"stop"');
    expect(text).not.toContain("[DONE]");

    const whole = withKey(key, "/v1/chat/completions", chatBody("tiny-chat"));
    const second = await node.nextRequest();
    node.complete(second.id, "half an ans", unloaded());
    await expectError(await whole, 503, "model_unloaded");

    await eventually(async () => {
      const rows = ListOf(UsageRow).parse(await (await admin("GET", `/usage?key=${record.id}`)).json()).data;
      return rows.length === 1 && rows[0]!.errors === 2 && rows[0]!.completion_tokens === 14;
    });
  });
});

describe("garbage in", () => {
  test("500 malformed, oversized and garbage requests: no 5xx, every answer OpenAI-shaped", async () => {
    const node = await connectNode();
    // Loading and unloading take the "load" right since model management came: the fuzz key has it, so well-formed ones still get through.
    const { key } = await createKey({ name: "fuzz", can: ["load"] });
    let seed = 42;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    const pick = <T>(items: T[]) => items[Math.floor(random() * items.length)] as T;
    const deep = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
    const bodies: Array<() => BodyInit> = [
      () => crypto.getRandomValues(new Uint8Array(1 + Math.floor(random() * 2048))),
      () => JSON.stringify({ model: 42, messages: "nope" }),
      () => JSON.stringify({ model: "tiny-chat", messages: [{ role: "wizard", content: 1 }] }),
      () => JSON.stringify({ model: "tiny-chat", messages: [{ role: "user", content: "x" }], temperature: "hot", max_tokens: -7 }),
      () => JSON.stringify({ model: "x".repeat(100_000), messages: [{ role: "user", content: "hi" }] }),
      () => JSON.stringify({ model: "tiny-chat", messages: deep(5_000) }),
      () => deep(20_000),
      () => "x".repeat(2 * 1024 * 1024),
      () => "{\"model\": ",
      () => JSON.stringify({ model: "tiny-embed", input: [1, 2, 3] }),
      () => JSON.stringify(null),
    ];
    const paths = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/api/v0/chat/completions", "/api/v1/models/load", "/api/v1/models/unload"];
    const statuses = new Map<number, number>();
    const accepted = new Set<string>();
    for (let index = 0; index < 500; index += 1) {
      const path = pick(paths);
      const sent = pick(bodies)();
      const response = await fetchGateway(path, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: sent });
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      // This loop never yields to the fake node's heartbeat timer; ping on its behalf so it stays routable.
      node.ws.send(HEARTBEAT_PING);
      expect(response.status).toBeLessThan(500);
      if (typeof sent === "string" && sent.length > 1024 * 1024) expect(response.status).toBe(413);
      const body: unknown = await response.json();
      if (response.status >= 400) ErrorBody.parse(body);
      else accepted.add(path);
    }
    // The only garbage that is not refused is a well-formed load or unload of a model the node holds.
    expect([...accepted].every((path) => path.startsWith("/api/v1/models/"))).toBe(true);
    console.log(`garbage suite: 500 requests, status counts ${JSON.stringify(Object.fromEntries(statuses))}`);
  });
});

describe("a rogue node", () => {
  test("an error frame's status reaches the client only when it is 400-599; anything else is a 502", async () => {
    const node = await FakeAgent.connect({ name: "gpu-rogue", models: [{ id: "tiny-chat", state: "loaded" }] });
    onTestFinished(() => node.close());
    for (const [sent, expected] of [[200, 502], [0, 502], [101, 502], [204, 502], [304, 502], [600, 502], [404, 404], [599, 599]] as const) {
      const response = api("/v1/chat/completions", chatBody("tiny-chat"));
      const { id } = await node.nextRequest();
      node.sendFrame({ type: "error", id, status: sent, body: { error: { message: "made up", type: "x", param: null, code: "made_up" } } });
      expect((await response).status, `node sent ${sent}`).toBe(expected);
      ErrorBody.parse(await (await response).json());
    }
  });

  test("usage a node reports is bounded by what was asked: completion by max_tokens, prompt by the request's size", async () => {
    const node = await FakeAgent.connect({ name: "gpu-liar", models: [{ id: "tiny-chat", state: "loaded" }] });
    onTestFinished(() => node.close());
    const { key, record } = await createKey({ name: "overcharged", tokens_per_day: 1_000_000 });
    const response = withKey(key, "/v1/chat/completions", chatBody("tiny-chat", { max_tokens: 4 }));
    const { id, operation } = await node.nextRequest();
    node.complete(id, "hi", { usage: { prompt_tokens: 9e12, completion_tokens: 9e12, total_tokens: 18e12 } });
    const { usage } = (await (await response).json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
    expect(usage.completion_tokens).toBe(4);
    // docs/protocol.md: one token per byte of the request the node was sent, plus 1024 for the chat template.
    expect(usage.prompt_tokens).toBe(new TextEncoder().encode(JSON.stringify(operation.body)).length + 1024);
    const rows = ListOf(UsageRow).parse(await (await admin("GET", `/usage?key=${record.id}`)).json()).data;
    expect(rows.map(({ prompt_tokens, completion_tokens }) => ({ prompt_tokens, completion_tokens }))).toEqual([{ prompt_tokens: usage.prompt_tokens, completion_tokens: 4 }]);
    // The key's budget is not spent by the lie.
    node.autoAnswer((frame) => node.complete(frame.id, "ok"));
    expect((await withKey(key, "/v1/chat/completions", chatBody("tiny-chat"))).status).toBe(200);
  });

  test("a prompt count a node reports early (message_start, count_tokens) is bounded the same way", async () => {
    const node = await FakeAgent.connect({ name: "gpu-early-liar", models: [{ id: "tiny-chat", state: "loaded" }], countsTokens: true });
    onTestFinished(() => node.close());
    const { key } = await createKey({ name: "early-lies" });
    const messages = { model: "tiny-chat", max_tokens: 4, messages: [{ role: "user", content: "Hi" }] };

    const counting = withKey(key, "/v1/messages/count_tokens", messages);
    node.sendFrame({ type: "result", id: (await node.nextRequest()).id, result: { prompt_tokens: 9e12 } });
    expect(((await (await counting).json()) as { input_tokens: number }).input_tokens).toBeLessThan(2_000);

    const streaming = withKey(key, "/v1/messages", { ...messages, stream: true });
    const { id } = await node.nextRequest();
    node.sendFrame({ type: "events", id, events: [{ type: "start", model: "tiny-chat", prompt_tokens: 9e12 }, { type: "delta", text: "hi" }] });
    node.sendFrame({ type: "events", id, events: [{ type: "done", result: result() }] });
    const start = /event: message_start\ndata: (.*)\n/.exec(await (await streaming).text())?.[1];
    expect((JSON.parse(start ?? "{}") as { message: { usage: { input_tokens: number } } }).message.usage.input_tokens).toBeLessThan(2_000);
  });
});

describe("deep JSON", () => {
  test("nesting thousands deep inside a schema or tool parameters is a 400 in the API's shape, not a 500", async () => {
    await connectNode();
    const { key } = await createKey({ name: "deep" });
    const deep = (depth: number): unknown => JSON.parse("[".repeat(depth) + "]".repeat(depth));
    const bodies = [
      chatBody("tiny-chat", { response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", x: deep(3_350) } } } }),
      chatBody("tiny-chat", { tools: [{ type: "function", function: { name: "f", parameters: { type: "object", x: deep(3_350) } } }] }),
    ];
    for (const body of bodies) {
      const error = await expectError(await withKey(key, "/v1/chat/completions", body), 400, "invalid_request");
      expect(error.message).toMatch(/nest/);
    }
    // Depth a real schema uses still passes.
    const nested = { type: "object", properties: { a: { type: "array", items: { type: "object", properties: { b: { type: "string" } } } } } };
    expect((await withKey(key, "/v1/chat/completions", chatBody("tiny-chat", { response_format: { type: "json_schema", json_schema: { name: "x", schema: nested } } }))).status).toBe(200);
  });
});

describe("accounting", () => {
  const usageRows = async (keyId: string) => ListOf(UsageRow).parse(await (await admin("GET", `/usage?key=${keyId}`)).json()).data;

  test("usage equals the sum of the responses' usage over streaming, non-streaming and failed requests", async () => {
    await connectNode();
    const { key, record } = await createKey({ name: "counted" });
    let prompt = 0;
    let completion = 0;
    for (let index = 0; index < 6; index += 1) {
      const stream = index % 2 === 1;
      const response = await withKey(key, "/v1/chat/completions", chatBody("tiny-chat", stream ? { stream: true, stream_options: { include_usage: true } } : {}));
      expect(response.status).toBe(200);
      const text = await response.text();
      const usage = stream
        ? (JSON.parse(text.split("\n\n").filter((block) => block.includes('"usage"')).at(-1)!.slice("data: ".length)) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage
        : (JSON.parse(text) as { usage: { prompt_tokens: number; completion_tokens: number } }).usage;
      prompt += usage.prompt_tokens;
      completion += usage.completion_tokens;
    }
    const embeddings = (await (await withKey(key, "/v1/embeddings", { model: "tiny-embed", input: "x" })).json()) as { usage: { prompt_tokens: number } };
    prompt += embeddings.usage.prompt_tokens;
    // A model nobody holds fails in the fleet: counted as a request and an error.
    expect((await withKey(key, "/v1/chat/completions", chatBody("tiny-missing"))).status).toBe(404);

    await eventually(async () => {
      const rows = await usageRows(record.id);
      const total = (field: "requests" | "prompt_tokens" | "completion_tokens" | "errors") => rows.reduce((sum, row) => sum + row[field], 0);
      return total("requests") === 8 && total("prompt_tokens") === prompt && total("completion_tokens") === completion && total("errors") === 1;
    });
    const keys = ListOf(KeyRecord).parse(await (await admin("GET", "/keys")).json()).data;
    expect(keys.find((key) => key.id === record.id)?.last_used_at).not.toBeNull();
  });

  test("requests for models nobody holds are one 'unknown' row, whatever names they make up", async () => {
    await connectNode();
    const { key, record } = await createKey({ name: "name-spammer" });
    for (let index = 0; index < 3; index += 1) {
      await expectError(await withKey(key, "/v1/chat/completions", chatBody(`${index}${"x".repeat(200_000)}`)), 404, "model_not_found");
    }
    const rows = await usageRows(record.id);
    expect(rows.map(({ model, requests, errors }) => ({ model, requests, errors }))).toEqual([{ model: "unknown", requests: 3, errors: 3 }]);
    const stored = await runInDurableObject(env.FLEET.getByName(DEFAULT_FLEET), (_instance, state) =>
      state.storage.sql.exec<{ bytes: number }>("SELECT SUM(LENGTH(model)) AS bytes FROM usage").one(),
    );
    expect(stored.bytes).toBeLessThan(10_000);
  });

  /** Starts a stream for `key`, reads its first text, then goes away; returns the node and the request id. */
  async function cancelMidStream(key: string, nodeName: string): Promise<{ node: FakeAgent; id: string }> {
    const node = await FakeAgent.connect({ name: nodeName, models: [{ id: "tiny-chat", state: "loaded" }] });
    onTestFinished(() => node.close());
    const response = withKey(key, "/v1/chat/completions", chatBody("tiny-chat", { stream: true }));
    const { id } = await node.nextRequest();
    node.sendFrame({ type: "events", id, events: [{ type: "start", model: "tiny-chat" }, { type: "delta", text: "x" }] });
    const reader = (await response).body!.getReader();
    await reader.read();
    await reader.cancel();
    await node.next((frame) => frame.type === "cancel" && frame.id === id);
    return { node, id };
  }

  const usageOf = async (keyId: string) => {
    const rows = await usageRows(keyId);
    return rows.map(({ requests, prompt_tokens, completion_tokens, errors }) => ({ requests, prompt_tokens, completion_tokens, errors }));
  };

  test("a stream its client cancels counts the tokens its node spent, so cancelling cannot dodge a token budget", async () => {
    const { key, record } = await createKey({ name: "canceller", tokens_per_day: 100 });
    const { node, id } = await cancelMidStream(key, "gpu-cancel");
    // What an agent does after a cancel: its engine stops and reports what it spent.
    const usage = { prompt_tokens: 20, completion_tokens: 150, total_tokens: 170 };
    const stats = { tokens_per_second: 900, time_to_first_token: 0.01, generation_time: 0.2, stop_reason: "userStopped" as const };
    node.sendFrame({ type: "events", id, events: [{ type: "done", result: result({ usage, stats }) }] });
    // 150 is more than the key had left: the request's max_tokens was capped to 100, and so is what counts.
    await eventually(async () => JSON.stringify(await usageOf(record.id)) === JSON.stringify([{ requests: 1, prompt_tokens: 20, completion_tokens: 100, errors: 0 }]));
    await expectError(await withKey(key, "/v1/chat/completions", chatBody("tiny-chat")), 429, "tokens_per_day_exceeded");
  });

  test("a cancelled stream whose node goes before reporting is counted once, without tokens", async () => {
    const { key, record } = await createKey({ name: "canceller-2" });
    const { node } = await cancelMidStream(key, "gpu-cancel-2");
    node.close();
    await eventually(async () => JSON.stringify(await usageOf(record.id)) === JSON.stringify([{ requests: 1, prompt_tokens: 0, completion_tokens: 0, errors: 0 }]));
  });
});
