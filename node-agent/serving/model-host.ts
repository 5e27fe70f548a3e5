import { ApiError, invalidRequest, modelNotFound, toApiError } from "../../shared/protocol/api-error.ts";
import type { LoadResult, ModelObject, UnloadResult } from "../../shared/protocol/model-schemas.ts";
import type { LoadRequest, UnloadRequest } from "../../shared/protocol/request-schemas.ts";
import type { CatalogEntry, ModelCatalog } from "../catalog/model-catalog.ts";
import { AGENT_DEFAULTS } from "../configuration/defaults.ts";
import type { BatchCounts } from "../engine/batched-context.ts";
import type { Engine, Logger } from "../engine/engine.ts";
import type { LoadedEmbeddingModel } from "../engine/loaded-embedding-model.ts";
import { LoadedLlm } from "../engine/loaded-llm.ts";
import { ModelLifecycle, type LoadConfig, type ModelLease } from "../engine/model-lifecycle.ts";
import type { MeasuredSpeed } from "../engine/speed-tracker.ts";
import { LoadLimits, type LoadLimitOptions } from "./load-limits.ts";

export interface ModelHostOptions extends LoadLimitOptions {
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
  readonly #limits: LoadLimits;
  readonly #lifecycle: ModelLifecycle<LoadedModel>;

  constructor(options: ModelHostOptions, engine: Engine, catalog: ModelCatalog, events: ModelHostEvents, logger: Logger) {
    this.#options = options;
    this.#engine = engine;
    this.#catalog = catalog;
    this.#events = events;
    this.#limits = new LoadLimits(options, engine);
    this.slotsPerModel = this.#limits.slotsPerModel;
    this.#lifecycle = new ModelLifecycle<LoadedModel>({
      load: (id, config) => this.#load(id, config),
      bound: async (id, config) => {
        const entry = this.#catalog.find(id);
        if (entry) await this.#limits.check(entry, config);
      },
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
      return await this.#lifecycle.acquire(entry.id, await this.#limits.defaultConfig(entry), ttl);
    } catch (error) {
      throw toApiError(error);
    }
  }

  /** Explicit load: the model stays until unloaded (or idle for `ttl`, if given) and is never evicted. */
  async load(request: LoadRequest): Promise<LoadResult> {
    const entry = await this.entry(request.model);
    const config: LoadConfig = {
      contextLength: request.context_length ?? (await this.#limits.defaultContextLength(entry)),
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
  defaultLoadConfig(entry: CatalogEntry): Promise<LoadConfig> {
    return this.#limits.defaultConfig(entry);
  }

  /** 400 unless `draft`, loaded beside `target` for as long as it is, fits what this node gives its models. */
  async checkDraft(target: LoadedLlm, draft: CatalogEntry): Promise<void> {
    const entry = this.#catalog.find(target.id);
    if (entry) await this.#limits.checkDraft({ entry, config: { contextLength: target.contextLength, slots: target.slots } }, draft);
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
