import WebSocket from "ws";
import {
  HEARTBEAT_PING,
  HEARTBEAT_PONG,
  parseFrame,
  NODE_NAME_HEADER,
  PROTOCOL_VERSION,
  ToAgentFrame,
  type Hardware,
  type ToGatewayFrame,
  type WakeInterface,
  type WakeResult,
} from "../../shared/protocol/frames.ts";
import { GENERATION_FEATURES } from "../../shared/protocol/generation-features.ts";
import { backoffDelay, type BackoffOptions } from "./backoff.ts";
import { agentConnectUrl } from "./gateway-url.ts";
import type { NodeSource } from "./node-source.ts";
import { FrameBatcher } from "./frame-batcher.ts";
import type { RequestTracer } from "../tracing/request-tracer.ts";
import { RequestRunner, type FrameChannel } from "./request-runner.ts";
import { StatusDelta } from "./status-delta.ts";

export type { NodeSource } from "./node-source.ts";

export interface GatewayLinkLogger {
  info(message: string): void;
  warn(message: string): void;
}

export interface GatewayLinkOptions {
  /** The gateway's base URL, http(s) or ws(s); `/agent/connect` is added. */
  url: string;
  /** This node's token (never an API key). */
  token: string;
  nodeName: string;
  agentVersion: string;
  source: NodeSource;
  logger?: GatewayLinkLogger;
  /** Spans of the requests this node runs (OTLP), when configured. */
  tracer?: RequestTracer | null;
  /** Wake-on-LAN, when the owner allows it: how this node can be woken, and how it wakes others. */
  wake?: LinkWakeOptions;
  /** Knobs for tests; the defaults suit real use. */
  tuning?: GatewayLinkTuning;
}

export interface LinkWakeOptions {
  /** This machine's LAN interfaces: its networks, and the MACs it can be woken by. */
  interfaces: WakeInterface[];
  /** The owner lets the fleet wake this machine. */
  wakeable: boolean;
  /** Sends a magic packet for another node; absent: this node wakes nobody. */
  wakePeer?: (target: WakeInterface) => Promise<WakeResult>;
}

export interface GatewayLinkTuning {
  /** Reconnect backoff. Defaults to 250 ms doubling up to 10 s, with jitter. */
  backoff?: BackoffOptions;
  /** Heartbeat interval until the gateway says otherwise in `welcome`. Defaults to 5 s. */
  heartbeatIntervalMs?: number;
  /** Give up on a connection attempt (upgrade and welcome) after this long. Defaults to 10 s. */
  connectTimeoutMs?: number;
  /** Status changes within this window go out as one `status` frame. Defaults to 50 ms. */
  statusDebounceMs?: number;
  /** Later deltas of a generation are batched for up to this long. Defaults to 16 ms. */
  coalesceMs?: number;
}

export interface GatewayLink {
  /** The gateway accepted this node (said `welcome`) and the socket is up. */
  readonly connected: boolean;
  /** Called on every connect and disconnect until `close()` is called; returns the unsubscribe function. */
  onStateChange(listener: (connected: boolean) => void): () => void;
  /**
   * Disconnects for good: running requests are aborted, no reconnects follow. The gateway is told
   * first (`goodbye`, `shutdown`), so it lists the node as stopped rather than lost.
   */
  close(): Promise<void>;
}

/** A missed answer to this many heartbeats in a row means the link is dead. */
const MISSED_HEARTBEATS = 3;

/**
 * Joins this node to a gateway: dials out over a WebSocket (so it works behind NAT), introduces
 * the node, keeps its status current, runs the gateway's requests, and reconnects with backoff
 * and jitter, forever, until closed.
 */
export function startGatewayLink(options: GatewayLinkOptions): GatewayLink {
  return new Link(options);
}

class Link implements GatewayLink {
  readonly #options: GatewayLinkOptions;
  readonly #url: string;
  readonly #listeners = new Set<(connected: boolean) => void>();
  readonly #stopped = new AbortController();
  readonly #hardware: Promise<Hardware>;
  readonly #loop: Promise<void>;
  #connected = false;
  #socket: WebSocket | null = null;
  /** The current connection's batched frames; sent before the socket is closed, so a last `done` is not lost. */
  #batcher: FrameBatcher | null = null;
  #lastWarning = "";

  constructor(options: GatewayLinkOptions) {
    this.#options = options;
    this.#url = agentConnectUrl(options.url);
    this.#hardware = options.source.hardware().catch((error: unknown) => {
      this.#warn(`could not read this machine's hardware: ${String(error)}`);
      return { cpu: "unknown", cores: 1, memory_bytes: 0, gpu: null, gpu_devices: [], vram_bytes: null };
    });
    this.#loop = this.#run();
  }

  get connected(): boolean {
    return this.#connected;
  }

  onStateChange(listener: (connected: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.#stopped.signal.aborted) return this.#loop;
    this.#stopped.abort();
    const socket = this.#socket;
    this.#batcher?.flush();
    if (socket !== null && socket.readyState === WebSocket.OPEN && this.#connected) {
      socket.send(JSON.stringify({ type: "goodbye", reason: "shutdown" } satisfies ToGatewayFrame));
    }
    if (socket !== null && socket.readyState !== WebSocket.CLOSED) {
      socket.close(1000, "agent shutting down");
      // A gateway that does not answer the close handshake must not hold the shutdown.
      const timer = setTimeout(() => socket.terminate(), 2_000);
      timer.unref();
    }
    await this.#loop;
  }

  async #run(): Promise<void> {
    let attempt = 0;
    while (!this.#stopped.signal.aborted) {
      const welcomed = await this.#connectOnce();
      if (this.#stopped.signal.aborted) break;
      if (welcomed) attempt = 0;
      await sleep(backoffDelay(attempt++, this.#options.tuning?.backoff), this.#stopped.signal);
    }
  }

  /** One connection, from dialling to its end; true if the gateway welcomed this node. */
  #connectOnce(): Promise<boolean> {
    const { token, source, tuning, wake } = this.#options;
    return new Promise<boolean>((resolve) => {
      const ws = new WebSocket(this.#url, {
        headers: { authorization: `Bearer ${token}`, [NODE_NAME_HEADER]: this.#options.nodeName },
        handshakeTimeout: tuning?.connectTimeoutMs ?? 10_000,
        perMessageDeflate: false,
      });
      this.#socket = ws;
      let welcomed = false;
      let lastHeard = Date.now();
      let heartbeat: ReturnType<typeof setInterval> | undefined;
      let statusTimer: ReturnType<typeof setTimeout> | undefined;
      let unsubscribe: (() => void) | undefined;

      const batcher = new FrameBatcher((frame: ToGatewayFrame) => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
      });
      this.#batcher = batcher;
      const channel: FrameChannel = {
        send: (frame: ToGatewayFrame) => batcher.send(frame),
        get bufferedAmount() {
          return ws.bufferedAmount;
        },
      };
      const runner = new RequestRunner({ source, channel, coalesceMs: tuning?.coalesceMs, logger: this.#options.logger, tracer: this.#options.tracer, wakePeer: this.#options.wake?.wakePeer });
      const statusDelta = new StatusDelta();

      const welcomeTimer = setTimeout(() => {
        this.#warn(`the gateway did not accept this node within ${(tuning?.connectTimeoutMs ?? 10_000) / 1000} s; retrying`);
        ws.terminate();
      }, tuning?.connectTimeoutMs ?? 10_000);

      const pushStatus = () => {
        statusTimer ??= setTimeout(() => {
          statusTimer = undefined;
          channel.send({ type: "status", status: statusDelta.next(source.status()) });
        }, tuning?.statusDebounceMs ?? 50);
      };

      const startHeartbeat = (intervalMs: number) => {
        clearInterval(heartbeat);
        heartbeat = setInterval(() => {
          if (Date.now() - lastHeard > MISSED_HEARTBEATS * intervalMs) {
            this.#warn(`no answer from the gateway for ${Math.round((Date.now() - lastHeard) / 1000)} s; reconnecting`);
            ws.terminate();
          } else if (ws.readyState === WebSocket.OPEN) ws.send(HEARTBEAT_PING);
        }, intervalMs);
      };

      ws.on("open", () => {
        void this.#hardware.then((hardware) => {
          channel.send({
            type: "hello",
            protocol: PROTOCOL_VERSION,
            node: {
              name: this.#options.nodeName,
              agent_version: this.#options.agentVersion,
              runtime: source.runtime,
              hardware,
              slots_per_model: source.slotsPerModel,
              generation_features: [...GENERATION_FEATURES],
              ...(wake === undefined ? {} : { wake: { interfaces: wake.interfaces, wakeable: wake.wakeable, wakes_peers: wake.wakePeer !== undefined } }),
            },
            status: statusDelta.next(source.status()),
          });
          // Changes from here on reach the gateway; anything earlier was in the hello.
          if (ws.readyState === WebSocket.OPEN) unsubscribe = source.onStatusChange(pushStatus);
        });
      });

      ws.on("message", (data: WebSocket.RawData) => {
        lastHeard = Date.now();
        const text = data.toString();
        if (text === HEARTBEAT_PONG) return;
        const frame = parseFrame(ToAgentFrame, text);
        if (frame === null) {
          this.#warn(`ignored a frame from the gateway that this agent does not understand: ${text.slice(0, 200)}`);
          return;
        }
        if (frame.type === "welcome") {
          clearTimeout(welcomeTimer);
          welcomed = true;
          this.#lastWarning = "";
          startHeartbeat(frame.heartbeat_interval_ms ?? tuning?.heartbeatIntervalMs ?? 5_000);
          this.#setConnected(true);
        } else runner.handle(frame);
      });

      ws.on("error", (error: Error) => {
        const refused = /Unexpected server response: (\d+)/.exec(error.message);
        if (refused?.[1] === "401") this.#warn(`the gateway refused the node token (HTTP 401); retrying`);
        else this.#warn(`cannot reach the gateway at ${this.#url}: ${error.message || (error as NodeJS.ErrnoException).code || String(error)}`);
      });

      ws.on("close", (code: number, reason: Buffer) => {
        clearTimeout(welcomeTimer);
        clearTimeout(statusTimer);
        clearInterval(heartbeat);
        unsubscribe?.();
        runner.abortAll("the gateway link was lost");
        if (this.#socket === ws) this.#socket = null;
        if (welcomed && !this.#stopped.signal.aborted) {
          const why = reason.length > 0 ? `: ${reason.toString()}` : "";
          this.#warn(`the gateway closed the connection (code ${code}${why})`);
        } else if (!welcomed && reason.length > 0) {
          this.#warn(`the gateway refused this node (code ${code}: ${reason.toString()})`);
        }
        this.#setConnected(false);
        resolve(welcomed);
      });
    });
  }

  #setConnected(connected: boolean): void {
    if (this.#connected === connected) return;
    this.#connected = connected;
    // The disconnect that close() itself causes is no news (and "reconnecting" would be untrue).
    if (this.#stopped.signal.aborted) return;
    for (const listener of this.#listeners) listener(connected);
  }

  /** The same failure, again and again while reconnecting, is logged once. */
  #warn(message: string): void {
    if (message === this.#lastWarning) return;
    this.#lastWarning = message;
    this.#options.logger?.warn(message);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
