import type { InferenceBackend } from "../../shared/backend.ts";
import { ApiError, invalidRequest, modelNotFound, toApiError } from "../../shared/errors.ts";
import { atDone } from "../../shared/generation-contract.ts";
import type { Hardware, ModelFootprint, NodeMemory, NodeStatus } from "../../shared/protocol.ts";
import type { EmbeddingsResult, GenerationEvent, Runtime } from "../../shared/schemas/generation.ts";
import type { LoadResult, ModelObject, UnloadResult } from "../../shared/schemas/models.ts";
import type { ModelSpeculation } from "../../shared/schemas/v1-models.ts";
import type { TokenCount } from "../../shared/schemas/token-count.ts";
import type { ChatRequest, CompletionRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "../../shared/schemas/requests.ts";
import { gib } from "../start-up/banner.ts";
import { AGENT_DEFAULTS } from "../configuration/defaults.ts";
import { ModelCatalog, type CatalogEntry } from "../catalog/model-catalog.ts";
import { Engine, type Logger } from "../engine/engine.ts";
import { LoadedEmbeddingModel } from "../engine/loaded-embedding-model.ts";
import type { BatchCounts } from "../engine/batched-context.ts";
import { LoadedLlm } from "../engine/loaded-llm.ts";
import { ModelLifecycle, type LoadConfig, type ModelLease } from "../engine/model-lifecycle.ts";
import { SpeedTracker } from "../engine/speed-tracker.ts";
import { defaultSpeculation, speculationChoice, type SpeculativeDefaults } from "../engine/speculative/speculation-choice.ts";
import type { Speculation } from "../engine/speculative/speculation.ts";

export type { Logger } from "../engine/engine.ts";

export interface LocalBackendOptions {
  /** Folders searched recursively for `.gguf` files (LM Studio's `<publisher>/<repo>/<file>.gguf` layout gives ids their publisher). */
  modelDirs: string[];
  /** CPU threads per model. Defaults to 1 on a CPU-only machine with ≤2 cores, half the cores on a bigger one, node-llama-cpp's default with a GPU. */
  threads?: number;
  /** `false` never uses a GPU. Defaults to `"auto"`. */
  gpu?: "auto" | false;
  /** Parallel requests (context sequences) per loaded LLM. Defaults to `AGENT_DEFAULTS.slots`. */
  slots?: number;
  /** Context per slot for loads that do not say: at most the model's trained context. Unset: what the model and memory allow (see #defaultContextLength). */
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
  /** Speculative decoding per model when its requests do not choose (`draft_model`, `prompt_lookup`). */
  speculative?: SpeculativeDefaults;
  /** Load progress from 0 to 1 per model id; 1 is reported once, when the model is ready. */
  onLoadProgress?: (modelId: string, fraction: number) => void;
  logger?: Logger;
}

type LoadedModel = LoadedLlm | LoadedEmbeddingModel;

export interface SlotUsage {
  model: string;
  slots: number;
  busy: number;
  /** Requests waiting for one of this model's slots. */
  queued: number;
  /** An LLM's llama.cpp decodes so far and the sequences they carried (batched-context.ts). */
  batches?: BatchCounts;
}

const silentLogger: Logger = { info: () => {}, warn: () => {} };

/**
 * The node agent's `InferenceBackend`: models found on this machine's disk, served by
 * node-llama-cpp, with LM Studio's lifecycle (JIT load, idle TTL, auto-evict). Also what the
 * gateway link reports: `status()`, `hardware()`, `runtime`, `slotsPerModel` and change events.
 */
export class LocalBackend implements InferenceBackend {
  readonly runtime: Runtime;
  /** CPU threads every context evaluates with. */
  readonly threads: number;
  readonly slotsPerModel: number;
  readonly #options: LocalBackendOptions;
  readonly #logger: Logger;
  readonly #engine: Engine;
  readonly #catalog: ModelCatalog;
  readonly #lifecycle: ModelLifecycle<LoadedModel>;
  readonly #speeds = new SpeedTracker();
  readonly #listeners = new Set<() => void>();
  /** What status() reports for placement; refreshed when models load or unload, or the folders change. */
  #memory: NodeMemory | undefined;
  readonly #footprints = new Map<string, ModelFootprint>();
  /** Each model's default context per slot, worked out once (it reads the GGUF header). */
  readonly #defaultContexts = new Map<string, number>();
  #disposed: Promise<void> | undefined;

  private constructor(options: LocalBackendOptions, engine: Engine, catalog: ModelCatalog, logger: Logger) {
    this.#options = options;
    this.#logger = logger;
    this.#engine = engine;
    this.#catalog = catalog;
    this.runtime = engine.runtime;
    this.threads = engine.threads;
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
      onChange: () => {
        this.#notify();
        void this.#refreshMemory();
      },
      onInfo: (message) => logger.info(message),
    });
  }

  /** Starts llama.cpp and scans the model folders; loads nothing yet. */
  static async create(options: LocalBackendOptions): Promise<LocalBackend> {
    const logger = options.logger ?? silentLogger;
    const engine = await Engine.create({ gpu: options.gpu, threads: options.threads, logger });
    const catalog = new ModelCatalog({ dirs: options.modelDirs, onWarning: (message) => logger.warn(message) });
    await catalog.refresh();
    const backend = new LocalBackend(options, engine, catalog, logger);
    await backend.#refreshMemory();
    return backend;
  }

  /** Rescans the model folders, so files added since show up. */
  async listModels(): Promise<ModelObject[]> {
    if (await this.#catalog.refresh()) this.#catalogChanged();
    return this.#modelObjects();
  }

  chat(request: ChatRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    return this.#generate(request, (model, speculation) => model.chat(request, signal, speculation));
  }

  completion(request: CompletionRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    return this.#generate(request, (model, speculation) => model.completion(request, signal, speculation));
  }

  async embeddings(request: EmbeddingsRequest, signal: AbortSignal): Promise<EmbeddingsResult> {
    const lease = await this.#acquire(request.model, "embeddings", request.ttl);
    try {
      const inputs = typeof request.input === "string" ? [request.input] : request.input;
      const { vectors, promptTokens } = await (lease.model as LoadedEmbeddingModel).embed(inputs, signal);
      return { model: request.model, embeddings: vectors, usage: { prompt_tokens: promptTokens, total_tokens: promptTokens } };
    } finally {
      lease.release();
    }
  }

  /** Loads the model if needed (JIT, like a chat), then counts with its tokenizer and chat template. */
  async countTokens(request: ChatRequest): Promise<TokenCount> {
    const lease = await this.#acquire(request.model, "llm", request.ttl);
    try {
      return { prompt_tokens: (lease.model as LoadedLlm).countTokens(request) };
    } finally {
      lease.release();
    }
  }

  /** Explicit load: the model stays until unloaded (or idle for `ttl`, if given) and is never evicted. */
  async loadModel(request: LoadRequest): Promise<LoadResult> {
    const entry = await this.#entry(request.model);
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

  async unloadModel(request: UnloadRequest): Promise<UnloadResult> {
    const id = request.instance_id ?? request.model ?? "";
    if (!(await this.#lifecycle.unload(id))) {
      // Which models are loaded is not said: behind a gateway, this reaches keys scoped to other models.
      throw new ApiError(404, `Model "${id}" is not loaded, so there is nothing to unload.`, { param: "instance_id", code: "model_not_loaded" });
    }
    return { instance_id: id };
  }

  /** The models on disk as last scanned (`listModels()` rescans). */
  catalogEntries(): readonly CatalogEntry[] {
    return this.#catalog.entries;
  }

  /** How the node's owner has a model draft when its requests do not say (`--draft-model`, `--prompt-lookup`). */
  speculativeDefault(id: string): ModelSpeculation | undefined {
    return defaultSpeculation(this.#options.speculative ?? {}, id);
  }

  /** How a model is loaded, if it is. */
  loadedConfig(id: string): LoadConfig | undefined {
    const loaded = this.#lifecycle.get(id);
    return loaded && { contextLength: loaded.model.contextLength, slots: loaded.model.slots };
  }

  /** Models, busy slots and measured speed, as the gateway link reports them. */
  status(): NodeStatus {
    return {
      models: this.#modelObjects(),
      busy: Object.fromEntries(this.#lifecycle.loaded().map((instance) => [instance.id, instance.model.busySlots])),
      speed: this.#speeds.snapshot(),
      ...(this.#memory ? { memory: this.#memory } : {}),
      ...(this.#footprints.size > 0 ? { footprints: Object.fromEntries(this.#footprints) } : {}),
      counts_tokens: true,
    };
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

  hardware(): Promise<Hardware> {
    return this.#engine.hardware();
  }

  /** Calls `listener` when a model loads or unloads, slots go busy or free, or the model list changes; returns the unsubscribe. */
  onStatusChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Unloads every model (stopping what runs on them), then frees llama.cpp. Idempotent. */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      await this.#lifecycle.dispose();
      await this.#engine.dispose();
      this.#listeners.clear();
    })();
    return this.#disposed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  async *#generate(
    request: ChatRequest | CompletionRequest,
    run: (model: LoadedLlm, speculation: Speculation | undefined) => AsyncGenerator<GenerationEvent>,
  ): AsyncGenerator<GenerationEvent> {
    const entry = this.#catalog.find(request.model);
    const loadedBefore = entry !== undefined && this.#lifecycle.get(entry.id) !== undefined;
    const acquireStarted = performance.now();
    const lease = await this.#acquire(request.model, "llm", request.ttl);
    // A request that waited for its model's load says so (LM Studio's model_load events and stats).
    const loadSeconds = loadedBefore ? undefined : (performance.now() - acquireStarted) / 1000;
    let draft: { speculation: Speculation; release(): void } | undefined;
    try {
      draft = await this.#speculation(request, lease.model as LoadedLlm);
      const release = () => {
        draft?.release();
        lease.release();
      };
      // The request ends at its `done`, so the slot frees there, not when iteration does.
      for await (const event of atDone(run(lease.model as LoadedLlm, draft?.speculation), release)) {
        yield event.type === "start" && loadSeconds !== undefined ? { ...event, load_seconds: loadSeconds } : event;
      }
    } finally {
      draft?.release();
      lease.release();
    }
  }

  /**
   * How the request drafts (speculative decoding), its draft model loaded (JIT) beside `target`
   * and held until `release`. A draft that is unknown, not an LLM, the model itself, too big for
   * what memory is left, or of another vocabulary is refused before anything is generated.
   */
  async #speculation(request: ChatRequest | CompletionRequest, target: LoadedLlm): Promise<{ speculation: Speculation; release(): void } | undefined> {
    const choice = speculationChoice(request, this.speculativeDefault(target.id));
    if (choice === undefined) return undefined;
    if (!target.speculates) {
      // A node's default for such a model is not applied; a request's own ask is refused.
      if (request.draft_model === undefined && request.prompt_lookup !== true) return undefined;
      const param = "promptLookup" in choice ? "prompt_lookup" : "draft_model";
      throw invalidRequest(`Model "${target.id}" cannot draft (${param}): its architecture (recurrent, hybrid or sliding-window attention) cannot cut drafted tokens back exactly.`, param);
    }
    if ("promptLookup" in choice) return { speculation: choice, release: () => {} };
    const name = choice.draftModel;
    const entry = await this.#entry(name).catch(() => undefined);
    if (entry === undefined) {
      throw new ApiError(404, `Draft model "${name}" not found. Name a model of this node's list as draft_model.`, { param: "draft_model", code: "model_not_found" });
    }
    if (entry.type !== "llm") throw invalidRequest(`draft_model "${name}" is an embedding model; a draft model must be an LLM.`, "draft_model");
    if (entry.id === target.id) throw invalidRequest(`draft_model "${name}" is the model itself; a draft model is a smaller model with its vocabulary.`, "draft_model");
    if (this.#lifecycle.get(entry.id) === undefined) await this.#draftFits(target, entry);
    let lease: ModelLease<LoadedModel>;
    try {
      lease = await this.#acquire(entry.id, "llm", request.ttl);
    } catch (error) {
      const refused = toApiError(error);
      throw new ApiError(refused.status, `draft_model "${name}" cannot be loaded beside "${target.id}": ${refused.message}`, {
        param: "draft_model",
        code: refused.code ?? undefined,
        retryAfter: refused.retryAfter,
      });
    }
    const draft = lease.model as LoadedLlm;
    const mismatch = target.draftMismatch(draft);
    if (mismatch !== undefined) {
      lease.release();
      throw new ApiError(400, `draft_model "${name}" cannot draft for "${target.id}": ${mismatch}. A draft model must have the model's vocabulary.`, {
        param: "draft_model",
        code: "draft_model_mismatch",
      });
    }
    return { speculation: { draft, logitBias: request.logit_bias }, release: () => lease.release() };
  }

  async #acquire(model: string, kind: CatalogEntry["type"], ttl: number | undefined): Promise<ModelLease<LoadedModel>> {
    const entry = await this.#entry(model);
    if (entry.type !== kind) {
      throw invalidRequest(
        kind === "embeddings"
          ? `Model "${model}" is not an embedding model; embeddings need a model of type "embeddings".`
          : `Model "${model}" is an embedding model; it only serves embeddings, not chat or text completions.`,
        "model",
      );
    }
    try {
      return await this.#lifecycle.acquire(entry.id, { contextLength: await this.#defaultContextLength(entry), slots: this.#slotsFor(entry) }, ttl);
    } catch (error) {
      throw toApiError(error);
    }
  }

  /** A model unknown so far may just have been copied in: rescan once before answering 404. */
  async #entry(model: string): Promise<CatalogEntry> {
    let entry = this.#catalog.find(model);
    if (!entry) {
      if (await this.#catalog.refresh()) this.#catalogChanged();
      entry = this.#catalog.find(model);
    }
    if (!entry) throw modelNotFound(model, this.#catalog.entries.map((candidate) => candidate.id));
    return entry;
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
    const budget = (this.#options.memoryBytes ?? (await this.#engine.totalMemory())) * AGENT_DEFAULTS.defaultLoadMemoryShare;
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

  /** 400 for a load beyond what the model was trained for or what this node's memory could ever hold. */
  async #bound(id: string, config: LoadConfig): Promise<void> {
    const entry = this.#catalog.find(id);
    if (!entry) return;
    if (config.contextLength > entry.contextLength) {
      throw new ApiError(400, `context_length ${config.contextLength} is more than model "${id}" was trained for: at most ${entry.contextLength}.`, {
        param: "context_length",
        code: "context_length_too_large",
      });
    }
    const needs = await this.#engine.footprint(entry.path, config, entry.type === "embeddings");
    const needed = needs.ram_bytes + needs.vram_bytes;
    const limit = this.#options.memoryBytes ?? (await this.#engine.totalMemory());
    if (needed > limit) {
      throw new ApiError(
        400,
        `Loading "${id}" with context_length ${config.contextLength} and parallel ${config.slots} needs about ${gib(needed)} of memory; ` +
          `this node gives its models at most ${gib(limit)}. Load it with a smaller context_length or parallel.`,
        { param: "context_length", code: "load_exceeds_memory" },
      );
    }
  }

  /** A draft loads beside its model and stays only while it does: the two together must fit what this node gives its models. */
  async #draftFits(target: LoadedLlm, draft: CatalogEntry): Promise<void> {
    const targetEntry = this.#catalog.find(target.id);
    if (!targetEntry) return;
    const [targetNeeds, draftNeeds, limit] = await Promise.all([
      this.#engine.footprint(targetEntry.path, { contextLength: target.contextLength, slots: target.slots }, false),
      this.#defaultContextLength(draft).then((contextLength) => this.#engine.footprint(draft.path, { contextLength, slots: this.#slotsFor(draft) }, false)),
      this.#options.memoryBytes ?? this.#engine.totalMemory(),
    ]);
    const needed = targetNeeds.ram_bytes + targetNeeds.vram_bytes + draftNeeds.ram_bytes + draftNeeds.vram_bytes;
    if (needed <= limit) return;
    throw new ApiError(
      400,
      `draft_model "${draft.id}" does not fit beside "${target.id}": the two need about ${gib(needed)} of memory; ` +
        `this node gives its models at most ${gib(limit)}. Use a smaller draft model, or none.`,
      { param: "draft_model", code: "draft_model_too_large" },
    );
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
      onSlotsChange: () => this.#notify(),
    };
    const model =
      entry.type === "embeddings"
        ? await this.#engine.loadEmbeddingModel(shared)
        : await this.#engine.loadLlm({
            ...shared,
            slots: config.slots,
            arch: entry.arch,
            quantization: entry.quantization,
            onMeasured: (speed) => this.#speeds.record(id, speed),
          });
    ready = true;
    report?.(id, 1);
    return model;
  }

  #modelObjects(): ModelObject[] {
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

  #catalogChanged(): void {
    this.#notify();
    void this.#refreshMemory();
  }

  /**
   * Free memory now, and what each model on disk takes to load with this node's defaults (read
   * once per model from its GGUF header). Never fails: placement just has less to go on.
   */
  async #refreshMemory(): Promise<void> {
    if (this.#disposed) return;
    try {
      const ids = new Set(this.#catalog.entries.map((entry) => entry.id));
      for (const id of this.#footprints.keys()) if (!ids.has(id)) this.#footprints.delete(id);
      for (const entry of this.#catalog.entries) {
        if (this.#footprints.has(entry.id)) continue;
        const config = { contextLength: await this.#defaultContextLength(entry), slots: this.#slotsFor(entry) };
        this.#footprints.set(entry.id, await this.#engine.footprint(entry.path, config, entry.type === "embeddings"));
      }
      this.#memory = await this.#engine.freeMemory();
    } catch (error) {
      if (this.#disposed) return;
      this.#logger.warn(`could not measure memory for placement: ${(error as Error).message}`);
      return;
    }
    this.#notify();
  }

  #notify(): void {
    for (const listener of this.#listeners) {
      try {
        listener();
      } catch (error) {
        this.#logger.warn(`a status listener failed: ${(error as Error).message}`);
      }
    }
  }
}
