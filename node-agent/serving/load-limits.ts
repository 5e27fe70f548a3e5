import { ApiError } from "../../shared/protocol/api-error.ts";
import type { CatalogEntry } from "../catalog/model-catalog.ts";
import { AGENT_DEFAULTS } from "../configuration/defaults.ts";
import type { Engine } from "../engine/engine.ts";
import type { LoadConfig } from "../engine/model-lifecycle.ts";

export interface LoadLimitOptions {
  /** Parallel requests (context sequences) per loaded LLM. Defaults to `AGENT_DEFAULTS.slots`. */
  slots?: number;
  /** Context per slot for loads that do not say: at most the model's trained context. Unset: what the model and memory allow (see defaultContextLength). */
  contextLength?: number;
  /**
   * Bytes of memory (RAM and VRAM) the node gives its models: a load whose estimate exceeds it is
   * refused. Defaults to all of this machine's memory.
   */
  memoryBytes?: number;
}

/**
 * The limits every load on this node meets: no more context than the model was trained for, no
 * more memory than the node gives its models; and how a load that does not say is configured.
 */
export class LoadLimits {
  readonly slotsPerModel: number;
  readonly #options: LoadLimitOptions;
  readonly #engine: Engine;
  /** Each model's default context per slot, worked out once (it reads the GGUF header). */
  readonly #defaultContexts = new Map<string, number>();

  constructor(options: LoadLimitOptions, engine: Engine) {
    this.#options = options;
    this.#engine = engine;
    this.slotsPerModel = options.slots ?? AGENT_DEFAULTS.slots;
  }

  /** How a request loads the model when it is not loaded: the node's slots and the default context. */
  async defaultConfig(entry: CatalogEntry): Promise<LoadConfig> {
    return { contextLength: await this.defaultContextLength(entry), slots: this.#slotsFor(entry) };
  }

  /**
   * Context per slot for a load that does not say: `--context-length` (at most the trained
   * context), else all the model was trained for, halved while the load would take more than
   * `AGENT_DEFAULTS.defaultLoadMemoryShare` of this node's memory, but never below
   * `AGENT_DEFAULTS.contextLength` (or the trained context, if smaller).
   */
  async defaultContextLength(entry: CatalogEntry): Promise<number> {
    if (this.#options.contextLength !== undefined) return Math.min(entry.contextLength, this.#options.contextLength);
    const floor = Math.min(entry.contextLength, AGENT_DEFAULTS.contextLength);
    const cached = this.#defaultContexts.get(entry.id);
    if (cached !== undefined) return cached;
    const budget = (await this.#memoryLimit()) * AGENT_DEFAULTS.defaultLoadMemoryShare;
    let contextLength = entry.contextLength;
    while (contextLength > floor) {
      const needs = await this.#engine.footprint(entry.path, { contextLength, slots: this.#slotsFor(entry) }, entry.type === "embeddings");
      if (needs.ram_bytes + needs.vram_bytes <= budget) break;
      contextLength = Math.max(floor, Math.floor(contextLength / 2));
    }
    this.#defaultContexts.set(entry.id, contextLength);
    return contextLength;
  }

  /** 400 for a load beyond what the model was trained for or what this node's memory could ever hold. */
  async check(entry: CatalogEntry, config: LoadConfig): Promise<void> {
    if (config.contextLength > entry.contextLength) {
      throw new ApiError(400, `context_length ${config.contextLength} is more than model "${entry.id}" was trained for: at most ${entry.contextLength}.`, {
        param: "context_length",
        code: "context_length_too_large",
      });
    }
    const needs = await this.#engine.footprint(entry.path, config, entry.type === "embeddings");
    const needed = needs.ram_bytes + needs.vram_bytes;
    const limit = await this.#memoryLimit();
    if (needed > limit) {
      throw new ApiError(
        400,
        `Loading "${entry.id}" with context_length ${config.contextLength} and parallel ${config.slots} needs about ${gib(needed)} of memory; ` +
          `this node gives its models at most ${gib(limit)}. Load it with a smaller context_length or parallel.`,
        { param: "context_length", code: "load_exceeds_memory" },
      );
    }
  }

  /** A draft loads beside its model and stays only while it does: 400 unless the two together fit what this node gives its models. */
  async checkDraft(target: { entry: CatalogEntry; config: LoadConfig }, draft: CatalogEntry): Promise<void> {
    const [targetNeeds, draftNeeds, limit] = await Promise.all([
      this.#engine.footprint(target.entry.path, target.config, false),
      this.defaultConfig(draft).then((config) => this.#engine.footprint(draft.path, config, false)),
      this.#memoryLimit(),
    ]);
    const needed = targetNeeds.ram_bytes + targetNeeds.vram_bytes + draftNeeds.ram_bytes + draftNeeds.vram_bytes;
    if (needed <= limit) return;
    throw new ApiError(
      400,
      `draft_model "${draft.id}" does not fit beside "${target.entry.id}": the two need about ${gib(needed)} of memory; ` +
        `this node gives its models at most ${gib(limit)}. Use a smaller draft model, or none.`,
      { param: "draft_model", code: "draft_model_too_large" },
    );
  }

  #slotsFor(entry: CatalogEntry): number {
    return entry.type === "embeddings" ? 1 : this.slotsPerModel;
  }

  /** The memory this node gives its models: `--max-memory`, else all of this machine's. */
  async #memoryLimit(): Promise<number> {
    return this.#options.memoryBytes ?? (await this.#engine.totalMemory());
  }
}

/** A byte count as memory is spoken of: "7.5 GiB". */
export function gib(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}
