import { describe, expect, onTestFinished, test } from "vitest";
import { env, exports } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { CLOSE_CODES, PROTOCOL_VERSION } from "../../shared/protocol/frames.ts";
import { ChatCompletion } from "../../shared/openai-completions/completion-schemas.ts";
import { parsePrometheus, series, type Samples } from "../../test/harness/prometheus-text.ts";
import { readSse } from "../../test/harness/sse.ts";
import { nodeStub } from "../env.ts";
import { ADMIN_TOKEN, api, chatBody, dialGateway, eventually, FakeAgent, NODE_TOKEN, result, type RequestFrame } from "../test/fake-agent.ts";

/**
 * The node objects, the data plane: a node's socket ends in its own object, which relays its
 * generations to the Worker; the Fleet hears only the request's admission and its end. Fake
 * agents over real WebSockets to the real Worker, Fleet and node objects in workerd.
 */

async function scrape(): Promise<Samples> {
  const response = await exports.default.fetch("http://gateway.test/metrics", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return parsePrometheus(await response.text()).samples;
}

/** Calls into the Fleet in `samples`, scrapes (`metrics`) left out. */
function fleetCalls(samples: Samples): number {
  let total = 0;
  for (const [name, value] of samples) {
    if (name.startsWith("lmgate_gateway_fleet_calls_total{") && !name.includes('call="metrics"')) total += value;
  }
  return total;
}

async function connect(name: string, model: string): Promise<FakeAgent> {
  const node = await FakeAgent.connect({ name, models: [{ id: model, state: "loaded" }] });
  onTestFinished(() => node.close());
  return node;
}

/** Answers a chat with `tokens` deltas, each in a frame of its own, as a streaming agent does. */
function stream(node: FakeAgent, frame: RequestFrame, tokens: number): void {
  node.sendFrame({ type: "events", id: frame.id, events: [{ type: "start", model: "m" }] });
  for (let token = 0; token < tokens; token += 1) node.sendFrame({ type: "events", id: frame.id, events: [{ type: "delta", text: "t" }] });
  node.sendFrame({ type: "events", id: frame.id, events: [{ type: "done", result: result({ usage: { prompt_tokens: 3, completion_tokens: tokens, total_tokens: 3 + tokens } }) }] });
}

describe("the Fleet decides, the node object relays", () => {
  test("a generation costs the Fleet the same calls whether it is 4 tokens long or 400: none per token or frame", async () => {
    const node = await connect("calls-node", "calls-m");
    const callsFor = async (tokens: number) => {
      const before = fleetCalls(await scrape());
      const pending = api("/v1/chat/completions", chatBody("calls-m", { stream: true }));
      stream(node, await node.nextRequest(), tokens);
      const { events, done } = await readSse(await pending);
      expect(done).toBe(true);
      expect(events.length).toBeGreaterThan(tokens);
      return fleetCalls(await scrape()) - before;
    };
    const short = await callsFor(4);
    const long = await callsFor(400);
    expect(long).toBe(short);
    // Admission with placement, and the settlement: the constant the design promises.
    expect(short).toBe(2);
    // The credit for 400 frames went back from the node object, not the Fleet.
    expect(node.received.filter((frame) => frame.type === "ack").length).toBeGreaterThan(0);
  });

  test("a node object restarted mid-stream: the stream ends with an error event, not [DONE], the request is counted once, and the node comes back", async () => {
    const node = await connect("restarted-node", "restart-m");
    const failed = series("lmgate_gateway_requests_total", { route: "chat/completions", model: "restart-m", status: "502" });
    const before = (await scrape()).get(failed) ?? 0;
    const pending = api("/v1/chat/completions", chatBody("restart-m", { stream: true }));
    const frame = await node.nextRequest();
    node.sendFrame({ type: "events", id: frame.id, events: [{ type: "start", model: "m" }, { type: "delta", text: "half" }] });
    const response = await pending;
    expect(response.status).toBe(200);
    // As a crash or a new deployment does: the object's memory, its relays and its socket are gone.
    await runInDurableObject(nodeStub(env, "restarted-node"), (_object, state) => state.abort("restarted by the test")).catch(() => undefined);
    const { events, done } = await readSse(response);
    expect(done).toBe(false);
    expect(events.at(-1)).toMatchObject({ error: { code: "node_disconnected" } });
    // Settled by the Worker, since the object that ran it cannot: once, and not again later.
    await eventually(async () => (await scrape()).get(failed) === before + 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await scrape()).get(failed)).toBe(before + 1);
    // Until the agent is back, the Fleet may still list the node; the first request placed there
    // finds an object without its socket, which has the Fleet forget the node: a clean 503.
    await node.closed;
    const meanwhile = await api("/v1/chat/completions", chatBody("restart-m"));
    expect(meanwhile.status).toBe(503);
    await eventually(async () => {
      const nodes = (await (await api("/admin/nodes", undefined, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as {
        data: Array<{ name: string; online: boolean }>;
      };
      return nodes.data.find((listed) => listed.name === "restarted-node")?.online === false;
    });
    // The agent reconnects, as a real one does, to the object's new life.
    const back = await connect("restarted-node", "restart-m");
    back.autoAnswer((next) => back.complete(next.id, "after"));
    const body = ChatCompletion.parse(await (await api("/v1/chat/completions", chatBody("restart-m"))).json());
    expect(body.choices[0]?.message.content).toBe("after");
  });

  test("a node that reconnects reaches its own object again, and serves as before", async () => {
    const first = await connect("back-node", "back-m");
    first.close();
    await eventually(async () => {
      const nodes = (await (await api("/admin/nodes", undefined, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as {
        data: Array<{ name: string; online: boolean }>;
      };
      return nodes.data.find((listed) => listed.name === "back-node")?.online === false;
    });
    const again = await connect("back-node", "back-m");
    again.autoAnswer((frame) => again.complete(frame.id, "back again"));
    const body = ChatCompletion.parse(await (await api("/v1/chat/completions", chatBody("back-m"))).json());
    expect(body.choices[0]?.message.content).toBe("back again");
    expect(body.gateway?.node).toBe("back-node");
  });

  test("two agents under one name: the newer one holds the name, the older is closed (4002) and gets no request", async () => {
    const older = await connect("one-name", "one-m");
    const newer = await connect("one-name", "one-m");
    expect((await older.closed).code).toBe(CLOSE_CODES.replaced);
    newer.autoAnswer((frame) => newer.complete(frame.id, "newer"));
    const body = ChatCompletion.parse(await (await api("/v1/chat/completions", chatBody("one-m"))).json());
    expect(body.choices[0]?.message.content).toBe("newer");
    expect(older.received.filter((frame) => frame.type === "request")).toHaveLength(0);
  });

  test("one batch message carries the frames of several generations, each relayed to its own client", async () => {
    const node = await FakeAgent.connect({ name: "batch-node", models: [{ id: "batch-m", state: "loaded" }], slots: 4 });
    onTestFinished(() => node.close());
    const first = api("/v1/chat/completions", chatBody("batch-m"));
    const second = api("/v1/chat/completions", chatBody("batch-m"));
    const [a, b] = [await node.nextRequest(), await node.nextRequest()];
    const answer = (id: string, text: string) => ({ type: "events" as const, id, events: [{ type: "start" as const, model: "m" }, { type: "delta" as const, text }, { type: "done" as const, result: result() }] });
    node.sendFrame({ type: "batch", frames: [answer(a.id, `to ${a.id}`), answer(b.id, `to ${b.id}`)] });
    for (const [pending, frame] of [[first, a], [second, b]] as const) {
      const body = ChatCompletion.parse(await (await pending).json());
      expect(body.choices[0]?.message.content).toBe(`to ${frame.id}`);
    }
  });
});

describe("agents of another protocol", () => {
  test("an agent that dials without naming itself (protocol 1) is closed with a reason telling it to upgrade", async () => {
    const response = await dialGateway(NODE_TOKEN, null);
    expect(response.status).toBe(101);
    const ws = response.webSocket!;
    const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.addEventListener("close", (event) => resolve({ code: event.code, reason: event.reason })));
    ws.accept();
    const { code, reason } = await closed;
    expect(code).toBe(CLOSE_CODES.unsupportedProtocol);
    expect(reason).toContain("upgrade lmgate-agent");
    expect(reason).toContain(`protocol ${PROTOCOL_VERSION}`);
  });
});
