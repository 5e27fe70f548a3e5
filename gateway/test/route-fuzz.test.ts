import { expect, onTestFinished, test } from "vitest";
import { exports } from "cloudflare:workers";
import { OpenApiJson } from "../../shared/app/openapi-document.ts";
import { CreatedKey } from "../../shared/gateway-admin/admin-schemas.ts";
import { ADMIN_TOKEN, api, API_KEY, chatBody, dialGateway, FakeAgent, modelObject, NODE_TOKEN, result } from "./fake-agent.ts";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import { TEST_BINDINGS } from "./bindings.ts";

/**
 * Random requests to every route the gateway documents (all five API families, the admin API,
 * metrics, the agent socket), with random methods, credentials, headers and bodies, and random
 * frames on agent sockets, before a hello and after one while a client's request runs there: no
 * 5xx but the documented ones, no hang, no secret or stack in any answer. Seeded, so a failure can
 * be replayed.
 */

/** The same seeded generator for every fuzz here: a failure replays from its seed. */
function seeded(seed: number) {
  let state = seed;
  const random = () => ((state = (state * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)] as T;
  return { random, pick };
}

const deep = (depth: number) => "[".repeat(depth) + "]".repeat(depth);

const REQUESTS = 600;
/** Longest any one answer may take: every route answers garbage at once, or within the fleet's short test timings. */
const ANSWER_WITHIN_MS = 10_000;

test(`${REQUESTS} random requests over every documented route, then random agent frames: no 5xx, no hang, nothing leaked`, async () => {
  const node = await FakeAgent.connect({
    name: "fuzz-node",
    models: [{ id: "fuzz-chat", state: "loaded" }, { id: "fuzz-embed", type: "embeddings", state: "loaded" }],
    countsTokens: true,
  });
  onTestFinished(() => node.close());
  node.autoAnswer((frame) => {
    const { op } = frame.operation;
    if (op === "chat" || op === "completion") node.complete(frame.id, "fuzzed");
    else if (op === "embeddings") node.sendFrame({ type: "result", id: frame.id, result: { model: "fuzz-embed", embeddings: [[0.1]], usage: { prompt_tokens: 1, total_tokens: 1 } } });
    else if (op === "count_tokens") node.sendFrame({ type: "result", id: frame.id, result: { prompt_tokens: 3 } });
    else if (op === "unload") node.sendFrame({ type: "result", id: frame.id, result: { instance_id: "fuzz-chat" } });
    else if (op === "load") node.sendFrame({ type: "result", id: frame.id, result: { type: "llm", instance_id: "fuzz-chat", load_time_seconds: 0, status: "loaded" } });
    else node.sendFrame({ type: "error", id: frame.id, status: 400, body: { error: { message: "not here", type: "invalid_request_error", param: null, code: "unsupported" } } });
  });
  const created = await exports.default.fetch("http://gateway.test/admin/keys", {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    body: JSON.stringify({ name: "fuzz", can: ["load"] }),
  });
  const { key } = CreatedKey.parse(await created.json());
  const secrets = [ADMIN_TOKEN, API_KEY, NODE_TOKEN, TEST_BINDINGS.LMGATE_METRICS_TOKEN, key];

  const spec = OpenApiJson.parse(await (await exports.default.fetch("http://gateway.test/openapi.json")).json());
  const paths = Object.keys(spec.paths).filter((path) => path !== "/agent/connect");
  expect(paths.length).toBeGreaterThan(30);

  const { random, pick } = seeded(2027);
  const bodies: Array<() => BodyInit | undefined> = [
    () => undefined,
    () => "",
    () => crypto.getRandomValues(new Uint8Array(1 + Math.floor(random() * 512))),
    () => JSON.stringify({ model: "fuzz-chat", messages: [{ role: "user", content: "hi" }], stream: random() < 0.5 }),
    () => JSON.stringify({ model: "fuzz-chat", input: "hi", store: random() < 0.5 }),
    () => JSON.stringify({ model: "fuzz-chat", max_tokens: 8, messages: [{ role: "user", content: [{ type: "text", text: "hi" }] }] }),
    () => JSON.stringify({ model: "fuzz-embed", input: ["a", "b"] }),
    () => JSON.stringify({ model: "fuzz-chat", prompt: "x", max_tokens: -1 }),
    () => JSON.stringify({ instance_id: "fuzz-chat", force: random() < 0.5 }),
    () => JSON.stringify({ name: "x".repeat(Math.floor(random() * 300)), models: ["*"], rpm: random() < 0.5 ? 0 : 5 }),
    () => JSON.stringify({ node: "fuzz-node", models: ["fuzz-*"] }),
    () => JSON.stringify({ model: 42, messages: "nope", n: 1e9, temperature: "hot" }),
    () => JSON.stringify({ model: "fuzz-chat", messages: deep(100) }),
    () => deep(5_000),
    () => "{\"model\": ",
    () => JSON.stringify(null),
    () => JSON.stringify({ __proto__: { admin: true }, constructor: { prototype: {} } }),
    () => "x".repeat(1_100_000),
  ];
  const methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"] as const;
  const credentials = [
    undefined,
    `Bearer ${key}`,
    `Bearer ${API_KEY}`,
    `Bearer ${ADMIN_TOKEN}`,
    `Bearer ${NODE_TOKEN}`,
    `Bearer lmg_${"A".repeat(43)}`,
    "Basic YWRtaW46YWRtaW4=",
    "Bearer ",
  ];
  const fill = (path: string) => path.replace(/\{[^}]+\}/g, () => pick(["fuzz-chat", "resp_made_up", "key_000000000000", "..%2F..%2Fadmin", "%00", "x".repeat(300)]));

  const statuses = new Map<number, number>();
  for (let index = 0; index < REQUESTS; index += 1) {
    // Mostly the route's own method and credential, so the fuzz gets past auth and into the handlers.
    const route = pick(paths);
    const documented = Object.keys(spec.paths[route] as Record<string, unknown>).map((name) => name.toUpperCase());
    const method = random() < 0.7 ? pick(documented) : pick(methods);
    const path = fill(route);
    const body = method === "GET" || method === "HEAD" ? undefined : pick(bodies)();
    const headers: Record<string, string> = { "cf-connecting-ip": `198.18.${index % 250}.${Math.floor(index / 250)}` };
    const own = route.startsWith("/admin") || route === "/metrics" ? `Bearer ${ADMIN_TOKEN}` : pick([`Bearer ${key}`, `Bearer ${API_KEY}`]);
    const authorization = random() < 0.6 ? own : pick(credentials);
    if (authorization !== undefined) headers.authorization = authorization;
    if (random() < 0.3) headers["content-type"] = pick(["application/json", "text/plain", "multipart/form-data; boundary=x", "application/json; charset=utf-16"]);
    if (random() < 0.2) headers["x-api-key"] = pick([key, "nope", ""]);
    if (random() < 0.1) headers.origin = "https://evil.example";
    const answered = await Promise.race([
      exports.default.fetch(`http://gateway.test${path}`, { method, headers, ...(body === undefined ? {} : { body }) }).then(async (response) => ({
        status: response.status,
        text: await response.text(),
      })),
      new Promise<null>((resolve) => setTimeout(() => resolve(null), ANSWER_WITHIN_MS)),
    ]);
    const where = `${method} ${path.slice(0, 120)}`;
    expect(answered, `${where}: no answer within ${ANSWER_WITHIN_MS} ms`).not.toBeNull();
    const { status, text } = answered as { status: number; text: string };
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    if (status >= 500) expect(`${where} → ${status} ${text.slice(0, 300)}`).toMatch(/ 503 .*no_capacity/);
    if (status >= 400) {
      for (const secret of secrets) expect(text, `${where} leaked a secret`).not.toContain(secret);
      expect(text, `${where} leaked a stack`).not.toMatch(/\n\s+at /);
    }
    // The loop never yields to the fake node's heartbeat timer; ping on its behalf so it stays routable.
    node.ws.send("ping");
  }
  console.log(`route fuzz: ${REQUESTS} requests over ${paths.length} routes, statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);

  // Agent sockets: random frames after a hello, or instead of one. Each bad socket is closed; the fleet serves on.
  const frames: Array<() => string> = [
    () => "garbage",
    () => JSON.stringify({ type: "status", status: { models: "all" } }),
    () => JSON.stringify({ type: "events", id: "nobody", events: [{ type: "delta", text: "x" }] }),
    () => JSON.stringify({ type: "result", id: "nobody", result: { instance_id: "x" } }),
    () => JSON.stringify({ type: "error", id: "nobody", status: 200, body: {} }),
    () => JSON.stringify({ type: "hello", protocol: 999 }),
    () => deep(3_000),
    () => "x".repeat(200_000),
  ];
  for (let index = 0; index < 24; index += 1) {
    const response = await dialGateway(NODE_TOKEN);
    if (response.status !== 101) {
      expect(response.status).toBe(429);
      continue;
    }
    const ws = response.webSocket!;
    ws.accept();
    const closed = new Promise<number>((resolve) => ws.addEventListener("close", (event) => resolve(event.code)));
    for (let sent = 0; sent < 3; sent += 1) {
      try {
        ws.send(pick(frames)());
      } catch {
        break;
      }
    }
    const code = await Promise.race([closed, new Promise<null>((resolve) => setTimeout(() => resolve(null), ANSWER_WITHIN_MS))]);
    expect(code, "a socket that broke the protocol is closed").not.toBeNull();
  }
  const chat = await exports.default.fetch("http://gateway.test/v1/chat/completions", {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ model: "fuzz-chat", messages: [{ role: "user", content: "still there?" }] }),
  });
  expect(await chat.text()).toContain("fuzzed");
}, 240_000);

const ROUNDS = 40;
/**
 * The 5xx a client may get from a node that misbehaves (docs/failure-semantics.md): its node went or
 * broke its answer, nobody else can serve, or the node's own error, passed on with its code
 * (`fuzz_node_said` here) once bounded to 400–599.
 */
const NODE_FAILURE_CODES = ["node_disconnected", "incomplete_generation", "bad_node_response", "no_capacity", "model_unloaded", "fuzz_node_said"];

test(`a node past its hello sends random frames while a client's request runs on it (${ROUNDS} rounds): documented 5xx only, no hang, nothing leaked, the node object serves on`, async () => {
  const { random, pick } = seeded(2728);
  const steady = await FakeAgent.connect({ name: "frames-steady", models: [{ id: "frames-steady-chat", state: "loaded" }] });
  onTestFinished(() => steady.close());
  steady.autoAnswer((frame) => steady.complete(frame.id, "steady"));

  const weird = (): unknown => pick([null, -1, 0, 1e308, Number.MAX_SAFE_INTEGER, 1.5, "", "x".repeat(100_000), {}, [], true, JSON.parse(deep(60)) as unknown]);
  /** The frame with one field somewhere inside it replaced by something it should not be. */
  const mutate = (value: unknown, depth = 0): unknown => {
    if (value === null || typeof value !== "object" || (depth > 0 && random() < 0.3)) return weird();
    const copy = (Array.isArray(value) ? [...value] : { ...value }) as Record<string, unknown>;
    const keys = Object.keys(copy);
    if (keys.length === 0) return weird();
    const key = pick(keys);
    copy[key] = mutate(copy[key], depth + 1);
    return copy;
  };
  const loaded = modelObject({ id: "frames-chat", state: "loaded" });
  const wrongId = () => pick(["", "nobody", "x".repeat(10_000), "__proto__"]);
  const usage = (tokens: number) => ({ prompt_tokens: tokens, completion_tokens: tokens, total_tokens: tokens });
  /** Frames a node may send, aimed at the running request `id` or past it: the gateway takes each. */
  const valid: Array<(id: string) => unknown> = [
    () => ({ type: "status", status: { models: [loaded], busy: {}, speed: {} } }),
    () => ({ type: "status", status: { models: [], busy: {}, speed: {} } }),
    () => ({ type: "status", status: { models: [loaded], busy: { "frames-chat": 2 ** 31 }, speed: { "frames-chat": { tokens_per_second: 1e308, time_to_first_token: -1 } } } }),
    () => ({ type: "status", status: { models: Array.from({ length: 2_000 }, (_, index) => modelObject({ id: `flood-${index}`, state: "loaded" })), busy: {}, speed: {} } }),
    (id) => ({ type: "events", id, events: [{ type: "start", model: "frames-chat" }, { type: "delta", text: "partial " }] }),
    (id) => ({ type: "events", id, events: [{ type: "delta", text: "y".repeat(200_000), index: 7 }] }),
    (id) => ({ type: "events", id, events: [{ type: "done", result: result({ usage: usage(Number.MAX_SAFE_INTEGER) }) }] }),
    () => ({ type: "events", id: wrongId(), events: [{ type: "delta", text: "not yours" }] }),
    (id) => ({ type: "batch", frames: [{ type: "events", id, events: [{ type: "delta", text: "a" }] }, { type: "events", id: wrongId(), events: [{ type: "start", model: "m" }] }] }),
    (id) => ({
      type: "error",
      id: pick([id, wrongId()]),
      status: pick([200, 99, 400, 429, 500, 503, 600, -1]),
      retry_after: pick([1e12, -5, 1]),
      body: { error: { message: "node says no", type: "server_error", param: null, code: "fuzz_node_said" } },
    }),
    (id) => ({ type: "result", id: pick([id, wrongId()]), result: { prompt_tokens: 3 } }),
    () => ({ type: "goodbye", reason: pick(["sleep", "shutdown"]) }),
  ];
  /** Frames of nearly the protocol's shape: wrong types, negative counts, frames only the gateway sends. */
  const broken: Array<(id: string) => unknown> = [
    () => ({ type: "status", status: { models: [loaded], busy: { "frames-chat": -3 }, speed: {} } }),
    (id) => ({ type: "events", id, events: [] }),
    (id) => ({ type: "events", id, events: [{ type: "done", result: result({ usage: usage(-7) }) }] }),
    (id) => ({ type: "events", id, events: JSON.parse(deep(60)) as unknown }),
    (id) => ({ type: "ack", id, frames: 1 }),
    () => ({ type: "goodbye", reason: "forever" }),
    () => ({ type: "hello", protocol: 2, node: {}, status: {} }),
  ];
  const frame = (id: string): string => {
    const roll = random();
    if (roll < 0.5) return JSON.stringify(pick(valid)(id));
    if (roll < 0.75) return JSON.stringify(mutate(pick(valid)(id)));
    if (roll < 0.9) return JSON.stringify(pick(broken)(id));
    return pick(["garbage", `{"type":"status","status":${deep(3_000)}}`, "x".repeat(300_000)]);
  };
  const send = (agent: FakeAgent, text: string) => {
    try {
      agent.ws.send(text);
    } catch {
      // the gateway closed it already
    }
  };

  const secrets = [ADMIN_TOKEN, API_KEY, NODE_TOKEN, TEST_BINDINGS.LMGATE_METRICS_TOKEN];
  const outcomes = new Map<string, number>();
  for (let round = 0; round < ROUNDS; round += 1) {
    const rogue = await FakeAgent.connect({ name: "frames-rogue", models: [{ id: "frames-chat", state: "loaded" }] });
    const stream = random() < 0.5;
    const asked = api("/v1/chat/completions", chatBody("frames-chat", { stream, messages: [{ role: "user", content: `round ${round}` }] })).then(async (response) => ({
      status: response.status,
      text: await response.text(),
    }));
    const { id } = await rogue.nextRequest();
    const frames = 1 + Math.floor(random() * 4);
    for (let sent = 0; sent < frames; sent += 1) send(rogue, frame(id));
    // Then it answers after all, or goes: either way its client's request has to end.
    if (random() < 0.5) {
      send(rogue, JSON.stringify({ type: "events", id, events: [{ type: "start", model: "frames-chat" }, { type: "delta", text: "at last" }] }));
      send(rogue, JSON.stringify({ type: "events", id, events: [{ type: "done", result: result() }] }));
    } else rogue.close();
    const answered = await Promise.race([asked, new Promise<null>((resolve) => setTimeout(() => resolve(null), ANSWER_WITHIN_MS))]);
    rogue.close();
    const where = `round ${round} (${stream ? "stream" : "no stream"})`;
    expect(answered, `${where}: no answer within ${ANSWER_WITHIN_MS} ms`).not.toBeNull();
    const { status, text } = answered as { status: number; text: string };
    const code = status >= 400 ? (ErrorBody.safeParse(JSON.parse(text)).data?.error.code ?? "unparsed") : null;
    const outcome = code === null ? `${status}` : `${status} ${code}`;
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    if (status >= 500) expect(NODE_FAILURE_CODES, `${where} → ${status} ${text.slice(0, 300)}`).toContain(code);
    expect(text, `${where}: an internal error`).not.toContain("internal_error");
    for (const secret of secrets) expect(text, `${where} leaked a secret`).not.toContain(secret);
    expect(text, `${where} leaked a stack`).not.toMatch(/\n\s+at /);
  }
  console.log(`agent frame fuzz: ${ROUNDS} rounds, outcomes ${JSON.stringify(Object.fromEntries([...outcomes].sort()))}`);

  // The node object that took all this serves an honest agent of that name, and the rest of the fleet serves on.
  const honest = await FakeAgent.connect({ name: "frames-rogue", models: [{ id: "frames-chat", state: "loaded" }] });
  onTestFinished(() => honest.close());
  honest.autoAnswer((request) => honest.complete(request.id, "honest again"));
  expect(await (await api("/v1/chat/completions", chatBody("frames-chat"))).text()).toContain("honest again");
  expect(await (await api("/v1/chat/completions", chatBody("frames-steady-chat"))).text()).toContain("steady");
}, 120_000);
