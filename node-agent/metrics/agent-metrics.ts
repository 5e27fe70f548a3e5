import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { SECONDS_BUCKETS, TOKENS_PER_SECOND_BUCKETS } from "../../shared/host/metrics-buckets.ts";
import type { BatchCounts } from "../engine/batched-context.ts";
import type { SlotUsage } from "../serving/model-host.ts";
import type { FinishedRequest, RequestObserver, RequestRoute } from "../serving/tracked-backend.ts";

export interface AgentMetricsOptions {
  /** Read on every scrape: slots and queue of each loaded model. */
  slotUsage: () => SlotUsage[];
  /** Shown on `lmgate_agent_info`. */
  version: string;
  /** Shown on `lmgate_agent_info`, e.g. `llama.cpp-linux-x86_64-cuda`. */
  runtime: string;
  /** Node.js process metrics (`process_*`, `nodejs_*`). Defaults to true. */
  processMetrics?: boolean;
}

/**
 * The agent's Prometheus metrics, in a registry of their own (nothing global, so several agents
 * can live in one process, as in tests). Requests are recorded once each, when they end; slot and
 * queue gauges are read from the engine when scraped.
 */
export class AgentMetrics implements RequestObserver {
  readonly registry = new Registry();
  readonly #requests: Counter<"route" | "model" | "status">;
  readonly #inFlight: Gauge<"route">;
  readonly #promptTokens: Counter<"model">;
  readonly #completionTokens: Counter<"model">;
  readonly #timeToFirstToken: Histogram<"model">;
  readonly #duration: Histogram<"route" | "model">;
  readonly #tokensPerSecond: Histogram<"model">;

  constructor(options: AgentMetricsOptions) {
    const registers = [this.registry];
    new Gauge({
      name: "lmgate_agent_info",
      help: "Always 1; the labels say which agent version and llama.cpp runtime this is.",
      labelNames: ["version", "runtime"],
      registers,
    }).set({ version: options.version, runtime: options.runtime }, 1);
    this.#requests = new Counter({
      name: "lmgate_agent_requests_total",
      help: "Requests that reached the engine, by route (chat/completions, completions, embeddings, models/load, models/unload), model and HTTP status (499: the caller left).",
      labelNames: ["route", "model", "status"],
      registers,
    });
    this.#inFlight = new Gauge({
      name: "lmgate_agent_requests_in_flight",
      help: "Requests running or waiting for a slot or a model load.",
      labelNames: ["route"],
      registers,
    });
    this.#promptTokens = new Counter({
      name: "lmgate_agent_prompt_tokens_total",
      help: "Prompt tokens of finished requests (chat, completions and embeddings inputs).",
      labelNames: ["model"],
      registers,
    });
    this.#completionTokens = new Counter({
      name: "lmgate_agent_completion_tokens_total",
      help: "Generated tokens of finished requests.",
      labelNames: ["model"],
      registers,
    });
    this.#timeToFirstToken = new Histogram({
      name: "lmgate_agent_time_to_first_token_seconds",
      help: "From a request's arrival at the engine to its first generated token, queueing and JIT loading included.",
      labelNames: ["model"],
      buckets: [...SECONDS_BUCKETS],
      registers,
    });
    this.#duration = new Histogram({
      name: "lmgate_agent_request_duration_seconds",
      help: "From a request's arrival at the engine to its result or failure.",
      labelNames: ["route", "model"],
      buckets: [...SECONDS_BUCKETS],
      registers,
    });
    this.#tokensPerSecond = new Histogram({
      name: "lmgate_agent_tokens_per_second",
      help: "Decode speed of each generation with at least two tokens (tokens after the first, per second after the first).",
      labelNames: ["model"],
      buckets: [...TOKENS_PER_SECOND_BUCKETS],
      registers,
    });

    const perModel = (name: string, help: string, value: (usage: SlotUsage) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ["model"],
        registers,
        collect() {
          // Rebuilt on each scrape, so unloaded models drop out instead of staying at their last value.
          this.reset();
          for (const usage of options.slotUsage()) this.set({ model: usage.model }, value(usage));
        },
      });
    perModel("lmgate_agent_queue_depth", "Requests waiting for a slot, per loaded model.", (usage) => usage.queued);
    perModel("lmgate_agent_slots_busy", "Slots generating right now, per loaded model.", (usage) => usage.busy);
    perModel("lmgate_agent_slots", "Slots (parallel sequences) per loaded model.", (usage) => usage.slots);
    // Counted by the engine since the model loaded, read at scrape time; a reload starts them over.
    const perLlmCount = (name: string, help: string, value: (batches: BatchCounts) => number) =>
      new Counter({
        name,
        help,
        labelNames: ["model"],
        registers,
        collect() {
          this.reset();
          for (const usage of options.slotUsage()) if (usage.batches) this.inc({ model: usage.model }, value(usage.batches));
        },
      });
    perLlmCount("lmgate_agent_decodes_total", "llama.cpp decodes (batches) run for a loaded LLM.", (batches) => batches.decodes);
    perLlmCount(
      "lmgate_agent_decode_sequences_total",
      "Sequences (slots) those decodes carried; ÷ decodes = how many streams share each step.",
      (batches) => batches.sequences,
    );
    new Gauge({
      name: "lmgate_agent_models_loaded",
      help: "Models loaded right now.",
      registers,
      collect() {
        this.set(options.slotUsage().length);
      },
    });
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** The Prometheus text format content type of `text()`. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Everything, in the Prometheus text exposition format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  onRequestStart(route: RequestRoute): void {
    this.#inFlight.inc({ route });
  }

  onRequestEnd(request: FinishedRequest): void {
    const { route, model } = request;
    this.#inFlight.dec({ route });
    this.#requests.inc({ route, model, status: String(request.status) });
    this.#duration.observe({ route, model }, request.seconds);
    if (request.promptTokens !== undefined) this.#promptTokens.inc({ model }, request.promptTokens);
    if (request.completionTokens !== undefined) this.#completionTokens.inc({ model }, request.completionTokens);
    if (request.timeToFirstTokenSeconds !== undefined) this.#timeToFirstToken.observe({ model }, request.timeToFirstTokenSeconds);
    if (request.tokensPerSecond !== undefined) this.#tokensPerSecond.observe({ model }, request.tokensPerSecond);
  }
}
