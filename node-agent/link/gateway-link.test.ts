import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { WebSocketServer, type WebSocket } from "ws";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import type { z } from "zod";
import { NODE_NAME_HEADER, parseFrame, PROTOCOL_VERSION, ToGatewayFrame, type NodeStatus, type ToAgentFrame as ToAgentFrameSchema } from "../../shared/protocol/frames.ts";
import type { V1Model } from "../../shared/protocol/v1-model-schemas.ts";
import type { DownloadJob } from "../../shared/protocol/download-schemas.ts";
import type { GenerationEvent } from "../../shared/protocol/generation-events.ts";
import { backoffDelay } from "./backoff.ts";
import { startGatewayLink, type GatewayLink } from "./gateway-link.ts";
import { agentConnectUrl } from "./gateway-url.ts";
import { ScriptedSource, scriptedModel } from "../../test/harness/scripted-source.ts";

/** Frames as written (optional fields may be left out); the link parses them like the real ones. */
type ToAgentFrame = z.input<typeof ToAgentFrameSchema>;

/**
 * The link against a stand-in gateway: a `ws` server on loopback that records frames, answers
 * heartbeats like the Fleet's auto-response, and sends whatever frames a test scripts.
 */
class StandInGateway {
  readonly server: WebSocketServer;
  readonly frames: ToGatewayFrame[] = [];
  readonly headers: Array<string | undefined> = [];
  /** The node name each connection dialled as (protocol 2's `x-lmgate-node`). */
  readonly dialledAs: Array<string | string[] | undefined> = [];
  /** `batch` messages received (their frames are in `frames`). */
  batches = 0;
  sockets: WebSocket[] = [];
  answerPings = true;
  acceptToken = "node-token";
  /** Connection attempts turned away for a wrong token. */
  refused = 0;
  #waiters: Array<{ match: (frame: ToGatewayFrame) => boolean; resolve: (frame: ToGatewayFrame) => void }> = [];
  #seen = 0;

  private constructor(server: WebSocketServer) {
    this.server = server;
    server.on("connection", (socket, request) => {
      this.sockets.push(socket);
      this.headers.push(request.headers.authorization);
      this.dialledAs.push(request.headers[NODE_NAME_HEADER]);
      socket.on("message", (data) => {
        const text = data.toString();
        if (text === "ping") {
          if (this.answerPings) socket.send("pong");
          return;
        }
        const frame = parseFrame(ToGatewayFrame, text);
        if (frame === null) throw new Error(`the link sent an invalid frame: ${text}`);
        if (frame.type === "batch") this.batches += 1;
        // A batch is its events frames, one after the other, as the gateway reads it.
        for (const each of frame.type === "batch" ? frame.frames : [frame]) {
          this.frames.push(each);
          if (each.type === "hello") this.send({ type: "welcome", node_id: "n1", heartbeat_interval_ms: 100 }, socket);
          const waiter = this.#waiters.find((candidate) => candidate.match(each));
          if (waiter) {
            this.#waiters = this.#waiters.filter((candidate) => candidate !== waiter);
            waiter.resolve(each);
          }
        }
      });
    });
  }

  static async start(): Promise<StandInGateway> {
    const server = new WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      path: "/agent/connect",
      verifyClient: (info, callback) => {
        const accepted = info.req.headers.authorization === `Bearer ${gateway.acceptToken}`;
        if (!accepted) gateway.refused += 1;
        callback(accepted, 401);
      },
    });
    const gateway = new StandInGateway(server);
    await new Promise<void>((resolve) => server.once("listening", () => resolve()));
    return gateway;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  get socket(): WebSocket {
    const socket = this.sockets.at(-1);
    if (!socket) throw new Error("no connection");
    return socket;
  }

  send(frame: ToAgentFrame, socket: WebSocket = this.socket): void {
    socket.send(JSON.stringify(frame));
  }

  next<T extends ToGatewayFrame["type"]>(type: T, match: (frame: Extract<ToGatewayFrame, { type: T }>) => boolean = () => true, timeoutMs = 3_000) {
    return new Promise<Extract<ToGatewayFrame, { type: T }>>((resolve, reject) => {
      const matches = (frame: ToGatewayFrame): frame is Extract<ToGatewayFrame, { type: T }> =>
        frame.type === type && match(frame as Extract<ToGatewayFrame, { type: T }>);
      const earlier = this.frames.slice(this.#seen).find(matches);
      if (earlier) {
        this.#seen = this.frames.indexOf(earlier) + 1;
        return resolve(earlier);
      }
      const timer = setTimeout(() => reject(new Error(`no ${type} frame within ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.push({
        match: (frame) => matches(frame),
        resolve: (frame) => {
          clearTimeout(timer);
          this.#seen = this.frames.indexOf(frame) + 1;
          resolve(frame as Extract<ToGatewayFrame, { type: T }>);
        },
      });
    });
  }

  async close(): Promise<void> {
    for (const socket of this.server.clients) socket.terminate();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(source = new ScriptedSource({ models: ["m1"] }), token = "node-token") {
  const gateway = await StandInGateway.start();
  const warnings: string[] = [];
  const link = startGatewayLink({
    url: gateway.url,
    token,
    nodeName: "node-a",
    agentVersion: "9.9.9",
    source,
    logger: { info: () => undefined, warn: (message) => warnings.push(message) },
    tuning: { backoff: { initialMs: 20, maxMs: 100 }, statusDebounceMs: 20, coalesceMs: 30 },
  });
  cleanups.push(() => gateway.close());
  cleanups.push(() => link.close());
  return { gateway, link, source, warnings };
}

const until = async (check: () => boolean, timeoutMs = 3_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

const connected = (link: GatewayLink) => until(() => link.connected);

const chatRequest = (id: string, window?: number, stream = true): Extract<ToAgentFrame, { type: "request" }> => ({
  type: "request",
  id,
  operation: { op: "chat", body: { model: "m1", messages: [{ role: "user", content: "hi" }], stream } },
  ...(window === undefined ? {} : { window }),
});

const eventsOf = async (gateway: StandInGateway, id: string): Promise<GenerationEvent[][]> => {
  const frames: GenerationEvent[][] = [];
  for (;;) {
    const frame = await gateway.next("events", (candidate) => candidate.id === id);
    frames.push(frame.events);
    if (frame.events.some((event) => event.type === "done")) return frames;
  }
};

describe("connecting", () => {
  test("the link dials /agent/connect with the node token and introduces the node in its hello", async () => {
    const { gateway, link } = await setup();
    const hello = await gateway.next("hello");
    expect(gateway.headers[0]).toBe("Bearer node-token");
    expect(gateway.dialledAs[0]).toBe("node-a");
    expect(hello.protocol).toBe(PROTOCOL_VERSION);
    expect(hello.node).toMatchObject({ name: "node-a", agent_version: "9.9.9", slots_per_model: 2 });
    expect(hello.node.runtime.name).toBe("scripted");
    expect(hello.node.hardware.cpu).toBe("scripted cpu");
    expect(hello.status.models.map((model) => model.id)).toEqual(["m1"]);
    await connected(link);
  });

  test("agentConnectUrl turns http(s) into ws(s) and adds the path once", () => {
    expect(agentConnectUrl("http://127.0.0.1:1234")).toBe("ws://127.0.0.1:1234/agent/connect");
    expect(agentConnectUrl("https://gw.example.dev/")).toBe("wss://gw.example.dev/agent/connect");
    expect(agentConnectUrl("wss://gw.example.dev/agent/connect")).toBe("wss://gw.example.dev/agent/connect");
    expect(() => agentConnectUrl("ftp://x")).toThrow(/http/);
  });

  test("backoff doubles up to the cap, with jitter in the upper half of each step", () => {
    expect(backoffDelay(0, {}, () => 0)).toBe(125);
    expect(backoffDelay(0, {}, () => 1)).toBe(250);
    expect(backoffDelay(3, {}, () => 1)).toBe(2_000);
    expect(backoffDelay(50, {}, () => 1)).toBe(10_000);
    expect(backoffDelay(50, {}, () => 0)).toBe(5_000);
  });

  test("status changes are pushed, several changes close together as one frame", async () => {
    const { gateway, link, source } = await setup(new ScriptedSource({ models: ["m1", "m2"] }));
    await connected(link);
    const before = gateway.frames.length;
    // Three different states in a row: one frame, with the last (a frame per change would send [] first).
    source.setModels([]);
    source.setModels([scriptedModel("m1", "not-loaded")]);
    source.setModels([scriptedModel("m2")]);
    const status = await gateway.next("status");
    expect(status.status.models).toEqual([scriptedModel("m2")]);
    // A later change is the very next status frame: nothing was sent for the earlier states after it.
    source.setModels([scriptedModel("m1")]);
    expect((await gateway.next("status")).status.models).toEqual([scriptedModel("m1")]);
    expect(gateway.frames.slice(before).filter((frame) => frame.type === "status")).toHaveLength(2);
  });

  test("after the gateway drops the link it reconnects with backoff, says hello again, and reports its state", async () => {
    const { gateway, link } = await setup();
    const states: boolean[] = [];
    link.onStateChange((state) => states.push(state));
    await connected(link);
    gateway.socket.terminate();
    await until(() => !link.connected);
    await until(() => link.connected);
    expect(gateway.frames.filter((frame) => frame.type === "hello")).toHaveLength(2);
    expect(states).toEqual([true, false, true]);
  });

  test("a gateway that stops answering heartbeats is treated as dead, and the link redials", async () => {
    const { gateway, link, warnings } = await setup();
    await connected(link);
    gateway.answerPings = false;
    await until(() => gateway.sockets.length === 2, 3_000);
    expect(warnings.some((warning) => warning.includes("no answer from the gateway"))).toBe(true);
    gateway.answerPings = true;
    await connected(link);
  });

  test("a refused node token is logged once and retried, and the link connects once the token is accepted", async () => {
    const { gateway, link, warnings } = await setup(undefined, "wrong-token");
    await until(() => gateway.refused >= 3);
    expect(link.connected).toBe(false);
    expect(warnings.filter((warning) => warning.includes("401"))).toHaveLength(1);
    gateway.acceptToken = "wrong-token";
    await connected(link);
  });

  test("close() disconnects for good: no reconnect, running requests aborted", async () => {
    const source = new ScriptedSource({ models: ["m1"], delayMs: 20, words: () => Array.from({ length: 100 }, () => "w ") });
    const { gateway, link } = await setup(source);
    await connected(link);
    gateway.send(chatRequest("r1"));
    await gateway.next("events", (frame) => frame.events.some((event) => event.type === "delta"));
    await link.close();
    expect(link.connected).toBe(false);
    await until(() => source.aborted.length === 1);
    // close() resolves once the link's dial loop has ended, so no reconnect can follow it: one socket, for good.
    expect(gateway.sockets).toHaveLength(1);
  });

  test("close() says goodbye (shutdown) as its last frame, then closes the socket (1000)", async () => {
    const source = new ScriptedSource({ models: ["m1"], delayMs: 20, words: () => Array.from({ length: 100 }, () => "w ") });
    const { gateway, link } = await setup(source);
    await connected(link);
    const closed = new Promise<number>((resolve) => gateway.socket.once("close", (code) => resolve(code)));
    gateway.send(chatRequest("r1"));
    await gateway.next("events", (frame) => frame.events.some((event) => event.type === "delta"));
    await link.close();
    expect(await closed).toBe(1000);
    // The gateway hears why before the socket closes: the node stopped on purpose, it was not lost.
    expect(gateway.frames.at(-1)).toEqual({ type: "goodbye", reason: "shutdown" });
    expect(gateway.frames.filter((frame) => frame.type === "goodbye")).toHaveLength(1);
  });
});

describe("requests", () => {
  test("the first delta leaves at once (with start); later deltas are merged into batches", async () => {
    const source = new ScriptedSource({ models: ["m1"], words: () => Array.from({ length: 50 }, (_, i) => `${i} `) });
    const { gateway, link } = await setup(source);
    await connected(link);
    gateway.send(chatRequest("r1"));
    const frames = await eventsOf(gateway, "r1");
    expect(frames[0]).toEqual([{ type: "start", model: "m1" }, { type: "delta", text: "0 " }]);
    const text = frames.flat().map((event) => (event.type === "delta" ? event.text : "")).join("");
    expect(text).toBe(Array.from({ length: 50 }, (_, i) => `${i} `).join(""));
    // 50 deltas, far fewer frames; each frame holds at most one merged delta before done.
    expect(frames.length).toBeLessThan(10);
    for (const frame of frames) expect(frame.filter((event) => event.type === "delta").length).toBeLessThanOrEqual(1);
    expect(frames.at(-1)?.at(-1)?.type).toBe("done");
  });

  test("a short non-streamed generation goes back in one frame: its client sees nothing before the end", async () => {
    const { gateway, link } = await setup();
    await connected(link);
    gateway.send(chatRequest("r1", undefined, false));
    const frames = await eventsOf(gateway, "r1");
    expect(frames).toHaveLength(1);
    expect(frames[0]?.map((event) => event.type)).toEqual(["start", "delta", "done"]);
    expect(frames[0]?.[1]).toEqual({ type: "delta", text: "one two three four five" });
  });

  test("the request frame's stream decides the batching, not the body's", async () => {
    const { gateway, link } = await setup();
    await connected(link);
    gateway.send({ ...chatRequest("held", undefined, true), stream: false });
    const held = await eventsOf(gateway, "held");
    expect(held).toHaveLength(1);
    expect(held[0]?.[1]).toEqual({ type: "delta", text: "one two three four five" });
    gateway.send({ ...chatRequest("streamed", undefined, false), stream: true });
    const streamed = await eventsOf(gateway, "streamed");
    expect(streamed[0]).toEqual([{ type: "start", model: "m1" }, { type: "delta", text: "one " }]);
  });

  test("a request frame with fields this agent does not know (a newer gateway's) runs like any other", async () => {
    const { gateway, link } = await setup();
    await connected(link);
    gateway.socket.send(JSON.stringify({ ...chatRequest("r1"), added_later: { anything: true } }));
    const frames = await eventsOf(gateway, "r1");
    expect(frames.at(-1)?.at(-1)).toMatchObject({ type: "done", result: { usage: { completion_tokens: 5 } } });
  });

  test("a start with no text soon after (a long prompt) still goes out on its own, so the gateway can commit the response", async () => {
    const source = new ScriptedSource({ models: ["m1"], delayMs: 200, words: () => ["late"] });
    const { gateway, link } = await setup(source);
    await connected(link);
    gateway.send(chatRequest("r1"));
    const frames = await eventsOf(gateway, "r1");
    expect(frames[0]).toEqual([{ type: "start", model: "m1" }]);
    expect(frames[1]).toEqual([{ type: "delta", text: "late" }]);
  });

  test("with its window used up the link stops pulling from the engine until the gateway acks", async () => {
    const source = new ScriptedSource({ models: ["m1"], delayMs: 2, words: () => Array.from({ length: 200 }, () => "w ") });
    const { gateway, link } = await setup(source);
    await connected(link);
    gateway.send(chatRequest("r1", 3));
    await until(() => gateway.frames.filter((frame) => frame.type === "events").length === 3);
    const pulledAtPause = source.pulled;
    // A witness on the same link with no window runs its 200 deltas to the end meanwhile: time r1 would have used to go on.
    gateway.send(chatRequest("witness"));
    await eventsOf(gateway, "witness");
    const pulledWhilePaused = source.pulled;
    expect(gateway.frames.filter((frame) => frame.type === "events" && frame.id === "r1")).toHaveLength(3);
    // Paused: at most the one event already being produced, not the rest of the 200.
    expect(pulledWhilePaused - pulledAtPause - 200).toBeLessThanOrEqual(1);
    gateway.send({ type: "ack", id: "r1", frames: 3 });
    await until(() => gateway.frames.filter((frame) => frame.type === "events" && frame.id === "r1").length === 6);
    expect(source.pulled).toBeGreaterThan(pulledWhilePaused);
    gateway.send({ type: "cancel", id: "r1" });
  });

  test("a cancel frame aborts the engine's work for that request; only its final usage follows, no more text", async () => {
    const source = new ScriptedSource({ models: ["m1"], delayMs: 10, words: () => Array.from({ length: 500 }, () => "w ") });
    const { gateway, link } = await setup(source);
    await connected(link);
    gateway.send(chatRequest("r1"));
    await gateway.next("events", (frame) => frame.events.some((event) => event.type === "delta"));
    const sent = gateway.frames.length;
    gateway.send({ type: "cancel", id: "r1" });
    await until(() => source.aborted.length === 1);
    await gateway.next("events", (frame) => frame.events.some((event) => event.type === "done"));
    const after = gateway.frames.slice(sent).filter((frame) => frame.type !== "status");
    const last = after.at(-1);
    expect(last?.type === "events" && last.events).toEqual([
      { type: "done", result: expect.objectContaining({ stats: expect.objectContaining({ stop_reason: "userStopped" }) }) },
    ]);
    // Coalesced text may have left before the cancel arrived; nothing but the usage after it.
    expect(after.slice(0, -1).every((frame) => frame.type === "events" && frame.events.every((event) => event.type === "delta"))).toBe(true);
    const done = last?.type === "events" ? last.events[0] : undefined;
    expect(done?.type === "done" && done.result.usage.completion_tokens).toBe(source.pulled);
  });

  test("errors go back as error frames in OpenAI's shape", async () => {
    const { gateway, link } = await setup();
    await connected(link);
    gateway.send({ type: "request", id: "r1", operation: { op: "chat", body: { model: "nope", messages: [{ role: "user", content: "x" }] } } });
    const error = await gateway.next("error");
    expect(error).toMatchObject({ id: "r1", status: 404, body: { error: { code: "model_not_found", param: "model" } } });
    expect(ErrorBody.parse(error.body).error).toMatchObject({ type: "invalid_request_error", message: expect.stringContaining("nope") });
  });

  test("embeddings, load and unload come back as result frames", async () => {
    const { gateway, link } = await setup(new ScriptedSource({ models: ["m1", "embed-1"] }));
    await connected(link);
    gateway.send({ type: "request", id: "e1", operation: { op: "embeddings", body: { model: "embed-1", input: ["ab", "c"] } } });
    expect((await gateway.next("result", (frame) => frame.id === "e1")).result).toMatchObject({ embeddings: [[2, 1], [1, 1]] });
    gateway.send({ type: "request", id: "u1", operation: { op: "unload", body: { instance_id: "m1" } } });
    expect((await gateway.next("result", (frame) => frame.id === "u1")).result).toEqual({ instance_id: "m1" });
    const status = await gateway.next("status");
    expect(status.status.models.find((model) => model.id === "m1")?.state).toBe("not-loaded");
  });
});

describe("status frames during a download", () => {
  /** A node with model management whose download progresses: its status changes, its v1 listing does not, until it is told to. */
  class DownloadingSource extends ScriptedSource {
    listing: V1Model[] = [v1Entry("m1")];
    progress = 0;

    override status(): NodeStatus {
      const job: DownloadJob = { job_id: "job-1", status: "downloading", total_size_bytes: 100, downloaded_bytes: this.progress, started_at: "2026-01-01T00:00:00Z" };
      return { ...super.status(), v1_models: this.listing, downloads: [job] };
    }

    advance(): void {
      this.progress += 1;
      this.setModels(super.status().models);
    }
  }

  test("carry the v1 listing only when it changed, not with every progress tick", async () => {
    const source = new DownloadingSource({ models: ["m1"] });
    const { gateway, link } = await setup(source);
    await connected(link);
    const hello = await gateway.next("hello");
    expect(hello.status.v1_models?.map((model) => model.key)).toEqual(["m1"]);
    for (let tick = 0; tick < 3; tick += 1) {
      source.advance();
      const status = await gateway.next("status");
      expect(status.status.downloads?.[0]?.downloaded_bytes).toBe(tick + 1);
      expect(status.status.v1_models).toBeUndefined();
    }
    source.listing = [v1Entry("m1"), v1Entry("m2")];
    source.advance();
    expect((await gateway.next("status")).status.v1_models?.map((model) => model.key)).toEqual(["m1", "m2"]);
  });
});

function v1Entry(key: string): V1Model {
  return {
    type: "llm",
    publisher: "test",
    key,
    display_name: key,
    quantization: { name: "F32", bits_per_weight: 32 },
    size_bytes: 1,
    params_string: null,
    loaded_instances: [],
    max_context_length: 2048,
    format: "gguf",
  };
}
