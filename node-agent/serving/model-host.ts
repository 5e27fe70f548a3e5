import { ApiError, invalidRequest, modelNotFound, toApiError } from "../../shared/errors.ts";
import type { LoadResult, ModelObject, UnloadResult } from "../../shared/schemas/models.ts";
import type { LoadRequest, UnloadRequest } from "../../shared/schemas/requests.ts";
import type { CatalogEntry, ModelCatalog } from "../catalog/model-catalog.ts";
import { AGENT_DEFAULTS } from "../configuration/defaults.ts";
import type { BatchCounts } from "../engine/batched-context.ts";
import type { Engine, Logger } from "../engine/engine.ts";
import type { LoadedEmbeddingModel } from "../engine/loaded-embedding-model.ts";
import { LoadedLlm } from "../engine/loaded-llm.ts";
import { ModelLifecycle, type LoadConfig, type ModelLease } from "../engine/model-lifecycle.ts";
import type { MeasuredSpeed } from "../engine/speed-tracker.ts";
import { beyondNodeMemory, beyondTrainedContext, draftBeyondNodeMemory } from "./load-limits.ts";

export interface ModelHostOptions {
  /** Parallel requests (context sequences) per loaded LLM. Defaults to `AGENT_DEFAULTS.slots`. */
  slots?: number;
  /** Context per slot for loads that do not say: at most the model's trained context. Unset: what the model and memory allow (see defaultContextLength). */
  contextLength?: number;
  /**
   * Bytes of memory (RAM and VRAM) the node gives its models: a load whose estimate exceeds it is
   * refused. Defaults to all of this machine's memory.
   */
  memoryBytes?: number;
  /** Requests waiting for a slot, per model, before more get a 503. Defaults to `AGENT_DEFAULTS.maxQueue`. */
  maxQueue?: number;
  /** Idle seconds before a JIT-loaded model unloads, unless its request gave `ttl`. Defaults to `AGENT_DEFAULTS.ttlSeconds`. */
  defaultTtlSeconds?: number;
  /**
   * Loaded models allowed before a JIT load unloads idle JIT-loaded ones (least recently used
   * first). Explicitly loaded and busy models are never unloaded for this, so they can exceed it.
   * Defaults to no count limit: only memory decides.
   */
  maxLoadedModels?: number;
  /** Load progress from 0 to 1 per model id; 1 is reported once, when the model is ready. */
  onLoadProgress?: (modelId: string, fraction: number) => void;
}

/** What the host tells the node's status. */
export interface ModelHostEvents {
  /** A model loaded or unloaded, or the folders' list of models changed. */
  onModelsChange(): void;
  /** A loaded model's slots went busy or free. */
  onSlotsChange(): void;
  /** A generation finished with a measurable decode speed. */
  onMeasured(id: string, speed: MeasuredSpeed): void;
}

export type LoadedModel = LoadedLlm | LoadedEmbeddingModel;

export interface SlotUsage {
  model: string;
  slots: number;
  busy: number;
  /** Requests waiting for one of this model's slots. */
  queued: number;
  /** An LLM's llama.cpp decodes so far and the sequences they carried (batched-context.ts). */
  batches?: BatchCounts;
}

/**
 * The models of this node: those on disk (the catalog, rescanned when a name is unknown), those
 * loaded (LM Studio's lifecycle: JIT load, idle TTL, auto-evict), and the limits every load meets
 * (the trained context, the memory the node gives its models, the default context that fits it).
 */
export class ModelHost {
  readonly slotsPerModel: number;
  readonly #options: ModelHostOptions;
  readonly #engine: Engine;
  readonly #catalog: ModelCatalog;
  readonly #events: ModelHostEvents;
  readonly #lifecycle: ModelLifecycle<LoadedModel>;
  /** Each model's default context per slot, worked out once (it reads the GGUF header). */
  readonly #defaultContexts = new Map<string, number>();

  constructor(options: ModelHostOptions, engine: Engine, catalog: ModelCatalog, events: ModelHostEvents, logger: Logger) {
    this.#options = options;
    this.#engine = engine;
    this.#catalog = catalog;
    this.#events = events;
    this.slotsPerModel = options.slots ?? AGENT_DEFAULTS.slots;
    this.#lifecycle = new ModelLifecycle<LoadedModel>({
      load: (id, config) => this.#load(id, config),
      bound: (id, config) => this.#bound(id, config),
      fits: async (id, config) => {
        const entry = this.#catalog.find(id);
        return entry === undefined || (await this.#engine.fits(entry.path, config, entry.type === "embeddings"));
      },
      maxLoadedModels: options.maxLoadedModels,
      defaultTtlSeconds: options.defaultTtlSeconds ?? AGENT_DEFAULTS.ttlSeconds,
      onChange: () => events.onModelsChange(),
      onInfo: (message) => logger.info(message),
    });
  }

  /** The models on disk as last scanned (`listModels()` rescans). */
  get entries(): readonly CatalogEntry[] {
    return this.#catalog.entries;
  }

  /** Rescans the model folders, so files added since show up. */
  async listModels(): Promise<ModelObject[]> {
    await this.#rescan();
    return this.modelObjects();
  }

  /** The models on disk, each with whether and how it is loaded. */
  modelObjects(): ModelObject[] {
    return this.#catalog.entries.map((entry) => {
      const loaded = this.#lifecycle.get(entry.id);
      return {
        id: entry.id,
        object: "model",
        type: entry.type,
        publisher: entry.publisher,
        arch: entry.arch,
        compatibility_type: "gguf",
        quantization: entry.quantization,
        state: loaded ? "loaded" : "not-loaded",
        max_context_length: entry.contextLength,
        ...(loaded ? { loaded_context_length: loaded.model.contextLength } : {}),
        ...(entry.capabilities.length > 0 ? { capabilities: entry.capabilities } : {}),
      };
    });
  }

  /** The model on disk of that name; a name unknown so far may just have been copied in: rescan once before answering 404. */
  async entry(model: string): Promise<CatalogEntry> {
    let entry = this.#catalog.find(model);
    if (!entry) {
      await this.#rescan();
      entry = this.#catalog.find(model);
    }
    if (!entry) throw modelNotFound(model, this.#catalog.entries.map((candidate) => candidate.id));
    return entry;
  }

  /** Whether the model of that name (as known without a rescan) is loaded now. */
  isLoaded(model: string): boolean {
    const entry = this.#catalog.find(model);
    return entry !== undefined && this.#lifecycle.get(entry.id) !== undefined;
  }

  /** How a model is loaded, if it is. */
  loadedConfig(id: string): LoadConfig | undefined {
    const loaded = this.#lifecycle.get(id);
    return loaded && { contextLength: loaded.model.contextLength, slots: loaded.model.slots };
  }

  /** The model of `kind` for one request, loaded first (JIT) if it is not, held until the lease is released. */
  async acquire(model: string, kind: CatalogEntry["type"], ttl: number | undefined): Promise<ModelLease<LoadedModel>> {
    const entry = await this.entry(model);
    if (entry.type !== kind) {
      throw invalidRequest(
        kind === "embeddings"
          ? `Model "${model}" is not an embedding model; embeddings need a model of type "embeddings".`
          : `Model "${model}" is an embedding model; it only serves embeddings, not chat or text completions.`,
        "model",
      );
    }
    try {
      return await this.#lifecycle.acquire(entry.id, await this.defaultLoadConfig(entry), ttl);
    } catch (error) {
      throw toApiError(error);
    }
  }

  /** Explicit load: the model stays until unloaded (or idle for `ttl`, if given) and is never evicted. */
  async load(request: LoadRequest): Promise<LoadResult> {
    const entry = await this.entry(request.model);
    const config: LoadConfig = {
      contextLength: request.context_length ?? (await this.#defaultContextLength(entry)),
      slots: entry.type === "embeddings" ? 1 : (request.parallel ?? this.slotsPerModel),
    };
    try {
      const { instance, seconds } = await this.#lifecycle.load(entry.id, config, request.ttl);
      return {
        type: entry.type === "embeddings" ? "embedding" : "llm",
        instance_id: entry.id,
        load_time_seconds: seconds,
        status: "loaded",
        ...(request.echo_load_config ? { load_config: { context_length: instance.model.contextLength, parallel: instance.model.slots } } : {}),
      };
    } catch (error) {
      throw toApiError(error);
    }
  }

  async unload(request: UnloadRequest): Promise<UnloadResult> {
    const id = request.instance_id ?? request.model ?? "";
    if (!(await this.#lifecycle.unload(id))) {
      // Which models are loaded is not said: behind a gateway, this reaches keys scoped to other models.
      throw new ApiError(404, `Model "${id}" is not loaded, so there is nothing to unload.`, { param: "instance_id", code: "model_not_loaded" });
    }
    return { instance_id: id };
  }

  /** How a request loads the model when it is not loaded: the node's slots and the default context. */
  async defaultLoadConfig(entry: CatalogEntry): Promise<LoadConfig> {
    return { contextLength: await this.#defaultContextLength(entry), slots: this.#slotsFor(entry) };
  }

  /** A draft loads beside its model and stays only while it does: the two together must fit what this node gives its models. */
  async draftFits(target: LoadedLlm, draft: CatalogEntry): Promise<void> {
    const targetEntry = this.#catalog.find(target.id);
    if (!targetEntry) return;
    const [targetNeeds, draftNeeds, limit] = await Promise.all([
      this.#engine.footprint(targetEntry.path, { contextLength: target.contextLength, slots: target.slots }, false),
      this.defaultLoadConfig(draft).then((config) => this.#engine.footprint(draft.path, config, false)),
      this.#memoryLimit(),
    ]);
    const needed = targetNeeds.ram_bytes + targetNeeds.vram_bytes + draftNeeds.ram_bytes + draftNeeds.vram_bytes;
    if (needed > limit) throw draftBeyondNodeMemory(draft.id, target.id, needed, limit);
  }

  /** Busy slots of every loaded model. */
  busySlots(): Record<string, number> {
    return Object.fromEntries(this.#lifecycle.loaded().map((instance) => [instance.id, instance.model.busySlots]));
  }

  /** Slots and queue of every loaded model, for metrics; cheap enough to call on every scrape. */
  slotUsage(): SlotUsage[] {
    return this.#lifecycle.loaded().map(({ id, model }) => ({
      model: id,
      slots: model.slots,
      busy: model.busySlots,
      queued: model.queuedRequests,
      ...(model instanceof LoadedLlm ? { batches: model.batchCounts } : {}),
    }));
  }

  /** Unloads every model, stopping what runs on them. */
  dispose(): Promise<void> {
    return this.#lifecycle.dispose();
  }

  async #rescan(): Promise<void> {
    if (await this.#catalog.refresh()) this.#events.onModelsChange();
  }

  /**
   * Context per slot for a load that does not say: `--context-length` (at most the trained
   * context), else all the model was trained for, halved while the load would take more than
   * `AGENT_DEFAULTS.defaultLoadMemoryShare` of this node's memory, but never below
   * `AGENT_DEFAULTS.contextLength` (or the trained context, if smaller).
   */
  async #defaultContextLength(entry: CatalogEntry): Promise<number> {
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

  #slotsFor(entry: CatalogEntry): number {
    return entry.type === "embeddings" ? 1 : this.slotsPerModel;
  }

  /** The memory this node gives its models: `--memory`, else all of this machine's. */
  async #memoryLimit(): Promise<number> {
    return this.#options.memoryBytes ?? (await this.#engine.totalMemory());
  }

  /** 400 for a load beyond what the model was trained for or what this node's memory could ever hold. */
  async #bound(id: string, config: LoadConfig): Promise<void> {
    const entry = this.#catalog.find(id);
    if (!entry) return;
    if (config.contextLength > entry.contextLength) throw beyondTrainedContext(id, config, entry.contextLength);
    const needs = await this.#engine.footprint(entry.path, config, entry.type === "embeddings");
    const needed = needs.ram_bytes + needs.vram_bytes;
    const limit = await this.#memoryLimit();
    if (needed > limit) throw beyondNodeMemory(id, config, needed, limit);
  }

  async #load(id: string, config: LoadConfig): Promise<LoadedModel> {
    const entry = this.#catalog.find(id);
    if (!entry) throw modelNotFound(id, this.#catalog.entries.map((candidate) => candidate.id));
    const report = this.#options.onLoadProgress;
    // node-llama-cpp's progress covers the weights only, and can arrive after the load resolves;
    // 1 is sent once the context exists, and nothing after it.
    let ready = false;
    const onLoadProgress = report
      ? (fraction: number) => {
          if (!ready) report(id, Math.min(fraction, 0.99));
        }
      : undefined;
    report?.(id, 0);
    const shared = {
      id,
      path: entry.path,
      contextLength: config.contextLength,
      maxQueue: this.#options.maxQueue ?? AGENT_DEFAULTS.maxQueue,
      onLoadProgress,
      onSlotsChange: () => this.#events.onSlotsChange(),
    };
    const model =
      entry.type === "embeddings"
        ? await this.#engine.loadEmbeddingModel(shared)
        : await this.#engine.loadLlm({
            ...shared,
            slots: config.slots,
            arch: entry.arch,
            quantization: entry.quantization,
            onMeasured: (speed) => this.#events.onMeasured(id, speed),
          });
    ready = true;
    report?.(id, 1);
    return model;
  }
}
