import { describe, expect, onTestFinished, test } from "vitest";
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import { CLOSE_CODES, NODE_NAME_HEADER } from "../../shared/protocol/frames.ts";
import { CreatedKey, CreatedNodeToken, KeyRecord, ListOf, NodeSummary, NodeTokenRecord, StoredResponsesUsage, UsageRow } from "../../shared/gateway-admin/admin-schemas.ts";
import { UnloadResult } from "../../shared/protocol/model-schemas.ts";
import { DEFAULT_FLEET } from "../env.ts";
import { ADMIN_TOKEN, api, chatBody, dialGateway, eventually, FakeAgent, modelObject, NODE_TOKEN, result } from "./fake-agent.ts";

/** Issue 27's attacks, each against the real Worker and Fleet in workerd: what a key, a node or a stranger can still do. */

const admin = async (method: string, path: string, body?: unknown) =>
  exports.default.fetch(`http://gateway.test/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });

const nodeToken = async (request: { node: string; models?: string[] }) => {
  const response = await admin("POST", "/node-tokens", request);
  expect(response.status).toBe(201);
  return CreatedNodeToken.parse(await response.json());
};

async function expectError(response: Response, status: number, code: string) {
  expect(response.status).toBe(status);
  expect(ErrorBody.parse(await response.json()).error.code).toBe(code);
}

const createKey = async (request: Record<string, unknown>) => {
  const response = await admin("POST", "/keys", request);
  expect(response.status).toBe(201);
  return CreatedKey.parse(await response.json()).key;
};

const withKey = (key: string, path: string, body: unknown) =>
  exports.default.fetch(`http://gateway.test${path}`, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: JSON.stringify(body) });

const nodesNamed = async (name: string) => ListOf(NodeSummary).parse(await (await admin("GET", "/nodes")).json()).data.filter((node) => node.name === name);

describe("a node token scoped to models", () => {
  test("serves only its models: others it advertises, at hello or in any later status, are never listed nor routed to it", async () => {
    const created = await nodeToken({ node: "scoped-node", models: ["tiny-*"] });
    expect(created.record.models).toEqual(["tiny-*"]);
    const listed = ListOf(NodeTokenRecord).parse(await (await admin("GET", "/node-tokens")).json()).data;
    expect(listed.find((token) => token.id === created.record.id)?.models).toEqual(["tiny-*"]);

    const rogue = await FakeAgent.connect({
      name: "scoped-node",
      token: created.token,
      models: [{ id: "tiny-chat", state: "loaded" }, { id: "someone-elses-model", state: "loaded" }],
    });
    onTestFinished(() => rogue.close());
    expect((await nodesNamed("scoped-node"))[0]?.models.map((model) => model.id)).toEqual(["tiny-chat"]);
    await expectError(await api("/v1/chat/completions", chatBody("someone-elses-model")), 404, "model_not_found");

    // A later status claiming another model free and loaded is cut the same way.
    rogue.sendFrame({
      type: "status",
      status: { models: [modelObject({ id: "tiny-chat", state: "loaded" }), modelObject({ id: "other-model", state: "loaded" })], busy: {}, speed: {} },
    });
    const ids = ((await (await api("/v1/models")).json()) as { data: Array<{ id: string }> }).data.map((model) => model.id);
    expect(ids).toContain("tiny-chat");
    expect(ids).not.toContain("other-model");
    await expectError(await api("/v1/chat/completions", chatBody("other-model")), 404, "model_not_found");

    // Within its scope it serves as before.
    const response = api("/v1/chat/completions", chatBody("tiny-chat"));
    const { id } = await rogue.nextRequest();
    rogue.complete(id, "in scope");
    expect(await (await response).text()).toContain("in scope");
  });

  test("a bad glob is refused at creation (400)", async () => {
    await expectError(await admin("POST", "/node-tokens", { node: "n", models: ["bad glob!"] }), 400, "invalid_request");
  });
});

describe("a named node token owns its name", () => {
  test("the shared LMGATE_NODE_TOKEN cannot say hello as a node that has its own token; the named node keeps serving", async () => {
    const { token } = await nodeToken({ node: "owned-node" });
    const real = await FakeAgent.connect({ name: "owned-node", token, models: [{ id: "owned-chat", state: "loaded" }] });
    onTestFinished(() => real.close());
    const impostor = FakeAgent.connect({ name: "owned-node", token: NODE_TOKEN, models: [{ id: "owned-chat", state: "loaded" }] });
    await expect(impostor).rejects.toMatchObject({ code: CLOSE_CODES.nameNotAllowed, message: expect.stringContaining("has a node token of its own") });

    const response = api("/v1/chat/completions", chatBody("owned-chat"));
    const { id } = await real.nextRequest();
    real.complete(id, "from the real owned-node");
    expect(await (await response).text()).toContain("from the real owned-node");
    expect((await nodesNamed("owned-node")).map((node) => node.online)).toEqual([true]);
  });

  test("once its token is revoked, the name is free for the shared token again", async () => {
    const { record } = await nodeToken({ node: "freed-node" });
    await expect(FakeAgent.connect({ name: "freed-node", token: NODE_TOKEN, models: [] })).rejects.toMatchObject({ code: CLOSE_CODES.nameNotAllowed });
    expect((await admin("DELETE", `/node-tokens/${record.id}`)).status).toBe(200);
    (await FakeAgent.connect({ name: "freed-node", token: NODE_TOKEN, models: [] })).close();
  });
});

const dialFrom = (address: string, name: string) =>
  exports.default.fetch("http://gateway.test/agent/connect", {
    headers: { upgrade: "websocket", authorization: `Bearer ${NODE_TOKEN}`, [NODE_NAME_HEADER]: name, "cf-connecting-ip": address },
  });

describe("idle sockets", () => {
  test("one node's object holds at most 16 sockets without hello of the shared token, from however many addresses", async () => {
    const sockets: WebSocket[] = [];
    onTestFinished(() => sockets.forEach((ws) => ws.close()));
    // One socket per address: the Fleet's count per address never refuses, so only the node object can.
    for (let index = 0; index < 16; index += 1) {
      const response = await dialFrom(`198.51.100.${index + 1}`, "crowded-node");
      expect(response.status).toBe(101);
      response.webSocket!.accept();
      sockets.push(response.webSocket!);
    }
    await expectError(await dialFrom("198.51.100.17", "crowded-node"), 429, "too_many_connections");
  });


  test("the shared node token holds at most 16 sockets that have not said hello (of its 64); the next upgrade gets 429", async () => {
    const sockets: WebSocket[] = [];
    onTestFinished(() => sockets.forEach((ws) => ws.close()));
    for (let index = 0; index < 16; index += 1) {
      const response = await dialGateway(NODE_TOKEN);
      expect(response.status).toBe(101);
      response.webSocket!.accept();
      sockets.push(response.webSocket!);
    }
    await expectError(await dialGateway(NODE_TOKEN), 429, "too_many_connections");
    // A node that says hello at once is not held back by those past the limit, once they are gone.
    sockets.splice(0).forEach((ws) => ws.close());
    await eventually(async () => {
      const response = await dialGateway(NODE_TOKEN);
      response.webSocket?.accept();
      response.webSocket?.close();
      return response.status === 101;
    });
  });
});

describe("idle sockets across names", () => {
  test("one token from one address holds at most 16 sockets without hello whatever names it dials; another address is not held back; a socket that goes frees its place", async () => {
    const sockets: WebSocket[] = [];
    onTestFinished(() => sockets.forEach((ws) => ws.close()));
    for (let index = 0; index < 16; index += 1) {
      const response = await dialFrom("192.0.2.40", `idle-${index}`);
      expect(response.status).toBe(101);
      response.webSocket!.accept();
      sockets.push(response.webSocket!);
    }
    // A 17th name is a fresh node object, but the same token and address.
    await expectError(await dialFrom("192.0.2.40", "idle-16"), 429, "too_many_connections");
    const elsewhere = await dialFrom("192.0.2.41", "idle-16");
    expect(elsewhere.status).toBe(101);
    elsewhere.webSocket!.accept();
    sockets.push(elsewhere.webSocket!);
    sockets[0]!.close();
    await eventually(async () => {
      const response = await dialFrom("192.0.2.40", "idle-16");
      response.webSocket?.accept();
      response.webSocket?.close();
      return response.status === 101;
    });
  });
});

describe("an unload in a shared fleet", () => {
  test("another key's unload lets a running stream finish, takes no new requests meanwhile, and says what it waited for", async () => {
    const node = await FakeAgent.connect({ name: "drain-node", models: [{ id: "drain-chat", state: "loaded" }] });
    onTestFinished(() => node.close());
    const victim = await createKey({ name: "drain-victim" });
    const operator = await createKey({ name: "drain-operator", can: ["load"] });

    const streamed = withKey(victim, "/v1/chat/completions", chatBody("drain-chat", { stream: true }));
    const running = await node.nextRequest();
    node.sendFrame({ type: "events", id: running.id, events: [{ type: "start", model: "drain-chat" }, { type: "delta", text: "first half, " }] });
    const unloading = withKey(operator, "/api/v1/models/unload", { instance_id: "drain-chat" });
    // While it waits, the model takes no new requests there, and the node is sent no unload yet.
    await eventually(async () => (await withKey(victim, "/v1/chat/completions", chatBody("drain-chat"))).status === 503);
    expect(node.received.some((frame) => frame.type === "request" && frame.operation.op === "unload")).toBe(false);

    node.complete(running.id, "second half");
    const text = await (await streamed).text();
    expect(text).toContain('"finish_reason":"stop"');
    expect(text).toContain("[DONE]");
    expect(text).not.toContain("model_unloaded");
    const unload = await node.nextRequest();
    expect(unload.operation.op).toBe("unload");
    node.sendFrame({ type: "result", id: unload.id, result: { instance_id: "drain-chat" } });
    const answered = UnloadResult.parse(await (await unloading).json());
    expect(answered.drained).toMatchObject({ generations: 1, cut: 0 });
  });

  test("only the deployment's own credentials may force it: a key gets 403, the admin's cuts the stream at once", async () => {
    const node = await FakeAgent.connect({ name: "force-node", models: [{ id: "force-chat", state: "loaded" }] });
    onTestFinished(() => node.close());
    const operator = await createKey({ name: "force-operator", can: ["load"] });
    const streamed = api("/v1/chat/completions", chatBody("force-chat", { stream: true }));
    const running = await node.nextRequest();
    await expectError(await withKey(operator, "/api/v1/models/unload", { instance_id: "force-chat", force: true }), 403, "force_not_allowed");

    const forced = api("/api/v1/models/unload", { instance_id: "force-chat", force: true });
    const unload = await node.nextRequest();
    expect(unload.operation.op).toBe("unload");
    node.sendFrame({ type: "result", id: unload.id, result: { instance_id: "force-chat" } });
    expect(UnloadResult.parse(await (await forced).json()).drained).toMatchObject({ generations: 1, cut: 1 });
    node.complete(running.id, "cut");
    await streamed;
  });
});

describe("the order of checks", () => {
  test("a wrong or revoked key gets 401 before anything about its body (400, 413); a good key hears about the body", async () => {
    const madeUp = `lmg_${"x".repeat(43)}`;
    const revoked = await createKey({ name: "order-revoked" });
    const revokedId = (await (await admin("GET", "/keys")).json() as { data: Array<{ id: string; name: string }> }).data.find((key) => key.name === "order-revoked")!.id;
    expect((await admin("DELETE", `/keys/${revokedId}`)).status).toBe(200);
    const good = await createKey({ name: "order-good" });
    const invalid = { model: 42, messages: "nope" };
    for (const path of ["/v1/chat/completions", "/v1/responses", "/v1/messages", "/api/v1/chat", "/api/v0/completions", "/api/v1/models/load"]) {
      // Each family answers in its own shape (Anthropic's has no code): the status is what must not tell.
      expect((await withKey(madeUp, path, invalid)).status, path).toBe(401);
      expect((await withKey(revoked, path, invalid)).status, path).toBe(401);
      expect((await withKey(good, path, invalid)).status, path).toBe(400);
    }
    await expectError(await withKey(madeUp, "/v1/chat/completions", invalid), 401, "invalid_api_key");
    await expectError(await withKey(madeUp, "/v1/chat/completions", { model: "m", messages: [{ role: "user", content: "x".repeat(2 * 1024 * 1024) }] }), 401, "invalid_api_key");
  });
});

describe("what a node says about itself", () => {
  test("routing ranks nodes by the speed the gateway measured, never by the speed they claim", async () => {
    const liar = await FakeAgent.connect({ name: "claims-fast", models: [{ id: "speed-chat", state: "loaded" }], speed: { "speed-chat": 1e9 } });
    const honest = await FakeAgent.connect({ name: "claims-slow", models: [{ id: "speed-chat", state: "loaded" }], speed: { "speed-chat": 1 } });
    onTestFinished(() => [liar, honest].forEach((node) => node.close()));
    const served: string[] = [];
    // Both write 20 tokens; the one that claims a billion tokens/s takes 20 times longer over them.
    const answerAfter = (node: FakeAgent, label: string, ms: number) =>
      node.autoAnswer((frame) => {
        served.push(label);
        node.sendFrame({ type: "events", id: frame.id, events: [{ type: "start", model: "speed-chat" }, { type: "delta", text: "a" }] });
        setTimeout(() => node.sendFrame({ type: "events", id: frame.id, events: [{ type: "done", result: result({ usage: { prompt_tokens: 3, completion_tokens: 20, total_tokens: 23 } }) }] }), ms);
      });
    answerAfter(liar, "liar", 1_000);
    answerAfter(honest, "honest", 50);
    for (let index = 0; index < 6; index += 1) {
      // Read to the end: a non-streamed answer's 200 comes before its generation ends, and a busy node would lose on load alone.
      expect(await (await api("/v1/chat/completions", chatBody("speed-chat", { max_tokens: 50, messages: [{ role: "user", content: `question ${index}` }] }))).text()).toContain('"finish_reason":"stop"');
    }
    // Unmeasured, the first two go round-robin (each prompt is new: no node caches it); measured, the honest node gets the rest.
    expect(served.slice(0, 2).sort()).toEqual(["honest", "liar"]);
    expect(served.slice(2)).toEqual(["honest", "honest", "honest", "honest"]);
  });

  test("a node's claimed slots are believed only as far as it has run that many at once: a rogue claiming 64 takes 4 of 8 concurrent requests, more as it proves them", async () => {
    const honest = await FakeAgent.connect({ name: "slots-honest", slots: 2, models: [{ id: "slots-chat", state: "loaded" }] });
    const rogue = await FakeAgent.connect({ name: "slots-rogue", slots: 64, models: [{ id: "slots-chat", state: "loaded" }] });
    onTestFinished(() => [honest, rogue].forEach((node) => node.close()));
    const held = { honest: [] as string[], rogue: [] as string[] };
    honest.autoAnswer((frame) => held.honest.push(frame.id));
    rogue.autoAnswer((frame) => held.rogue.push(frame.id));
    const ask = (index: number) => api("/v1/chat/completions", chatBody("slots-chat", { messages: [{ role: "user", content: `slots ${index}` }] })).then((response) => response.text());
    const release = () => {
      for (const id of held.honest.splice(0)) honest.complete(id, "done");
      for (const id of held.rogue.splice(0)) rogue.complete(id, "done");
    };

    // Unproven, the rogue is believed 4 slots: the honest node gets its 2, the last 2 wait.
    const first = Array.from({ length: 8 }, (_, index) => ask(index));
    await eventually(() => held.honest.length + held.rogue.length >= 6);
    expect({ honest: held.honest.length, rogue: held.rogue.length }).toEqual({ honest: 2, rogue: 4 });
    honest.autoAnswer((frame) => honest.complete(frame.id, "done"));
    rogue.autoAnswer((frame) => rogue.complete(frame.id, "done"));
    release();
    for (const text of await Promise.all(first)) expect(text).toContain('"finish_reason":"stop"');

    // Having finished a request while it ran 4, it is believed twice that.
    honest.autoAnswer((frame) => held.honest.push(frame.id));
    rogue.autoAnswer((frame) => held.rogue.push(frame.id));
    const second = Array.from({ length: 12 }, (_, index) => ask(8 + index));
    await eventually(() => held.honest.length + held.rogue.length >= 10);
    expect({ honest: held.honest.length, rogue: held.rogue.length }).toEqual({ honest: 2, rogue: 8 });
    honest.autoAnswer((frame) => honest.complete(frame.id, "done"));
    rogue.autoAnswer((frame) => rogue.complete(frame.id, "done"));
    release();
    await Promise.all(second);

    // Past the protocol's bound a hello is not a hello.
    await expect(FakeAgent.connect({ name: "slots-absurd", slots: 1_000_000, models: [] })).rejects.toMatchObject({ code: CLOSE_CODES.badFrame });
  });

  test("a node's retry_after reaches the client bounded to 30 s", async () => {
    const node = await FakeAgent.connect({ name: "stalls-clients", models: [{ id: "stall-chat", state: "loaded" }] });
    onTestFinished(() => node.close());
    const response = api("/v1/chat/completions", chatBody("stall-chat"));
    const { id } = await node.nextRequest();
    node.sendFrame({ type: "error", id, status: 429, retry_after: 365 * 86_400, body: { error: { message: "come back next year", type: "x", param: null, code: "busy" } } });
    const answered = await response;
    expect(answered.status).toBe(429);
    expect(answered.headers.get("retry-after")).toBe("30");
  });
});

describe("the wrong-credential brake", () => {
  const from = (address: string, token: string, path: string) =>
    exports.default.fetch(`http://gateway.test${path}`, { headers: { authorization: `Bearer ${token}`, "cf-connecting-ip": address } });

  test("counted in the Fleet's storage, whichever isolate answers; past 10 wrong a minute the wrong get 429, the right one still gets through", async () => {
    for (const [path, address, right] of [["/admin/keys", "192.0.2.10", ADMIN_TOKEN], ["/metrics", "192.0.2.11", ADMIN_TOKEN]] as const) {
      for (let index = 0; index < 10; index += 1) expect((await from(address, `wrong-${index}`, path)).status).toBe(401);
      const braked = await from(address, "wrong-10", path);
      await expectError(braked, 429, "too_many_attempts");
      expect(Number(braked.headers.get("retry-after"))).toBeGreaterThan(0);
      // A teammate's guesses behind the same address do not lock the owner out.
      expect((await from(address, right, path)).status).toBe(200);
    }
    const counted = await runInDurableObject(env.FLEET.getByName(DEFAULT_FLEET), (_instance, state) =>
      state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM failed_attempts WHERE address = ?", "192.0.2.10").one().n,
    );
    expect(counted).toBe(10);
  });

  test("covers API keys: made-up keys are braked per address in the Fleet, a real key from that address still gets through", async () => {
    const key = await createKey({ name: "braked-key-owner" });
    const ask = (bearer: string) =>
      exports.default.fetch("http://gateway.test/v1/models", { headers: { authorization: `Bearer ${bearer}`, "cf-connecting-ip": "192.0.2.30" } });
    for (let index = 0; index < 10; index += 1) await expectError(await ask(`lmg_wrong-${index}`), 401, "invalid_api_key");
    const braked = await ask("lmg_wrong-10");
    await expectError(braked, 429, "too_many_attempts");
    expect(Number(braked.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await ask(key)).status).toBe(200);
    // Another address is not braked by these.
    await expectError(await exports.default.fetch("http://gateway.test/v1/models", { headers: { authorization: "Bearer lmg_wrong-11", "cf-connecting-ip": "192.0.2.31" } }), 401, "invalid_api_key");
  });

  test("covers /agent/connect: wrong node tokens are braked per address, the right one still connects", async () => {
    const { token } = await nodeToken({ node: "braked-node" });
    const dial = (bearer: string) =>
      exports.default.fetch("http://gateway.test/agent/connect", { headers: { upgrade: "websocket", authorization: `Bearer ${bearer}`, "cf-connecting-ip": "192.0.2.20" } });
    for (let index = 0; index < 10; index += 1) expect((await dial(`lmgn_wrong-${index}`)).status).toBe(401);
    await expectError(await dial("lmgn_wrong-10"), 429, "too_many_attempts");
    const right = await dial(token);
    expect(right.status).toBe(101);
    right.webSocket?.accept();
    right.webSocket?.close();
  });
});

describe("tokens per day count the prompt before it runs", () => {
  test("a prompt that alone needs more than the key has left is refused before any node sees it; a smaller one leaves max_tokens what remains", async () => {
    const node = await FakeAgent.connect({ name: "budget-node", models: [{ id: "budget-chat", state: "loaded" }] });
    onTestFinished(() => node.close());
    const asked: number[] = [];
    // A node that reports the prompt it read (about one token per 4 characters) and spends every completion token it may.
    node.autoAnswer((frame) => {
      const body = frame.operation.body as { max_tokens?: number; messages: Array<{ content: string }> };
      asked.push(body.max_tokens ?? Number.NaN);
      const prompt = Math.ceil((body.messages[0]?.content.length ?? 0) / 4);
      const completion = body.max_tokens ?? 5_000;
      node.complete(frame.id, "x", { usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } });
    });
    const ask = (key: string, characters: number) =>
      withKey(key, "/v1/chat/completions", { model: "budget-chat", messages: [{ role: "user", content: "w".repeat(characters) }], max_tokens: 600 });

    const small = await createKey({ name: "budget-prompt-50", tokens_per_day: 50 });
    const refused = await ask(small, 420);
    await expectError(refused, 429, "tokens_per_day_exceeded");
    expect(asked).toEqual([]);

    const key = await createKey({ name: "budget-prompt-100", tokens_per_day: 100 });
    expect((await ask(key, 160)).status).toBe(200);
    // 100 a day, about 40 of them for the prompt: the completion may have the other 60.
    expect(asked).toEqual([60]);
    const rows = ListOf(UsageRow).parse(await (await admin("GET", "/usage")).json()).data.filter((row) => row.key_name === "budget-prompt-100");
    expect(rows.map(({ prompt_tokens, completion_tokens }) => ({ prompt_tokens, completion_tokens }))).toEqual([{ prompt_tokens: 40, completion_tokens: 60 }]);
  });

  test("CJK text counts a token a character, and tools and a response schema count too: a small budget refuses them before any node sees them, or holds what they leave", async () => {
    const node = await FakeAgent.connect({ name: "budget-wide-node", models: [{ id: "budget-wide-chat", state: "loaded" }] });
    onTestFinished(() => node.close());
    const asked: number[] = [];
    node.autoAnswer((frame) => {
      asked.push((frame.operation.body as { max_tokens?: number }).max_tokens ?? Number.NaN);
      node.complete(frame.id, "x");
    });
    const chat = (key: string, extra: Record<string, unknown>) => withKey(key, "/v1/chat/completions", chatBody("budget-wide-chat", { max_tokens: 600, ...extra }));
    const cjk = (characters: number) => ({ messages: [{ role: "user", content: "東京の天気を教えて".repeat(characters / 9) }] });
    const schema = { type: "object", properties: Object.fromEntries(Array.from({ length: 12 }, (_, index) => [`field_${index}`, { type: "string", description: "a field the caller needs filled in" }])) };
    const tools = { tools: [{ type: "function", function: { name: "lookup", description: "Looks a thing up.", parameters: schema } }] };
    const responseFormat = { response_format: { type: "json_schema", json_schema: { name: "answer", schema } } };

    // 54 characters of Japanese are some 54 tokens, not 13; each of these is past 50 before any node sees it.
    for (const [name, extra] of [["cjk", cjk(54)], ["tools", tools], ["response-format", responseFormat]] as const) {
      const key = await createKey({ name: `budget-wide-${name}`, tokens_per_day: 50 });
      await expectError(await chat(key, extra), 429, "tokens_per_day_exceeded");
    }
    expect(asked).toEqual([]);

    // 36 characters of Japanese of a budget of 100 leave the completion the other 64.
    const key = await createKey({ name: "budget-wide-held", tokens_per_day: 100 });
    expect((await chat(key, cjk(36))).status).toBe(200);
    expect(asked).toEqual([64]);
  });

  test("a budgeted key asking for a model no live node holds is told the model is not found, not that its budget is spent", async () => {
    const key = await createKey({ name: "budget-no-holder", tokens_per_day: 5_000 });
    const response = await withKey(key, "/v1/chat/completions", { model: "budget-nowhere", messages: [{ role: "user", content: "hi" }] });
    await expectError(response, 404, "model_not_found");
    // Nothing stays held for it: the whole budget is still there.
    const view = await exports.default.fetch("http://gateway.test/v1/key", { headers: { authorization: `Bearer ${key}` } });
    expect(((await view.json()) as { limits: { tokens_per_day: { remaining: number } } }).limits.tokens_per_day.remaining).toBe(5_000);
  });
});

describe("status frames", () => {
  test("a status without the v1 listing keeps the one the node sent last (agents send it only when it changed)", async () => {
    const node = await FakeAgent.connect({ name: "listing-node", models: [{ id: "listed-chat", state: "loaded" }] });
    onTestFinished(() => node.close());
    const entry = {
      type: "llm" as const,
      publisher: "test",
      key: "listed-chat",
      display_name: "listed-chat",
      quantization: { name: "F32", bits_per_weight: 32 },
      size_bytes: 1,
      params_string: null,
      loaded_instances: [],
      max_context_length: 2048,
      format: "gguf" as const,
    };
    const base = { models: [modelObject({ id: "listed-chat", state: "loaded" })], busy: {}, speed: {} };
    const keys = async () => ((await (await api("/api/v1/models")).json()) as { models: Array<{ key: string }> }).models.map((model) => model.key);
    node.sendFrame({ type: "status", status: { ...base, v1_models: [entry] } });
    await eventually(async () => (await keys()).includes("listed-chat"));
    for (let tick = 1; tick <= 3; tick += 1) {
      node.sendFrame({ type: "status", status: { ...base, downloads: [{ job_id: "j", status: "downloading", total_size_bytes: 10, downloaded_bytes: tick, started_at: "2026-01-01T00:00:00Z" }] } });
    }
    await eventually(async () => JSON.stringify(await (await exports.default.fetch("http://gateway.test/admin/nodes", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()).includes('"downloaded_bytes":3'));
    expect(await keys()).toContain("listed-chat");
  });
});

describe("stored responses", () => {
  test("a key's stored responses are bounded (the tests' share is 3 MB): past it, 409 before any node runs, other keys unaffected, deleting makes room", async () => {
    const node = await FakeAgent.connect({ name: "store-node", models: [{ id: "store-chat", state: "loaded" }] });
    onTestFinished(() => node.close());
    node.autoAnswer((frame) => node.complete(frame.id, "ok"));
    const filler = await createKey({ name: "store-filler" });
    const other = await createKey({ name: "store-other" });
    const store = (key: string) => withKey(key, "/v1/responses", { model: "store-chat", input: "w".repeat(900_000), store: true });
    const ids: string[] = [];
    for (let index = 0; index < 3; index += 1) {
      const response = await store(filler);
      expect(response.status).toBe(200);
      ids.push(((await response.json()) as { id: string }).id);
    }
    const requestsBefore = node.received.filter((frame) => frame.type === "request").length;
    const full = await store(filler);
    expect(full.status).toBe(409);
    const { error } = ErrorBody.parse(await full.json());
    expect(error.code).toBe("stored_responses_full");
    expect(error.message).toContain("DELETE /v1/responses/");
    expect(node.received.filter((frame) => frame.type === "request").length).toBe(requestsBefore);
    // Not storing still works, and another key has its own share.
    expect((await withKey(filler, "/v1/responses", { model: "store-chat", input: "w".repeat(900_000), store: false })).status).toBe(200);
    expect((await store(other)).status).toBe(200);
    // The key frees its own share.
    const deleted = await exports.default.fetch(`http://gateway.test/v1/responses/${ids[0]}`, { method: "DELETE", headers: { authorization: `Bearer ${filler}` } });
    expect(deleted.status).toBe(200);
    expect((await store(filler)).status).toBe(200);

    // The admin sees a key's share and can clear it.
    const fillerId = ListOf(KeyRecord).parse(await (await admin("GET", "/keys")).json()).data.find((record) => record.name === "store-filler")!.id;
    const seen = StoredResponsesUsage.parse(await (await admin("GET", `/keys/${fillerId}/responses`)).json());
    expect(seen).toMatchObject({ key_id: fillerId, count: 3, max_bytes: 3_000_000 });
    expect(seen.bytes).toBeGreaterThan(2_700_000);
    expect(StoredResponsesUsage.parse(await (await admin("DELETE", `/keys/${fillerId}/responses`)).json())).toMatchObject({ count: 0, bytes: 0 });
    expect((await withKey(filler, "/v1/responses", { model: "store-chat", input: "hi", previous_response_id: ids[1] })).status).toBe(400);
    await expectError(await admin("GET", "/keys/key_unknown/responses"), 404, "not_found");
  });

  test("a previous_response_id chain is stored once, each turn only what it added; deleting a turn in the middle makes continuing after it a 409, never a 500", async () => {
    const node = await FakeAgent.connect({ name: "chain-node", models: [{ id: "chain-chat", state: "loaded" }] });
    onTestFinished(() => node.close());
    node.autoAnswer((frame) => node.complete(frame.id, "ok"));
    const key = await createKey({ name: "chain-keeper" });
    const keyId = ListOf(KeyRecord).parse(await (await admin("GET", "/keys")).json()).data.find((record) => record.name === "chain-keeper")!.id;
    const turn = async (previous: string | undefined, input: string) => {
      const response = await withKey(key, "/v1/responses", { model: "chain-chat", input, ...(previous === undefined ? {} : { previous_response_id: previous }) });
      expect(response.status).toBe(200);
      return ((await response.json()) as { id: string }).id;
    };
    const ids: string[] = [];
    for (let index = 0; index < 6; index += 1) ids.push(await turn(ids.at(-1), `${index}`.repeat(200_000)));
    // Copied whole at each turn this chain would take 200 + 400 + … + 1200 KB = 4.2 MB (past the tests' 3 MB share).
    const usage = StoredResponsesUsage.parse(await (await admin("GET", `/keys/${keyId}/responses`)).json());
    expect(usage.count).toBe(6);
    expect(usage.bytes).toBeLessThan(6 * 200_000 + 60_000);
    // The node was sent the whole conversation, and the last response lists it as its input.
    const last = node.received.filter((frame) => frame.type === "request").at(-1)!;
    expect(JSON.stringify(last)).toContain("5".repeat(200_000));
    expect(JSON.stringify(last)).toContain("0".repeat(200_000));
    const read = (path: string) => exports.default.fetch(`http://gateway.test${path}`, { headers: { authorization: `Bearer ${key}` } });
    const items = (await (await read(`/v1/responses/${ids[5]}/input_items?order=asc&limit=100`)).json()) as { data: Array<{ role?: string }> };
    expect(items.data.filter((item) => item.role === "user")).toHaveLength(6);

    // Deleting the third: the later ones still read, but their conversation cannot be rebuilt.
    const deleted = await exports.default.fetch(`http://gateway.test/v1/responses/${ids[2]}`, { method: "DELETE", headers: { authorization: `Bearer ${key}` } });
    expect(deleted.status).toBe(200);
    expect((await read(`/v1/responses/${ids[5]}`)).status).toBe(200);
    await expectError(await read(`/v1/responses/${ids[5]}/input_items`), 409, "conversation_incomplete");
    await expectError(await withKey(key, "/v1/responses", { model: "chain-chat", input: "more", previous_response_id: ids[5] }), 409, "conversation_incomplete");
    await expectError(await withKey(key, "/api/v1/chat", { model: "chain-chat", input: "more", previous_response_id: ids[4] }), 409, "conversation_incomplete");
    // Before the deleted one, the chain is whole.
    expect(await turn(ids[1], "still here")).toMatch(/^resp_/);
  });
});
