import { exports } from "cloudflare:workers";
import { afterEach } from "vitest";
import { HEARTBEAT_PING, NODE_NAME_HEADER, PROTOCOL_VERSION, type NodeStatus, type ToAgentFrame, type ToGatewayFrame, type WakeInfo } from "../../shared/protocol/frames.ts";
import type { GenerationResult } from "../../shared/protocol/generation-events.ts";
import type { ModelObject } from "../../shared/protocol/model-schemas.ts";
import { TEST_BINDINGS } from "./bindings.ts";

/**
 * The test plays a node agent over a real WebSocket to the Worker: it says hello, pings, and
 * answers request frames with scripted events. (The real agent is tested end to end in test/e2e.)
 */

export type RequestFrame = Extract<ToAgentFrame, { type: "request" }>;

export interface FakeModel {
  id: string;
  state?: "loaded" | "not-loaded";
  type?: ModelObject["type"];
}

export interface FakeAgentOptions {
  name: string;
  models: FakeModel[];
  slots?: number;
  /** Measured tokens/s per model id. */
  speed?: Record<string, number>;
  busy?: Record<string, number>;
  /** Reported for placement; absent like an older agent's when not given. */
  memory?: NodeStatus["memory"];
  footprints?: NodeStatus["footprints"];
  token?: string;
  protocol?: number;
  /** Says it takes `count_tokens` (agents before it do not). */
  countsTokens?: boolean;
  /** Hello's `generation_features` (n choices, logprobs); none, like an older agent's, when not given. */
  generationFeatures?: string[];
  /** Hello's Wake-on-LAN; none, like an agent without `--wake-on-lan`/`--wake-peers`, when not given. */
  wake?: WakeInfo;
}

export const API_KEY = TEST_BINDINGS.LMGATE_API_KEY;
export const NODE_TOKEN = TEST_BINDINGS.LMGATE_NODE_TOKEN;
export const ADMIN_TOKEN = TEST_BINDINGS.LMGATE_ADMIN_TOKEN;
const HEARTBEAT_MS = Number(TEST_BINDINGS.LMGATE_HEARTBEAT_INTERVAL_MS);

export function modelObject(model: FakeModel): ModelObject {
  const loaded = model.state === "loaded";
  return {
    id: model.id,
    object: "model",
    type: model.type ?? "llm",
    publisher: "lmgate",
    arch: "llama",
    compatibility_type: "gguf",
    quantization: "F32",
    state: loaded ? "loaded" : "not-loaded",
    max_context_length: 2048,
    ...(loaded ? { loaded_context_length: 1024 } : {}),
  };
}

export function statusOf(options: Pick<FakeAgentOptions, "models" | "speed" | "busy" | "memory" | "footprints" | "countsTokens">): NodeStatus {
  const speed: NodeStatus["speed"] = {};
  for (const [id, tokensPerSecond] of Object.entries(options.speed ?? {})) {
    speed[id] = { tokens_per_second: tokensPerSecond, time_to_first_token: 0.01 };
  }
  return {
    models: options.models.map(modelObject),
    busy: options.busy ?? {},
    speed,
    ...(options.memory ? { memory: options.memory } : {}),
    ...(options.footprints ? { footprints: options.footprints } : {}),
    ...(options.countsTokens ? { counts_tokens: true } : {}),
  };
}

export function result(overrides: Partial<GenerationResult> = {}): GenerationResult {
  return {
    finish_reason: "stop",
    usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    stats: { tokens_per_second: 100, time_to_first_token: 0.001, generation_time: 0.002, stop_reason: "eosFound" },
    model_info: { arch: "llama", quant: "F32", format: "gguf", context_length: 1024 },
    runtime: { name: "fake", version: "0", supported_formats: ["gguf"] },
    ...overrides,
  };
}

/** Opens `/agent/connect` as a node named `name` would (null: an agent too old to name itself); resolves with the raw response (101 or an error). */
export async function dialGateway(token: string | undefined, name: string | null = "dialled-node"): Promise<Response> {
  return exports.default.fetch("http://gateway.test/agent/connect", {
    headers: {
      upgrade: "websocket",
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      ...(name === null ? {} : { [NODE_NAME_HEADER]: name }),
    },
  });
}

export class GatewayClosed extends Error {
  readonly code: number;
  constructor(code: number, reason: string) {
    super(`gateway closed the socket: ${code} ${reason}`);
    this.code = code;
  }
}

export class FakeAgent {
  readonly name: string;
  readonly ws: WebSocket;
  readonly received: ToAgentFrame[] = [];
  /** Resolves when the gateway closes the socket (or it is closed here). */
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: Array<{ match: (frame: ToAgentFrame) => boolean; resolve: (frame: ToAgentFrame) => void }> = [];
  /** Frames nobody has waited for yet, for `next` to find. */
  #unclaimed: ToAgentFrame[] = [];
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #autoAnswer: ((frame: RequestFrame) => void) | undefined;

  private constructor(name: string, ws: WebSocket) {
    this.name = name;
    this.ws = ws;
    this.closed = new Promise((resolve) =>
      ws.addEventListener("close", (event) => {
        this.stopHeartbeat();
        resolve({ code: event.code, reason: event.reason });
      }),
    );
    ws.addEventListener("message", (event) => {
      if (typeof event.data !== "string" || event.data === "pong") return;
      const frame = JSON.parse(event.data) as ToAgentFrame;
      this.received.push(frame);
      const waiter = this.#waiters.find((candidate) => candidate.match(frame));
      if (waiter !== undefined) {
        this.#waiters = this.#waiters.filter((candidate) => candidate !== waiter);
        waiter.resolve(frame);
      } else if (frame.type === "request" && this.#autoAnswer !== undefined) this.#autoAnswer(frame);
      else this.#unclaimed.push(frame);
    });
  }

  /** Connects, says hello, and waits for the gateway's welcome. */
  static async connect(options: FakeAgentOptions): Promise<FakeAgent> {
    const response = await dialGateway(options.token ?? NODE_TOKEN, options.name);
    const ws = response.webSocket;
    if (response.status !== 101 || ws === null) throw new Error(`upgrade failed: ${response.status} ${await response.text()}`);
    ws.accept();
    const agent = new FakeAgent(options.name, ws);
    const welcome = Promise.race([
      agent.next((frame) => frame.type === "welcome"),
      agent.closed.then(({ code, reason }) => {
        throw new GatewayClosed(code, reason);
      }),
    ]);
    agent.sendFrame({
      type: "hello",
      protocol: options.protocol ?? PROTOCOL_VERSION,
      node: {
        name: options.name,
        agent_version: "test",
        runtime: { name: "fake-runtime", version: "1", supported_formats: ["gguf"] },
        hardware: { cpu: "test cpu", cores: 2, memory_bytes: 1e9, gpu: null, gpu_devices: [], vram_bytes: null },
        slots_per_model: options.slots ?? 2,
        ...(options.generationFeatures ? { generation_features: options.generationFeatures } : {}),
        ...(options.wake ? { wake: options.wake } : {}),
      },
      status: statusOf(options),
    });
    await welcome;
    agent.#heartbeat = setInterval(() => agent.ws.send(HEARTBEAT_PING), HEARTBEAT_MS);
    return agent;
  }

  sendFrame(frame: ToGatewayFrame): void {
    this.ws.send(JSON.stringify(frame));
  }

  /** The next frame matching `match` (already received, or still to come). */
  next(match: (frame: ToAgentFrame) => boolean, timeoutMs = 5_000): Promise<ToAgentFrame> {
    const index = this.#unclaimed.findIndex(match);
    if (index >= 0) return Promise.resolve(this.#unclaimed.splice(index, 1)[0] as ToAgentFrame);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no matching frame within ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.push({
        match,
        resolve: (frame) => {
          clearTimeout(timer);
          resolve(frame);
        },
      });
    });
  }

  nextRequest(timeoutMs?: number): Promise<RequestFrame> {
    return this.next((frame) => frame.type === "request", timeoutMs) as Promise<RequestFrame>;
  }

  /** Answers every request frame not awaited with `next` as `answer` says. */
  autoAnswer(answer: (frame: RequestFrame) => void): void {
    this.#autoAnswer = answer;
  }

  /** Answers a chat or completion with start, the text, and done. */
  complete(id: string, text: string, overrides: Partial<GenerationResult> = {}): void {
    this.sendFrame({ type: "events", id, events: [{ type: "start", model: "m" }, { type: "delta", text }] });
    this.sendFrame({ type: "events", id, events: [{ type: "done", result: result(overrides) }] });
  }

  stopHeartbeat(): void {
    clearInterval(this.#heartbeat);
  }

  close(): void {
    this.stopHeartbeat();
    try {
      this.ws.close(1000, "test done");
    } catch {
      // already closed
    }
  }
}

/** A request through the Worker with the test API key. */
export function api(path: string, body?: unknown, init: RequestInit = {}): Promise<Response> {
  return exports.default.fetch(`http://gateway.test${path}`, {
    method: body === undefined ? "GET" : "POST",
    ...init,
    headers: { authorization: `Bearer ${API_KEY}`, ...(init.headers as Record<string, string> | undefined) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

export const chatBody = (model: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: "user", content: "hi" }],
  ...extra,
});

/** Polls until `check` passes (the gateway handles socket events asynchronously). */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Connects fake agents for the calling test file; each test's agents are closed after it. */
export function fakeAgentsPerTest(): (options: FakeAgentOptions) => Promise<FakeAgent> {
  const agents: FakeAgent[] = [];
  afterEach(() => {
    for (const connected of agents.splice(0)) connected.close();
  });
  return async (options) => {
    const connected = await FakeAgent.connect(options);
    agents.push(connected);
    return connected;
  };
}
