import type { Operation } from "../../../shared/protocol/frames.ts";
import { SECONDS_BUCKETS, TOKENS_PER_SECOND_BUCKETS } from "../../../shared/host/metrics-buckets.ts";
import { MetricsRegistry, type Counter, type Gauge, type Histogram } from "./registry.ts";

/** The fleet right now, read on every scrape. */
export interface FleetReadings {
  /** Nodes connected and sending heartbeats. */
  nodesConnected: number;
  /** Each loaded model's slots on each of those nodes. */
  slots: Array<{ node: string; model: string; busy: number; total: number }>;
  queueDepth: number;
  inFlight: number;
}

/** One request as it settled. */
export interface RequestObservation {
  readonly op: Operation["op"];
  /** The model it is filed under: a name no node holds is "unknown", never a series of its own. */
  readonly model: string;
  /** The HTTP status it ended with (499: the client went away first). */
  readonly status: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** From arrival in the fleet to the first token relayed. */
  readonly firstTokenMs: number | null;
  readonly durationMs: number;
  /** Decode speed the node measured. */
  readonly tokensPerSecond: number | null;
}

/** Routes as the agent's metrics name them (`lmgate_agent_requests_total{route}`), so both read alike. */
const ROUTES: Record<Operation["op"], string> = {
  chat: "chat/completions",
  completion: "completions",
  embeddings: "embeddings",
  load: "models/load",
  unload: "models/unload",
  download: "models/download",
  cancel_download: "models/download/cancel",
  delete: "models/delete",
  count_tokens: "messages/count_tokens",
  wake: "nodes/wake",
};

/**
 * The gateway's Prometheus metrics (`lmgate_gateway_*`, the agent's `lmgate_agent_*` seen from
 * the fleet). They are counted in the Fleet object's memory and saved to its storage shortly after
 * (`SavedState`; a write per request would hold back the fleet's frames), so hibernation and
 * eviction do not reset them. Requests are counted once each, when they settle; node, slot and
 * queue gauges are read from the fleet at scrape time.
 */
export class FleetMetrics {
  readonly #registry = new MetricsRegistry();
  readonly #read: () => FleetReadings;
  readonly #requests: Counter<"route" | "model" | "status">;
  readonly #refused: Counter<"code">;
  readonly #promptTokens: Counter<"model">;
  readonly #completionTokens: Counter<"model">;
  readonly #timeToFirstToken: Histogram<"route" | "model">;
  readonly #duration: Histogram<"route" | "model">;
  readonly #tokensPerSecond: Histogram<"model">;
  readonly #reconnects: Counter<"node">;
  readonly #fleetCalls: Counter<"call">;
  readonly #nodesConnected: Gauge;
  readonly #queueDepth: Gauge;
  readonly #inFlight: Gauge;
  readonly #slotsBusy: Gauge<"node" | "model">;
  readonly #slots: Gauge<"node" | "model">;

  constructor(read: () => FleetReadings) {
    this.#read = read;
    const registry = this.#registry;
    this.#requests = registry.counter({
      name: "lmgate_gateway_requests_total",
      help: "API requests past their key's checks, by route (chat/completions, completions, embeddings, models/load, models/unload), model and the HTTP status they ended with (499: the client went away).",
      labelNames: ["route", "model", "status"],
    });
    this.#refused = registry.counter({
      name: "lmgate_gateway_requests_refused_total",
      help: "API requests the fleet refused before routing, by error code: unknown, revoked or expired keys (invalid_api_key), models outside a key's scope (model_not_allowed), keys over their limits (rate_limit_exceeded, tokens_per_day_exceeded).",
      labelNames: ["code"],
    });
    this.#promptTokens = registry.counter({
      name: "lmgate_gateway_prompt_tokens_total",
      help: "Prompt tokens of finished requests (chat, completions and embeddings inputs).",
      labelNames: ["model"],
    });
    this.#completionTokens = registry.counter({
      name: "lmgate_gateway_completion_tokens_total",
      help: "Generated tokens of finished requests.",
      labelNames: ["model"],
    });
    this.#timeToFirstToken = registry.histogram({
      name: "lmgate_gateway_time_to_first_token_seconds",
      help: "From a request's arrival in the fleet to its first token on the way to the client: queueing, routing, JIT loading and the node's own time to first token.",
      labelNames: ["route", "model"],
      buckets: SECONDS_BUCKETS,
    });
    this.#duration = registry.histogram({
      name: "lmgate_gateway_request_duration_seconds",
      help: "From a request's arrival in the fleet to its result or failure.",
      labelNames: ["route", "model"],
      buckets: SECONDS_BUCKETS,
    });
    this.#tokensPerSecond = registry.histogram({
      name: "lmgate_gateway_tokens_per_second",
      help: "Decode speed of each generation, as its node measured it (tokens after the first, per second after the first).",
      labelNames: ["model"],
      buckets: TOKENS_PER_SECOND_BUCKETS,
    });
    this.#reconnects = registry.counter({
      name: "lmgate_gateway_node_reconnects_total",
      help: "Hellos from a node name the fleet already knew: agent restarts and dropped links.",
      labelNames: ["node"],
    });
    this.#fleetCalls = registry.counter({
      name: "lmgate_gateway_fleet_calls_total",
      help: "Calls into the Fleet object, the one control plane, by entry point: a generation costs admit and settle however long its answer (its tokens go through its node's object), plus retry when a node fails it.",
      labelNames: ["call"],
    });
    this.#nodesConnected = registry.gauge({ name: "lmgate_gateway_nodes_connected", help: "Nodes connected and sending heartbeats." });
    this.#queueDepth = registry.gauge({ name: "lmgate_gateway_queue_depth", help: "Requests waiting for a free slot, fleet-wide." });
    this.#inFlight = registry.gauge({ name: "lmgate_gateway_requests_in_flight", help: "Requests running on a node right now." });
    this.#slotsBusy = registry.gauge({
      name: "lmgate_gateway_slots_busy",
      help: "Slots generating right now, per node and loaded model (sum by node for a node's total).",
      labelNames: ["node", "model"],
    });
    this.#slots = registry.gauge({
      name: "lmgate_gateway_slots",
      help: "Slots (parallel sequences) per node and loaded model.",
      labelNames: ["node", "model"],
    });
  }

  /** One request, as it settled: the same observation that feeds usage and the dashboard. */
  observe(job: RequestObservation): void {
    const route = ROUTES[job.op];
    const { model } = job;
    this.#requests.inc({ route, model, status: String(job.status) });
    this.#duration.observe({ route, model }, job.durationMs / 1000);
    if (job.promptTokens > 0) this.#promptTokens.inc({ model }, job.promptTokens);
    if (job.completionTokens > 0) this.#completionTokens.inc({ model }, job.completionTokens);
    if (job.firstTokenMs !== null) this.#timeToFirstToken.observe({ route, model }, job.firstTokenMs / 1000);
    if (job.tokensPerSecond !== null) this.#tokensPerSecond.observe({ model }, job.tokensPerSecond);
  }

  refused(code: string): void {
    this.#refused.inc({ code });
  }

  fleetCalled(call: string): void {
    this.#fleetCalls.inc({ call });
  }

  nodeReconnected(node: string): void {
    this.#reconnects.inc({ node });
  }

  saved(): unknown {
    return this.#registry.saved();
  }

  restore(saved: unknown): void {
    if (typeof saved === "object" && saved !== null) this.#registry.restore(saved as Record<string, unknown>);
  }

  /** Everything, in the Prometheus text format. */
  text(): string {
    const { nodesConnected, slots, queueDepth, inFlight } = this.#read();
    this.#nodesConnected.set({}, nodesConnected);
    this.#queueDepth.set({}, queueDepth);
    this.#inFlight.set({}, inFlight);
    // Rebuilt on each scrape, so nodes that left and models that unloaded drop out.
    this.#slotsBusy.reset();
    this.#slots.reset();
    for (const { node, model, busy, total } of slots) {
      this.#slotsBusy.set({ node, model }, busy);
      this.#slots.set({ node, model }, total);
    }
    return this.#registry.render();
  }
}
