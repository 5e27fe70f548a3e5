import { describe, expect, test } from "vitest";
import { env } from "cloudflare:workers";
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { CLOSE_CODES, PROTOCOL_VERSION } from "../../shared/protocol/frames.ts";
import { FleetStats } from "../../shared/gateway-admin/admin-schemas.ts";
import { ModelList } from "../../shared/protocol/model-schemas.ts";
import { ChatCompletion } from "../../shared/openai-completions/completion-schemas.ts";
import { fleetStub, nodeStub } from "../env.ts";
import { TEST_BINDINGS } from "../test/bindings.ts";
import {
  ADMIN_TOKEN,
  api,
  chatBody,
  eventually,
  FakeAgent,
  GatewayClosed,
  NODE_TOKEN,
  dialGateway,
  result,
  statusOf,
  fakeAgentsPerTest,
  type RequestFrame,
} from "../test/fake-agent.ts";

const agent = fakeAgentsPerTest();

/** Sends a chat and returns which agent got the request frame, answering it. */
async function routeOnce(model: string, candidates: FakeAgent[]): Promise<{ agent: FakeAgent; body: ChatCompletion }> {
  const pending = api("/api/v0/chat/completions", chatBody(model));
  const frame = await Promise.any(candidates.map(async (candidate) => ({ candidate, frame: await candidate.nextRequest() })));
  frame.candidate.complete(frame.frame.id, `from ${frame.candidate.name}`);
  const response = await pending;
  expect(response.status).toBe(200);
  return { agent: frame.candidate, body: ChatCompletion.parse(await response.json()) };
}

async function sse(response: Response): Promise<{ events: Array<Record<string, unknown>>; done: boolean }> {
  const text = await response.text();
  const events: Array<Record<string, unknown>> = [];
  let done = false;
  for (const block of text.split("\n\n")) {
    const data = block.startsWith("data: ") ? block.slice(6) : "";
    if (data === "[DONE]") done = true;
    else if (data !== "") events.push(JSON.parse(data) as Record<string, unknown>);
  }
  return { events, done };
}

const adminStats = async () => FleetStats.parse(await (await api("/admin/stats", undefined, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json());

const adminNodes = async () =>
  ((await (await api("/admin/nodes", undefined, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as {
    data: Array<{ name: string; online: boolean; in_flight: number; models: Array<{ id: string; state: string }> }>;
  }).data;

describe("routing", () => {
  test("a chat goes to the node that has the model loaded with a free slot, not to a faster node that would have to load it", async () => {
    const warm = await agent({ name: "warm-1", models: [{ id: "route-a", state: "loaded" }], speed: { "route-a": 10 } });
    const cold = await agent({ name: "cold-1", models: [{ id: "route-a" }], speed: { "route-a": 1000 } });
    const { agent: chosen, body } = await routeOnce("route-a", [warm, cold]);
    expect(chosen).toBe(warm);
    expect(body.choices[0]?.message.content).toBe("from warm-1");
    expect(body.gateway).toMatchObject({ node: "warm-1", retries: 0 });
  });

  // Then the faster one, as the gateway measured it: gateway/test/hardening-round-two.test.ts.
  test("among nodes with the model loaded the least busy one wins, whatever speed it claims", async () => {
    const busy = await agent({ name: "busy-2", models: [{ id: "route-b", state: "loaded" }], busy: { "route-b": 1 }, speed: { "route-b": 900 } });
    const idle = await agent({ name: "idle-2", models: [{ id: "route-b", state: "loaded" }], speed: { "route-b": 100 } });
    expect((await routeOnce("route-b", [busy, idle])).agent).toBe(idle);
  });

  test("concurrent requests spread over two equal nodes, and in_flight shows it", async () => {
    const a = await agent({ name: "spread-a", models: [{ id: "route-d", state: "loaded" }] });
    const b = await agent({ name: "spread-b", models: [{ id: "route-d", state: "loaded" }] });
    const first = api("/v1/chat/completions", chatBody("route-d"));
    const second = api("/v1/chat/completions", chatBody("route-d"));
    const [frameA, frameB] = await Promise.all([a.nextRequest(), b.nextRequest()]);
    const nodes = await adminNodes();
    expect(nodes.find((node) => node.name === "spread-a")?.in_flight).toBe(1);
    expect(nodes.find((node) => node.name === "spread-b")?.in_flight).toBe(1);
    a.complete(frameA.id, "a");
    b.complete(frameB.id, "b");
    expect((await first).status).toBe(200);
    expect((await second).status).toBe(200);
  });

  test("when no node has the model loaded, it is placed on the least busy node that holds it (JIT)", async () => {
    const loaded = await agent({ name: "jit-busy", models: [{ id: "jit-other", state: "loaded" }, { id: "route-e" }], busy: { "jit-other": 2 } });
    const idle = await agent({ name: "jit-idle", models: [{ id: "route-e" }] });
    expect((await routeOnce("route-e", [loaded, idle])).agent).toBe(idle);
  });

  test("a model no node holds is a 404 model_not_found that lists the models that exist", async () => {
    await agent({ name: "lonely", models: [{ id: "route-f", state: "loaded" }] });
    const response = await api("/v1/chat/completions", chatBody("nobody-has-this"));
    expect(response.status).toBe(404);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("model_not_found");
    expect(body.error.message).toContain("route-f");
  });

  test("a model that only offline nodes hold is a 503 no_capacity with Retry-After that names them, not a 404", async () => {
    const sleeper = await agent({ name: "asleep", models: [{ id: "route-off", state: "loaded" }] });
    sleeper.close();
    await eventually(async () => (await adminNodes()).some((node) => node.name === "asleep" && !node.online));
    const response = await api("/v1/chat/completions", chatBody("route-off"));
    expect(response.status).toBe(503);
    expect(response.headers.get("retry-after")).toBe("5");
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("no_capacity");
    expect(body.error.message).toContain("asleep");
  });

  test("with every slot busy a request waits for one; when none frees up in time it gets 503 with Retry-After", async () => {
    const node = await agent({ name: "full", slots: 1, models: [{ id: "route-g", state: "loaded" }] });
    const first = api("/v1/chat/completions", chatBody("route-g"));
    const firstFrame = await node.nextRequest();
    // Waits, then runs when the first finishes.
    const second = api("/v1/chat/completions", chatBody("route-g"));
    await eventually(async () => (await adminStats()).queue_depth === 1);
    node.complete(firstFrame.id, "one");
    const secondFrame = await node.nextRequest();
    node.complete(secondFrame.id, "two");
    expect((await first).status).toBe(200);
    const secondBody = ChatCompletion.parse(await (await second).json());
    expect(secondBody.gateway?.queue_ms).toBeGreaterThan(0);

    // Nothing frees the slot this time: the bounded wait ends in 503. It waited (it was queued),
    // and what ended it was the queue's timeout (LMGATE_QUEUE_TIMEOUT_MS, 600 ms here), not a full queue.
    const blocker = api("/v1/chat/completions", chatBody("route-g"));
    const blockerFrame = await node.nextRequest();
    const refusal = api("/v1/chat/completions", chatBody("route-g"));
    await eventually(async () => (await adminStats()).queue_depth === 1);
    const refused = await refusal;
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("2");
    expect(((await refused.json()) as { error: { code: string; message: string } }).error).toMatchObject({
      code: "no_capacity",
      message: 'No slot for "route-g" became free within 0.6 s.',
    });
    expect((await adminStats()).queue_depth).toBe(0);
    node.complete(blockerFrame.id, "done");
    expect((await blocker).status).toBe(200);
  });
});

describe("cache-aware routing", () => {
  test("a conversation's next turn goes back to the node that has its earlier turns, not round-robin to the other", async () => {
    const a = await agent({ name: "cache-a", models: [{ id: "cache-m", state: "loaded" }] });
    const b = await agent({ name: "cache-b", models: [{ id: "cache-m", state: "loaded" }] });
    const messages = [
      { role: "system", content: "You answer in one word." },
      { role: "user", content: "Colour of the sky?" },
    ];
    for (const node of [a, b]) node.autoAnswer((frame) => node.complete(frame.id, "Blue"));
    const send = async (history: unknown[]) => {
      const response = await api("/v1/chat/completions", { model: "cache-m", messages: history, max_tokens: 4 });
      return ChatCompletion.parse(await response.json()).gateway?.node;
    };
    const first = await send(messages);
    // Equal load: without the cache the next request would go to the node that waited longest.
    for (let turn = 0; turn < 3; turn++) {
      messages.push({ role: "assistant", content: "Blue" }, { role: "user", content: `And now (${turn})?` });
      expect(await send(messages)).toBe(first);
    }
    expect(await send([{ role: "user", content: "A new conversation" }])).not.toBe(first);
  });
});

describe("scale-out and placement", () => {
  const GIB = 2 ** 30;
  const roomy = { ram_free_bytes: 8 * GIB, vram_free_bytes: null };
  const cramped = { ram_free_bytes: 1 * GIB, vram_free_bytes: null };
  const footprints = { "scale-a": { ram_bytes: 2 * GIB, vram_bytes: 0 } };

  test("a request that would queue on the busy node loads a second copy on an idle holder with room, and both serve", async () => {
    const warm = await agent({ name: "scale-warm", slots: 1, models: [{ id: "scale-a", state: "loaded" }], memory: roomy, footprints });
    const idle = await agent({ name: "scale-idle", slots: 2, models: [{ id: "scale-a" }], memory: roomy, footprints });
    const first = api("/v1/chat/completions", chatBody("scale-a"));
    const firstFrame = await warm.nextRequest();
    // Every slot of the loaded copy is busy: the next two go to the other holder (the first loads it there).
    const more = [api("/v1/chat/completions", chatBody("scale-a")), api("/v1/chat/completions", chatBody("scale-a"))];
    const frames = [await idle.nextRequest(), await idle.nextRequest()];
    for (const frame of frames) idle.complete(frame.id, "from the new copy");
    warm.complete(firstFrame.id, "from the first copy");
    const bodies = await Promise.all([first, ...more].map(async (response) => ChatCompletion.parse(await (await response).json())));
    expect(bodies.map((body) => body.gateway?.node).sort()).toEqual(["scale-idle", "scale-idle", "scale-warm"]);
    expect(bodies.every((body) => body.gateway?.queue_ms === 0)).toBe(true);
  });

  test("a holder without the memory free for the model gets no copy: the request waits for the loaded one", async () => {
    const warm = await agent({ name: "fit-warm", slots: 1, models: [{ id: "scale-a", state: "loaded" }], memory: roomy, footprints });
    const full = await agent({ name: "fit-full", models: [{ id: "scale-a" }], memory: cramped, footprints });
    const first = api("/v1/chat/completions", chatBody("scale-a"));
    const firstFrame = await warm.nextRequest();
    const second = api("/v1/chat/completions", chatBody("scale-a"));
    // Placed: it waits in the queue for the loaded copy, rather than loading one on the full holder.
    await eventually(async () => (await adminStats()).queue_depth === 1);
    expect(full.received.filter((frame) => frame.type === "request")).toEqual([]);
    warm.complete(firstFrame.id, "one");
    const secondFrame = await warm.nextRequest();
    warm.complete(secondFrame.id, "two");
    expect((await first).status).toBe(200);
    expect(ChatCompletion.parse(await (await second).json()).gateway).toMatchObject({ node: "fit-warm" });
    expect(full.received.filter((frame) => frame.type === "request")).toEqual([]);
  });

  test("a model that fits on no holder is a 503 that says how much memory it needs, and nothing is sent to load it", async () => {
    const full = await agent({ name: "fit-none", models: [{ id: "scale-a" }], memory: cramped, footprints });
    const response = await api("/v1/chat/completions", chatBody("scale-a"));
    expect(response.status).toBe(503);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("no_capacity");
    expect(body.error.message).toContain("fit-none needs 2.0 GiB RAM with 1.0 GiB free");
    expect(full.received.filter((frame) => frame.type === "request")).toEqual([]);
  });

  test("idle loaded models count as room: the agent unloads them for the one asked for", async () => {
    const footprintsBoth = { ...footprints, "scale-b": { ram_bytes: 1.5 * GIB, vram_bytes: 0 } };
    const node = await agent({ name: "fit-evict", models: [{ id: "scale-a" }, { id: "scale-b", state: "loaded" }], memory: cramped, footprints: footprintsBoth });
    expect((await routeOnce("scale-a", [node])).agent).toBe(node);
  });

  test("/admin/nodes shows each node's free memory and what its models take", async () => {
    await agent({ name: "fit-shown", models: [{ id: "scale-a" }], memory: roomy, footprints });
    const shown = (await (await api("/admin/nodes", undefined, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as {
      data: Array<{ name: string; memory?: unknown; footprints?: unknown }>;
    };
    expect(shown.data.find((node) => node.name === "fit-shown")).toMatchObject({ memory: roomy, footprints });
  });
});

describe("models", () => {
  test("the model list is the union of the nodes' models, loaded if loaded anywhere, with the nodes that hold each", async () => {
    await agent({ name: "cat-a", models: [{ id: "cat-x", state: "loaded" }, { id: "cat-y" }], speed: { "cat-x": 42 } });
    await agent({ name: "cat-b", models: [{ id: "cat-x" }] });
    const list = ModelList.parse(await (await api("/api/v0/models")).json());
    const x = list.data.find((model) => model.id === "cat-x");
    expect(x?.state).toBe("loaded");
    expect(x?.loaded_context_length).toBe(1024);
    expect(x?.nodes).toEqual([
      { node: "cat-a", state: "loaded", slots: 2, slots_busy: 0, tokens_per_second: 42, time_to_first_token: 0.01 },
      { node: "cat-b", state: "not-loaded", slots: 2, slots_busy: 0, tokens_per_second: null, time_to_first_token: null },
    ]);
    const y = list.data.find((model) => model.id === "cat-y");
    expect(y?.state).toBe("not-loaded");
    expect(y?.loaded_context_length).toBeUndefined();
    const openai = (await (await api("/v1/models/cat-x")).json()) as { id: string; context_length: number };
    expect(openai).toMatchObject({ id: "cat-x", context_length: 1024 });
  });

  test("a status frame updates the registry: a model loaded after hello shows as loaded", async () => {
    const node = await agent({ name: "status-a", models: [{ id: "status-m" }] });
    node.sendFrame({ type: "status", status: statusOf({ models: [{ id: "status-m", state: "loaded" }] }) });
    await eventually(async () => {
      const list = ModelList.parse(await (await api("/api/v0/models")).json());
      return list.data.find((model) => model.id === "status-m")?.state === "loaded";
    });
  });
});

describe("load and unload", () => {
  test("a load goes to a holder that has not loaded the model; an unload reaches every node that has it loaded", async () => {
    const warm = await agent({ name: "lu-warm", models: [{ id: "lu-m", state: "loaded" }] });
    const cold = await agent({ name: "lu-cold", models: [{ id: "lu-m" }] });
    cold.autoAnswer((frame) => {
      cold.sendFrame({ type: "result", id: frame.id, result: { type: "llm", instance_id: "lu-m", load_time_seconds: 0.1, status: "loaded" } });
      cold.sendFrame({ type: "status", status: statusOf({ models: [{ id: "lu-m", state: "loaded" }] }) });
    });
    const loaded = await api("/api/v1/models/load", { model: "lu-m" });
    expect(await loaded.json()).toMatchObject({ instance_id: "lu-m", status: "loaded" });
    expect(warm.received.some((frame) => frame.type === "request")).toBe(false);
    expect(cold.received.flatMap((frame) => (frame.type === "request" ? [frame.operation.op] : []))).toEqual(["load"]);

    await eventually(async () => ModelList.parse(await (await api("/api/v0/models")).json()).data.find((m) => m.id === "lu-m")?.nodes?.every((n) => n.state === "loaded") === true);
    for (const node of [warm, cold]) {
      node.autoAnswer((frame) => node.sendFrame({ type: "result", id: frame.id, result: { instance_id: "lu-m" } }));
    }
    const unloaded = await api("/api/v1/models/unload", { instance_id: "lu-m" });
    expect(await unloaded.json()).toEqual({ instance_id: "lu-m", drained: { generations: 0, waited_seconds: expect.any(Number), cut: 0 } });
    for (const node of [warm, cold]) {
      expect(node.received.filter((frame) => frame.type === "request" && frame.operation.op === "unload")).toHaveLength(1);
    }
  });
});

describe("relay", () => {
  test("embeddings go to a holder and come back with the gateway's info", async () => {
    const node = await agent({ name: "embed-a", models: [{ id: "embed-m", state: "loaded", type: "embeddings" }] });
    node.autoAnswer((frame) => {
      node.sendFrame({
        type: "result",
        id: frame.id,
        result: { model: "embed-m", embeddings: [[0.5, 0.25]], usage: { prompt_tokens: 2, total_tokens: 2 } },
      });
    });
    const response = await api("/v1/embeddings", { model: "embed-m", input: "hello" });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { data: Array<{ embedding: number[] }>; gateway: { node: string } };
    expect(body.data[0]?.embedding).toEqual([0.5, 0.25]);
    expect(body.gateway.node).toBe("embed-a");
  });

  test("a node's error reaches the client with its status and OpenAI shape", async () => {
    const node = await agent({ name: "err-a", models: [{ id: "err-m", state: "loaded" }] });
    node.autoAnswer((frame) =>
      node.sendFrame({
        type: "error",
        id: frame.id,
        status: 400,
        body: { error: { message: "The prompt is too long", type: "invalid_request_error", param: "messages", code: "context_length_exceeded" } },
      }),
    );
    const response = await api("/v1/chat/completions", chatBody("err-m"));
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("context_length_exceeded");
  });

  test("a stream relays start, deltas and done as SSE, and credit (ack frames) flows back to the node", async () => {
    const node = await agent({ name: "stream-a", models: [{ id: "stream-m", state: "loaded" }] });
    const pending = api("/api/v0/chat/completions", chatBody("stream-m", { stream: true }));
    const frame = await node.nextRequest();
    expect(frame.window).toBe(32);
    node.sendFrame({ type: "events", id: frame.id, events: [{ type: "start", model: "stream-m" }] });
    for (let i = 0; i < 20; i++) node.sendFrame({ type: "events", id: frame.id, events: [{ type: "delta", text: `t${i} ` }] });
    node.sendFrame({ type: "events", id: frame.id, events: [{ type: "done", result: result() }] });
    const { events, done } = await sse(await pending);
    expect(done).toBe(true);
    const text = events.map((event) => ((event.choices as Array<{ delta?: { content?: string } }>)[0]?.delta?.content ?? "")).join("");
    expect(text).toBe(Array.from({ length: 20 }, (_, i) => `t${i} `).join(""));
    expect(events.at(-1)?.gateway).toMatchObject({ node: "stream-a" });
    const acked = node.received.filter((received) => received.type === "ack" && received.id === frame.id);
    expect(acked.length).toBeGreaterThan(0);
  });

  test("a generation's request frame says whether its client streams, so the node batches for it", async () => {
    const node = await agent({ name: "streams-a", models: [{ id: "streams-m", state: "loaded" }] });
    const streamed = api("/v1/chat/completions", chatBody("streams-m", { stream: true }));
    const streamedFrame = await node.nextRequest();
    expect(streamedFrame.stream).toBe(true);
    node.complete(streamedFrame.id, "ok");
    expect((await sse(await streamed)).done).toBe(true);
    const whole = api("/v1/chat/completions", chatBody("streams-m"));
    const wholeFrame = await node.nextRequest();
    expect(wholeFrame.stream).toBe(false);
    node.complete(wholeFrame.id, "ok");
    expect(ChatCompletion.parse(await (await whole).json()).choices[0]?.message.content).toBe("ok");
  });

  test("when the client goes away mid-stream the node gets a cancel frame", async () => {
    const node = await agent({ name: "cancel-a", models: [{ id: "cancel-m", state: "loaded" }] });
    const controller = new AbortController();
    const response = api("/v1/chat/completions", chatBody("cancel-m", { stream: true }), { signal: controller.signal });
    const frame = await node.nextRequest();
    node.sendFrame({ type: "events", id: frame.id, events: [{ type: "start", model: "cancel-m" }, { type: "delta", text: "x" }] });
    const reader = (await response).body!.getReader();
    await reader.read();
    await reader.cancel();
    const cancel = await node.next((received) => received.type === "cancel");
    expect(cancel).toEqual({ type: "cancel", id: frame.id });
  });
});

describe("failover", () => {
  test("a node that drops before the first delta: the request is retried on another node, invisibly", async () => {
    const first = await agent({ name: "fo-first", models: [{ id: "fo-m", state: "loaded" }], speed: { "fo-m": 1000 } });
    const second = await agent({ name: "fo-second", models: [{ id: "fo-m", state: "loaded" }], speed: { "fo-m": 10 } });
    const pending = api("/api/v0/chat/completions", chatBody("fo-m"));
    const frame = await first.nextRequest();
    first.close();
    const retried = await second.nextRequest();
    expect(retried.operation).toEqual(frame.operation);
    second.complete(retried.id, "survived");
    const body = ChatCompletion.parse(await (await pending).json());
    expect(body.choices[0]?.message.content).toBe("survived");
    expect(body.gateway).toMatchObject({ node: "fo-second", retries: 1 });
  });

  test("a stream whose node drops after start but before any text moves on, and the client sees one clean stream", async () => {
    const first = await agent({ name: "fos-first", models: [{ id: "fos-m", state: "loaded" }], speed: { "fos-m": 1000 } });
    const second = await agent({ name: "fos-second", models: [{ id: "fos-m", state: "loaded" }], speed: { "fos-m": 10 } });
    const pending = api("/v1/chat/completions", chatBody("fos-m", { stream: true }));
    const frame = await first.nextRequest();
    first.sendFrame({ type: "events", id: frame.id, events: [{ type: "start", model: "fos-m" }] });
    const response = await pending;
    expect(response.status).toBe(200);
    first.close();
    const retried = await second.nextRequest();
    second.complete(retried.id, "survived");
    const { events, done } = await sse(response);
    expect(done).toBe(true);
    const deltas = events.map((event) => (event.choices as Array<{ delta?: { role?: string; content?: string } }>)[0]?.delta);
    expect(deltas.filter((delta) => delta?.role === "assistant")).toHaveLength(1);
    expect(deltas.map((delta) => delta?.content ?? "").join("")).toBe("survived");
    expect(events.at(-1)?.gateway).toMatchObject({ node: "fos-second", retries: 1 });
  });

  test("a node that drops after the first delta: the stream ends with an error event, not [DONE]", async () => {
    const node = await agent({ name: "drop-a", models: [{ id: "drop-m", state: "loaded" }] });
    await agent({ name: "drop-b", models: [{ id: "drop-m", state: "loaded" }], busy: { "drop-m": 2 } });
    const pending = api("/v1/chat/completions", chatBody("drop-m", { stream: true }));
    const frame = await node.nextRequest();
    node.sendFrame({ type: "events", id: frame.id, events: [{ type: "start", model: "drop-m" }, { type: "delta", text: "partial" }] });
    const response = await pending;
    expect(response.status).toBe(200);
    node.close();
    const { events, done } = await sse(response);
    expect(done).toBe(false);
    const last = events.at(-1) as { error?: { code: string; message: string } };
    expect(last.error?.code).toBe("node_disconnected");
    expect(last.error?.message).toContain("drop-a");
  });

  test("a node answering 503 before any text is skipped for another node", async () => {
    const refusing = await agent({ name: "r503-a", models: [{ id: "r503-m", state: "loaded" }], speed: { "r503-m": 900 } });
    const willing = await agent({ name: "r503-b", models: [{ id: "r503-m", state: "loaded" }], speed: { "r503-m": 9 } });
    refusing.autoAnswer((frame) =>
      refusing.sendFrame({
        type: "error",
        id: frame.id,
        status: 503,
        body: { error: { message: "queue full", type: "server_error", param: null, code: "no_capacity" } },
      }),
    );
    willing.autoAnswer((frame) => willing.complete(frame.id, "ok"));
    const body = ChatCompletion.parse(await (await api("/v1/chat/completions", chatBody("r503-m"))).json());
    expect(body.gateway).toMatchObject({ node: "r503-b", retries: 1 });
  });
});

describe("node connections", () => {
  test("a bad frame closes only that node's socket (1008); the fleet and the other nodes carry on", async () => {
    const bad = await agent({ name: "bad-a", models: [{ id: "bad-m", state: "loaded" }] });
    const good = await agent({ name: "good-a", models: [{ id: "bad-m", state: "loaded" }] });
    bad.ws.send(JSON.stringify({ type: "events", id: "x", events: [{ type: "delta", text: 42 }] }));
    expect((await bad.closed).code).toBe(CLOSE_CODES.badFrame);
    good.autoAnswer((frame) => good.complete(frame.id, "still here"));
    const body = ChatCompletion.parse(await (await api("/v1/chat/completions", chatBody("bad-m"))).json());
    expect(body.gateway?.node).toBe("good-a");
  });

  test("garbage that is not JSON, and a frame before hello, close the socket too", async () => {
    const node = await agent({ name: "garbage-a", models: [{ id: "garbage-m" }] });
    node.ws.send("{not json");
    expect((await node.closed).code).toBe(CLOSE_CODES.badFrame);

    const response = await dialGateway(NODE_TOKEN);
    const ws = response.webSocket!;
    const closed = new Promise<number>((resolve) => ws.addEventListener("close", (event) => resolve(event.code)));
    ws.accept();
    ws.send(JSON.stringify({ type: "status", status: statusOf({ models: [] }) }));
    expect(await closed).toBe(CLOSE_CODES.badFrame);
  });

  test("an agent speaking another protocol version is closed with a reason that says so", async () => {
    const refused = await FakeAgent.connect({ name: "future", models: [], protocol: PROTOCOL_VERSION + 1 }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(GatewayClosed);
    expect((refused as GatewayClosed).code).toBe(CLOSE_CODES.unsupportedProtocol);
    expect((refused as GatewayClosed).message).toContain(`this gateway speaks protocol ${PROTOCOL_VERSION}`);
    const response = await api("/health");
    expect(response.status).toBe(200);
    const nodes = await adminNodes();
    expect(nodes.find((node) => node.name === "future")).toBeUndefined();
  });

  test("a node reconnecting under the same name replaces its old connection", async () => {
    const old = await agent({ name: "twice", models: [{ id: "twice-m" }] });
    await agent({ name: "twice", models: [{ id: "twice-m", state: "loaded" }] });
    expect((await old.closed).code).toBe(CLOSE_CODES.replaced);
    const online = (await adminNodes()).filter((node) => node.name === "twice" && node.online);
    expect(online).toHaveLength(1);
  });

  test("a silent node's object closes its socket (4000) at its next sweep past the heartbeat timeout, and it leaves routing", async () => {
    const silent = await agent({ name: "silent-a", models: [{ id: "silent-m", state: "loaded" }], speed: { "silent-m": 999 } });
    const alive = await agent({ name: "alive-a", models: [{ id: "silent-m", state: "loaded" }], speed: { "silent-m": 1 } });
    silent.stopHeartbeat();
    // The sweep runs once per heartbeat timeout: run it again and again until the timeout has
    // passed and it closes the socket, rather than sleep past the timeout and hope.
    let closed = false;
    void silent.closed.then(() => (closed = true));
    await eventually(async () => {
      await runDurableObjectAlarm(nodeStub(env, "silent-a"));
      return closed;
    }, 5 * Number(TEST_BINDINGS.LMGATE_HEARTBEAT_TIMEOUT_MS));
    expect((await silent.closed).code).toBe(CLOSE_CODES.heartbeatTimeout);
    await eventually(async () => (await adminNodes()).find((node) => node.name === "silent-a")?.online === false);
    expect((await routeOnce("silent-m", [silent, alive])).agent).toBe(alive);
  });

  test("the registry survives hibernation: models and routing work after the Fleet is evicted", async () => {
    const node = await agent({ name: "sleeper", models: [{ id: "sleep-m", state: "loaded" }], speed: { "sleep-m": 7 } });
    await evictDurableObject(fleetStub(env), { webSockets: "hibernate" });
    const list = ModelList.parse(await (await api("/api/v0/models")).json());
    expect(list.data.find((model) => model.id === "sleep-m")?.nodes?.[0]).toMatchObject({ node: "sleeper", tokens_per_second: 7 });
    node.autoAnswer((frame: RequestFrame) => node.complete(frame.id, "awake"));
    const body = ChatCompletion.parse(await (await api("/v1/chat/completions", chatBody("sleep-m"))).json());
    expect(body.choices[0]?.message.content).toBe("awake");
  });
});
