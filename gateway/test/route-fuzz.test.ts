import { expect, onTestFinished, test } from "vitest";
import { exports } from "cloudflare:workers";
import { OpenApiJson } from "../../shared/app/openapi-document.ts";
import { CreatedKey } from "../../shared/gateway-admin/admin-schemas.ts";
import { ADMIN_TOKEN, API_KEY, dialGateway, FakeAgent, NODE_TOKEN } from "./fake-agent.ts";
import { TEST_BINDINGS } from "./bindings.ts";

/**
 * Random requests to every route the gateway documents (all five API families, the admin API,
 * metrics, the agent socket), with random methods, credentials, headers and bodies, and random
 * frames on agent sockets: no 5xx but the fleet's own "no capacity", no hang, no secret or stack
 * in any answer. Seeded, so a failure can be replayed.
 */

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

  let seed = 2027;
  const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)] as T;
  const deep = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
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
