import type { ModelFootprint, NodeMemory, NodeStatus } from "../../shared/protocol/frames.ts";
import type { Engine, Logger } from "../engine/engine.ts";
import { SpeedTracker, type MeasuredSpeed } from "../engine/speed-tracker.ts";
import type { ModelHost } from "./model-host.ts";

/**
 * What the node reports of itself (its models, busy slots, measured speed, free memory and what
 * each model takes to load) and who is told when that changes: the gateway link and metrics.
 */
export class NodeStatusTracker {
  readonly #engine: Engine;
  readonly #host: ModelHost;
  readonly #logger: Logger;
  readonly #speeds = new SpeedTracker();
  readonly #listeners = new Set<() => void>();
  /** What status() reports for placement; refreshed when models load or unload, or the folders change. */
  #memory: NodeMemory | undefined;
  readonly #footprints = new Map<string, ModelFootprint>();
  #measuring = true;

  constructor(engine: Engine, host: ModelHost, logger: Logger) {
    this.#engine = engine;
    this.#host = host;
    this.#logger = logger;
  }

  /** Models, busy slots and measured speed, as the gateway link reports them. */
  status(): NodeStatus {
    return {
      models: this.#host.modelObjects(),
      busy: this.#host.busySlots(),
      speed: this.#speeds.snapshot(),
      ...(this.#memory ? { memory: this.#memory } : {}),
      ...(this.#footprints.size > 0 ? { footprints: Object.fromEntries(this.#footprints) } : {}),
      counts_tokens: true,
    };
  }

  /** Calls `listener` on every change of the status; returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  recordSpeed(id: string, speed: MeasuredSpeed): void {
    this.#speeds.record(id, speed);
  }

  /** A model loaded or unloaded, or the list of models changed: listeners hear it now, and again once memory is measured anew. */
  modelsChanged(): void {
    this.notify();
    void this.measureMemory();
  }

  notify(): void {
    for (const listener of this.#listeners) {
      try {
        listener();
      } catch (error) {
        this.#logger.warn(`a status listener failed: ${(error as Error).message}`);
      }
    }
  }

  /**
   * Free memory now, and what each model on disk takes to load with this node's defaults (read
   * once per model from its GGUF header). Never fails: placement just has less to go on.
   */
  async measureMemory(): Promise<void> {
    if (!this.#measuring) return;
    try {
      const entries = this.#host.entries;
      const ids = new Set(entries.map((entry) => entry.id));
      for (const id of this.#footprints.keys()) if (!ids.has(id)) this.#footprints.delete(id);
      for (const entry of entries) {
        if (this.#footprints.has(entry.id)) continue;
        const config = await this.#host.defaultLoadConfig(entry);
        this.#footprints.set(entry.id, await this.#engine.footprint(entry.path, config, entry.type === "embeddings"));
      }
      this.#memory = await this.#engine.freeMemory();
    } catch (error) {
      if (!this.#measuring) return;
      this.#logger.warn(`could not measure memory for placement: ${(error as Error).message}`);
      return;
    }
    this.notify();
  }

  /** The engine is going away: memory is not measured again (listeners still hear the models unload). */
  stopMeasuring(): void {
    this.#measuring = false;
  }

  dropListeners(): void {
    this.#listeners.clear();
  }
}
