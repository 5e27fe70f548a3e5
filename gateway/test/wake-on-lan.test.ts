import Anthropic from "@anthropic-ai/sdk";
import { exports } from "cloudflare:workers";
import OpenAI from "openai";
import { describe, expect, test } from "vitest";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import { FleetStats, ListOf, NodeSummary, WakeAttempt } from "../../shared/gateway-admin/admin-schemas.ts";
import { ChatCompletion } from "../../shared/openai-completions/completion-schemas.ts";
import type { WakeInfo } from "../../shared/protocol/frames.ts";
import { ADMIN_TOKEN, API_KEY, api, chatBody, eventually, fakeAgentsPerTest, type FakeAgent, type RequestFrame } from "./fake-agent.ts";
import { TEST_BINDINGS } from "./bindings.ts";

/**
 * README, "Waking a sleeping machine": a request for a model that only an offline, wakeable node
 * holds makes a peer on its network send the magic packet, waits for the node's hello and is then
 * served there; the admin can wake a node by hand. Fake nodes over real WebSockets to the real
 * Worker and Fleet in workerd (the real agents and the packet itself: test/e2e/wake-on-lan.test.ts).
 */

const agent = fakeAgentsPerTest();
const admin = (path: string, method = "GET") => api(path, undefined, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
const WAKE_TIMEOUT_MS = Number(TEST_BINDINGS.LMGATE_WAKE_TIMEOUT_MS);
const MAX_QUEUE = Number(TEST_BINDINGS.LMGATE_MAX_QUEUE);

const sleeper = (mac: string, broadcast = "192.0.2.255"): WakeInfo => ({ interfaces: [{ mac, broadcast }], wakeable: true, wakes_peers: false });
const peer = (broadcast = "192.0.2.255"): WakeInfo => ({ interfaces: [{ mac: "02:00:00:00:00:aa", broadcast }], wakeable: false, wakes_peers: true });

/** A node that holds `model`, says goodbye (its machine sleeps) and leaves. */
async function asleep(name: string, model: string, wake: WakeInfo): Promise<void> {
  const node = await agent({ name, models: [{ id: model }], wake });
  node.sendFrame({ type: "goodbye", reason: "sleep" });
  node.close();
  await eventually(async () => (await nodes()).find((summary) => summary.name === name)?.online === false);
}

const adminStats = async () => FleetStats.parse(await (await admin("/admin/stats")).json());

async function nodes(): Promise<NodeSummary[]> {
  return ListOf(NodeSummary).parse(await (await admin("/admin/nodes")).json()).data;
}

/** The peer's wake call: answered like an agent that sent the packet. */
async function answerWake(node: FakeAgent): Promise<RequestFrame> {
  const frame = await node.nextRequest();
  if (frame.operation.op !== "wake") throw new Error(`expected a wake call, got ${frame.operation.op}`);
  node.sendFrame({ type: "result", id: frame.id, result: { ...frame.operation.body, ports: [9, 7], sent_at: Date.now() } });
  return frame;
}

describe("a request wakes the sleeping node that holds its model", () => {
  test("the peer on its network is asked to send the packet; the request waits for the node's hello and is served there", async () => {
    await asleep("wk-pc", "wk-m", sleeper("02:00:00:00:00:01"));
    const summary = (await nodes()).find((node) => node.name === "wk-pc");
    expect(summary).toMatchObject({ online: false, left: "sleep", wake: { wakeable: true } });
    const lan = await agent({ name: "wk-pi", models: [], wake: peer() });

    const pending = api("/v1/chat/completions", chatBody("wk-m"));
    const wake = await answerWake(lan);
    expect(wake.operation.body).toEqual({ mac: "02:00:00:00:00:01", broadcast: "192.0.2.255" });

    // A second request for the same node joins the wake under way: one packet per node.
    const second = api("/v1/chat/completions", chatBody("wk-m"));
    const pc = await agent({ name: "wk-pc", models: [{ id: "wk-m", state: "loaded" }], wake: sleeper("02:00:00:00:00:01") });
    pc.autoAnswer((frame) => pc.complete(frame.id, "awake"));
    for (const response of [await pending, await second]) {
      expect(response.status).toBe(200);
      expect(ChatCompletion.parse(await response.json()).choices[0]?.message.content).toBe("awake");
    }
    expect(lan.received.filter((frame) => frame.type === "request")).toHaveLength(1);
    const back = (await nodes()).find((node) => node.name === "wk-pc");
    expect(back?.wake?.last).toMatchObject({ peer: "wk-pi", back_at: expect.any(String), failure: null });
  });

  test("a node that does not come back in time: 503 wake_timeout naming the node and the peer that sent the packet", async () => {
    await asleep("wl-pc", "wl-m", sleeper("02:00:00:00:00:02"));
    const lan = await agent({ name: "wl-pi", models: [], wake: peer() });
    const pending = api("/v1/chat/completions", chatBody("wl-m"));
    await answerWake(lan);
    const response = await pending;
    expect(response.status).toBe(503);
    const { error } = ErrorBody.parse(await response.json());
    expect(error.code).toBe("wake_timeout");
    expect(error.message).toContain(`Node "wl-pc" did not come back within ${Math.round(WAKE_TIMEOUT_MS / 1000)} s of the wake packet wl-pi sent`);
  });

  test("no peer on the sleeping node's network: 503 no_wake_peer at once, naming the node and its network; no packet asked of a peer elsewhere", async () => {
    await asleep("wn-pc", "wn-m", sleeper("02:00:00:00:00:03", "192.0.2.255"));
    const elsewhere = await agent({ name: "wn-pi", models: [], wake: peer("198.51.100.255") });
    const response = await api("/v1/chat/completions", chatBody("wn-m"));
    expect(response.status).toBe(503);
    const { error } = ErrorBody.parse(await response.json());
    expect(error.code).toBe("no_wake_peer");
    expect(error.message).toContain(`Node "wn-pc" is offline and no online node on its network (192.0.2.255) may send wake packets`);
    expect(elsewhere.received.filter((frame) => frame.type === "request")).toHaveLength(0);
  });

  test("the peer cannot send the packet: 503 wake_failed naming the node, the peer and its error", async () => {
    await asleep("wf-pc", "wf-m", sleeper("02:00:00:00:00:08"));
    const lan = await agent({ name: "wf-pi", models: [], wake: peer() });
    const pending = api("/v1/chat/completions", chatBody("wf-m"));
    const frame = await lan.nextRequest();
    lan.sendFrame({ type: "error", id: frame.id, status: 500, body: { error: { message: "EACCES sending to 192.0.2.255", type: "server_error", param: null, code: null } } });
    const response = await pending;
    expect(response.status).toBe(503);
    const { error } = ErrorBody.parse(await response.json());
    expect(error.code).toBe("wake_failed");
    expect(error.message).toContain(`No peer could send the wake packet for node "wf-pc": wf-pi: EACCES sending to 192.0.2.255`);
  });

  test("a node whose owner did not allow waking, or that reported no Wake-on-LAN, is not woken: the 503 says so, with the plain no_capacity", async () => {
    await asleep("wo-pc", "wo-m", { ...sleeper("02:00:00:00:00:04"), wakeable: false });
    const plain = await agent({ name: "wp-pc", models: [{ id: "wp-m" }] });
    plain.close();
    await eventually(async () => (await nodes()).find((summary) => summary.name === "wp-pc")?.online === false);
    const lan = await agent({ name: "wo-pi", models: [], wake: peer() });
    for (const [node, model] of [["wo-pc", "wo-m"], ["wp-pc", "wp-m"]] as const) {
      const response = await api("/v1/chat/completions", chatBody(model));
      expect(response.status).toBe(503);
      const { error } = ErrorBody.parse(await response.json());
      expect(error.code).toBe("no_capacity");
      expect(error.message).toContain(`Node "${node}" cannot be woken: its agent did not report Wake-on-LAN`);
    }
    expect(lan.received.filter((frame) => frame.type === "request")).toHaveLength(0);
  });

  test("the wait counts against the queue's bound: with the queue full of requests waiting for the wake, the next is refused at once", async () => {
    await asleep("wq-pc", "wq-m", sleeper("02:00:00:00:00:09"));
    const lan = await agent({ name: "wq-pi", models: [], wake: peer() });
    const waiting = Array.from({ length: MAX_QUEUE }, () => api("/v1/chat/completions", chatBody("wq-m")));
    await answerWake(lan);
    await eventually(async () => (await adminStats()).queue_depth === MAX_QUEUE);
    const refused = await api("/v1/chat/completions", chatBody("wq-m"));
    expect(refused.status).toBe(503);
    const { error } = ErrorBody.parse(await refused.json());
    expect(error.code).toBe("no_capacity");
    expect(error.message).toContain(`${MAX_QUEUE} requests are already waiting`);
    // The ones that got in are served once the node is back; one packet for all of them.
    const pc = await agent({ name: "wq-pc", models: [{ id: "wq-m", state: "loaded" }], wake: sleeper("02:00:00:00:00:09") });
    pc.autoAnswer((frame) => pc.complete(frame.id, "awake"));
    for (const response of await Promise.all(waiting)) expect(response.status).toBe(200);
    expect(lan.received.filter((frame) => frame.type === "request")).toHaveLength(1);
  });
});

describe("how a node left, as the admin sees it", () => {
  test("a goodbye says on purpose (shutdown or sleep); a socket that just closes is lost (null); online nodes have none", async () => {
    await agent({ name: "wg-on", models: [] });
    for (const [name, reason] of [["wg-stop", "shutdown"], ["wg-nap", "sleep"], ["wg-lost", null]] as const) {
      const node = await agent({ name, models: [], wake: sleeper("02:00:00:00:00:21") });
      if (reason !== null) node.sendFrame({ type: "goodbye", reason });
      node.close();
    }
    await eventually(async () => (await nodes()).filter((node) => node.name.startsWith("wg-") && !node.online).length === 3);
    const left = Object.fromEntries((await nodes()).filter((node) => node.name.startsWith("wg-")).map((node) => [node.name, node.left]));
    expect(left).toEqual({ "wg-on": undefined, "wg-stop": "shutdown", "wg-nap": "sleep", "wg-lost": null });
  });
});

describe("a streamed request waiting for a wake is kept alive with SSE comments", () => {
  const KEEP_ALIVE = ": waiting for a node to take this request\n\n";
  // The official SDKs, calling the Worker in this isolate.
  const sdkFetch = async (input: string | URL | Request, init?: RequestInit) => exports.default.fetch(new Request(input, init));
  const openai = new OpenAI({ baseURL: "http://gateway.test/v1", apiKey: API_KEY, maxRetries: 0, fetch: sdkFetch });
  const anthropic = new Anthropic({ baseURL: "http://gateway.test", apiKey: API_KEY, maxRetries: 0, fetch: sdkFetch });
  const messages = [{ role: "user" as const, content: "hi" }];
  // Two streams wait per wake below: the queue's bound in these tests (a wait counts against it).

  /** The first bytes of a stream that is still waiting, and the rest of it once it ends. */
  async function firstBytes(response: Response): Promise<{ first: string; rest: () => Promise<string> }> {
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    const first = decoder.decode((await reader.read()).value);
    const rest = async () => {
      let text = "";
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += decoder.decode(chunk.value, { stream: true });
      return text;
    };
    return { first, rest };
  }

  /** Wakes `name` (asleep, holding `model`): it says hello and answers every request with "awake". */
  async function comesBack(name: string, model: string, mac: string): Promise<void> {
    const pc = await agent({ name, models: [{ id: model, state: "loaded" }], wake: sleeper(mac) });
    pc.autoAnswer((frame) => pc.complete(frame.id, "awake"));
  }

  test("the 200 and a comment go out while the node wakes, the answer once it is back; the SDKs skip the comments", async () => {
    const lan = await agent({ name: "ws-pi", models: [], wake: peer() });
    await asleep("ws-pc", "ws-m", sleeper("02:00:00:00:00:11"));
    // Each resolves at its response's headers: before the node is back.
    const opened = Promise.all([
      openai.chat.completions.create({ model: "ws-m", messages, stream: true }),
      anthropic.messages.create({ model: "ws-m", max_tokens: 8, messages, stream: true }),
    ]);
    await answerWake(lan);
    const [chat, message] = await opened;
    await comesBack("ws-pc", "ws-m", "02:00:00:00:00:11");
    let chatText = "";
    for await (const chunk of chat) chatText += chunk.choices[0]?.delta.content ?? "";
    expect(chatText).toBe("awake");
    let messageText = "";
    for await (const event of message) if (event.type === "content_block_delta" && event.delta.type === "text_delta") messageText += event.delta.text;
    expect(messageText).toBe("awake");

    await asleep("wu-pc", "wu-m", sleeper("02:00:00:00:00:13"));
    const openedToo = Promise.all([
      openai.responses.create({ model: "wu-m", input: "hi", stream: true }),
      api("/v1/chat/completions", chatBody("wu-m", { stream: true })).then(firstBytes),
    ]);
    await answerWake(lan);
    const [responses, raw] = await openedToo;
    // What the SDKs skipped: the first bytes are a comment line.
    expect(raw.first).toBe(KEEP_ALIVE);
    await comesBack("wu-pc", "wu-m", "02:00:00:00:00:13");
    let responseText = "";
    for await (const event of responses) if (event.type === "response.output_text.delta") responseText += event.delta;
    expect(responseText).toBe("awake");
    const rest = await raw.rest();
    expect(rest).toContain('"content":"awake"');
    expect(rest).toMatch(/data: \[DONE\]\n\n$/);
    expect(lan.received.filter((frame) => frame.type === "request")).toHaveLength(2);
  });

  test("a node that does not come back: the family's own error event ends the stream, and the SDKs throw it", async () => {
    const lan = await agent({ name: "wt-pi", models: [], wake: peer() });
    // Anthropic's SDK throws with the error body as its message: the node's name is quoted in JSON there.
    const failure = (name: string) => new RegExp(`${name}\\W+ did not come back within ${Math.round(WAKE_TIMEOUT_MS / 1000)} s of the wake packet wt-pi sent`);
    const drain = async (stream: AsyncIterable<unknown>) => {
      for await (const _ of stream);
    };
    await asleep("wt-pc", "wt-m", sleeper("02:00:00:00:00:12"));
    const opened = Promise.all([
      openai.chat.completions.create({ model: "wt-m", messages, stream: true }),
      anthropic.messages.create({ model: "wt-m", max_tokens: 8, messages, stream: true }),
    ]);
    await answerWake(lan);
    const [chat, message] = await opened;
    await expect(drain(chat)).rejects.toThrow(failure("wt-pc"));
    await expect(drain(message)).rejects.toThrow(failure("wt-pc"));

    await asleep("wv-pc", "wv-m", sleeper("02:00:00:00:00:14"));
    const openedToo = Promise.all([
      openai.responses.create({ model: "wv-m", input: "hi", stream: true }),
      api("/api/v1/chat", { model: "wv-m", input: "hi", stream: true }).then(firstBytes),
    ]);
    await answerWake(lan);
    const [responses, lmstudio] = await openedToo;
    await expect(drain(responses)).rejects.toThrow(failure("wv-pc"));
    expect(lmstudio.first).toBe(KEEP_ALIVE);
    const text = await lmstudio.rest();
    expect(text).toMatch(/^event: error\ndata: \{"type":"error","error":\{"type":"[a-z_]+","message":"[^\n]*did not come back/m);
  });

  test("a stream refused at once keeps its status: nothing waits, nothing is kept alive", async () => {
    const response = await api("/v1/chat/completions", chatBody("no-such-model-anywhere", { stream: true }));
    expect(response.status).toBe(404);
    expect(ErrorBody.parse(await response.json()).error.code).toBe("model_not_found");
  });
});

describe("POST /admin/nodes/{name}/wake", () => {
  test("says which peer sent the packet, and the node listing says when the node came back", async () => {
    await asleep("wa-pc", "wa-m", sleeper("02:00:00:00:00:05"));
    const lan = await agent({ name: "wa-pi", models: [], wake: peer() });
    const answered = answerWake(lan);
    const response = await admin("/admin/nodes/wa-pc/wake", "POST");
    await answered;
    expect(response.status).toBe(200);
    const attempt = WakeAttempt.parse(await response.json());
    expect(attempt).toMatchObject({ node: "wa-pc", peer: "wa-pi", mac: "02:00:00:00:00:05", back_at: null, failure: null });
    await agent({ name: "wa-pc", models: [{ id: "wa-m" }], wake: sleeper("02:00:00:00:00:05") });
    const last = (await nodes()).find((node) => node.name === "wa-pc")?.wake?.last;
    expect(last?.back_at).not.toBeNull();
    expect(Date.parse(last?.back_at ?? "")).toBeGreaterThanOrEqual(Date.parse(attempt.sent_at));
  });

  test("an online node, an unknown one, and one without a peer each get their own clear error", async () => {
    await agent({ name: "wb-on", models: [], wake: sleeper("02:00:00:00:00:06") });
    const online = await admin("/admin/nodes/wb-on/wake", "POST");
    expect(online.status).toBe(409);
    expect(ErrorBody.parse(await online.json()).error.code).toBe("node_online");

    const unknown = await admin("/admin/nodes/wb-nobody/wake", "POST");
    expect(unknown.status).toBe(404);

    await asleep("wb-pc", "wb-m", sleeper("02:00:00:00:00:07", "203.0.113.255"));
    const lonely = await admin("/admin/nodes/wb-pc/wake", "POST");
    expect(lonely.status).toBe(503);
    const { error } = ErrorBody.parse(await lonely.json());
    expect(error.code).toBe("no_wake_peer");
    expect(error.message).toContain("203.0.113.255");
  });

  test("needs the admin token", async () => {
    const response = await api("/admin/nodes/anything/wake", undefined, { method: "POST" });
    expect(response.status).toBe(401);
  });
});
