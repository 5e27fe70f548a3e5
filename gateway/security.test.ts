import { describe, expect, onTestFinished, test } from "vitest";
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { ErrorBody } from "../shared/errors.ts";
import { CreatedKey, CreatedNodeToken, KeyRecord, ListOf, UsageRow } from "../shared/schemas/admin.ts";
import { HEARTBEAT_PING } from "../shared/protocol.ts";
import { sha256Hex } from "./access/credentials.ts";
import { DEFAULT_FLEET } from "./env.ts";
import { ADMIN_TOKEN, chatBody, dialGateway, eventually, FakeAgent, result } from "./test/fake-agent.ts";

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

  test("the admin API refuses API keys and wrong tokens", async () => {
    const { key } = await createKey({ name: "not-admin" });
    expect((await fetchGateway("/admin/keys", { headers: { authorization: `Bearer ${key}` } })).status).toBe(401);
    expect((await fetchGateway("/admin/keys")).status).toBe(401);
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
      const response = await fetchGateway(path, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: pick(bodies)() });
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      // This loop never yields to the fake node's heartbeat timer; ping on its behalf so it stays routable.
      node.ws.send(HEARTBEAT_PING);
      expect(response.status).toBeLessThan(500);
      const body: unknown = await response.json();
      if (response.status >= 400) ErrorBody.parse(body);
      else accepted.add(path);
    }
    // The only garbage that is not refused is a well-formed load or unload of a model the node holds.
    expect([...accepted].every((path) => path.startsWith("/api/v1/models/"))).toBe(true);
    console.log(`garbage suite: 500 requests, status counts ${JSON.stringify(Object.fromEntries(statuses))}`);
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
    await eventually(async () => JSON.stringify(await usageOf(record.id)) === JSON.stringify([{ requests: 1, prompt_tokens: 20, completion_tokens: 150, errors: 0 }]));
    await expectError(await withKey(key, "/v1/chat/completions", chatBody("tiny-chat")), 429, "tokens_per_day_exceeded");
  });

  test("a cancelled stream whose node goes before reporting is counted once, without tokens", async () => {
    const { key, record } = await createKey({ name: "canceller-2" });
    const { node } = await cancelMidStream(key, "gpu-cancel-2");
    node.close();
    await eventually(async () => JSON.stringify(await usageOf(record.id)) === JSON.stringify([{ requests: 1, prompt_tokens: 0, completion_tokens: 0, errors: 0 }]));
  });
});
