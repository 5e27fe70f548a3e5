import type { InferenceBackend } from "../../shared/app/inference-backend.ts";
import { ApiError, invalidRequest, toApiError } from "../../shared/protocol/api-error.ts";
import { atDone } from "../../shared/protocol/generation-contract.ts";
import type { Hardware, NodeStatus } from "../../shared/protocol/frames.ts";
import type { EmbeddingsResult, GenerationEvent, Runtime } from "../../shared/protocol/generation-events.ts";
import type { LoadResult, ModelObject, UnloadResult } from "../../shared/protocol/model-schemas.ts";
import type { ModelSpeculation } from "../../shared/protocol/v1-model-schemas.ts";
import type { TokenCount } from "../../shared/protocol/token-count.ts";
import type { ChatRequest, CompletionRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "../../shared/protocol/request-schemas.ts";
import { ModelCatalog, type CatalogEntry } from "../catalog/model-catalog.ts";
import { Engine, type Logger } from "../engine/engine.ts";
import type { LoadedEmbeddingModel } from "../engine/loaded-embedding-model.ts";
import type { LoadedLlm } from "../engine/loaded-llm.ts";
import type { LoadConfig, ModelLease } from "../engine/model-lifecycle.ts";
import { defaultSpeculation, speculationChoice, type SpeculativeDefaults } from "../engine/speculative/speculation-choice.ts";
import type { Speculation } from "../engine/speculative/speculation.ts";
import { ModelHost, type LoadedModel, type ModelHostOptions, type SlotUsage } from "./model-host.ts";
import { NodeStatusTracker } from "./node-status.ts";

export type { Logger } from "../engine/engine.ts";

export interface LocalBackendOptions extends ModelHostOptions {
  /** Folders searched recursively for `.gguf` files (LM Studio's `<publisher>/<repo>/<file>.gguf` layout gives ids their publisher). */
  modelDirs: string[];
  /** CPU threads per model. Defaults to 1 on a CPU-only machine with ≤2 cores, half the cores on a bigger one, node-llama-cpp's default with a GPU. */
  threads?: number;
  /** `false` never uses a GPU. Defaults to `"auto"`. */
  gpu?: "auto" | false;
  /** Speculative decoding per model when its requests do not choose (`draft_model`, `prompt_lookup`). */
  speculative?: SpeculativeDefaults;
  logger?: Logger;
}

const silentLogger: Logger = { info: () => {}, warn: () => {} };

/**
 * The node agent's `InferenceBackend`: models found on this machine's disk (the model host),
 * served by node-llama-cpp, each generation on a leased model with its draft, if it asks for one.
 * Also what the gateway link reports: `status()` (the node's status), `hardware()`, `runtime`,
 * `slotsPerModel` and change events.
 */
export class LocalBackend implements InferenceBackend {
  readonly runtime: Runtime;
  /** CPU threads every context evaluates with. */
  readonly threads: number;
  readonly slotsPerModel: number;
  readonly #speculative: SpeculativeDefaults;
  readonly #engine: Engine;
  readonly #host: ModelHost;
  readonly #status: NodeStatusTracker;
  #disposed: Promise<void> | undefined;

  private constructor(options: LocalBackendOptions, engine: Engine, catalog: ModelCatalog, logger: Logger) {
    this.#speculative = options.speculative ?? {};
    this.#engine = engine;
    this.runtime = engine.runtime;
    this.threads = engine.threads;
    this.#host = new ModelHost(
      options,
      engine,
      catalog,
      {
        onModelsChange: () => this.#status.modelsChanged(),
        onSlotsChange: () => this.#status.notify(),
        onMeasured: (id, speed) => this.#status.recordSpeed(id, speed),
      },
      logger,
    );
    this.#status = new NodeStatusTracker(engine, this.#host, logger);
    this.slotsPerModel = this.#host.slotsPerModel;
  }

  /** Starts llama.cpp and scans the model folders; loads nothing yet. */
  static async create(options: LocalBackendOptions): Promise<LocalBackend> {
    const logger = options.logger ?? silentLogger;
    const engine = await Engine.create({ gpu: options.gpu, threads: options.threads, logger });
    const catalog = new ModelCatalog({ dirs: options.modelDirs, onWarning: (message) => logger.warn(message) });
    await catalog.refresh();
    const backend = new LocalBackend(options, engine, catalog, logger);
    await backend.#status.measureMemory();
    return backend;
  }

  /** Rescans the model folders, so files added since show up. */
  listModels(): Promise<ModelObject[]> {
    return this.#host.listModels();
  }

  chat(request: ChatRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    return this.#generate(request, (model, speculation) => model.chat(request, signal, speculation));
  }

  completion(request: CompletionRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    return this.#generate(request, (model, speculation) => model.completion(request, signal, speculation));
  }

  async embeddings(request: EmbeddingsRequest, signal: AbortSignal): Promise<EmbeddingsResult> {
    const lease = await this.#host.acquire(request.model, "embeddings", request.ttl);
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
    const lease = await this.#host.acquire(request.model, "llm", request.ttl);
    try {
      return { prompt_tokens: (lease.model as LoadedLlm).countTokens(request) };
    } finally {
      lease.release();
    }
  }

  /** Explicit load: the model stays until unloaded (or idle for `ttl`, if given) and is never evicted. */
  loadModel(request: LoadRequest): Promise<LoadResult> {
    return this.#host.load(request);
  }

  unloadModel(request: UnloadRequest): Promise<UnloadResult> {
    return this.#host.unload(request);
  }

  /** The models on disk as last scanned (`listModels()` rescans). */
  catalogEntries(): readonly CatalogEntry[] {
    return this.#host.entries;
  }

  /** How the node's owner has a model draft when its requests do not say (`--draft-model`, `--prompt-lookup`). */
  speculativeDefault(id: string): ModelSpeculation | undefined {
    return defaultSpeculation(this.#speculative, id);
  }

  /** How a model is loaded, if it is. */
  loadedConfig(id: string): LoadConfig | undefined {
    return this.#host.loadedConfig(id);
  }

  /** Models, busy slots and measured speed, as the gateway link reports them. */
  status(): NodeStatus {
    return this.#status.status();
  }

  /** Slots and queue of every loaded model, for metrics; cheap enough to call on every scrape. */
  slotUsage(): SlotUsage[] {
    return this.#host.slotUsage();
  }

  hardware(): Promise<Hardware> {
    return this.#engine.hardware();
  }

  /** Calls `listener` when a model loads or unloads, slots go busy or free, or the model list changes; returns the unsubscribe. */
  onStatusChange(listener: () => void): () => void {
    return this.#status.onChange(listener);
  }

  /** Unloads every model (stopping what runs on them), then frees llama.cpp. Idempotent. */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      this.#status.stopMeasuring();
      await this.#host.dispose();
      await this.#engine.dispose();
      this.#status.dropListeners();
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
    const loadedBefore = this.#host.isLoaded(request.model);
    const acquireStarted = performance.now();
    const lease = await this.#host.acquire(request.model, "llm", request.ttl);
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
    const entry = await this.#host.entry(name).catch(() => undefined);
    if (entry === undefined) {
      throw new ApiError(404, `Draft model "${name}" not found. Name a model of this node's list as draft_model.`, { param: "draft_model", code: "model_not_found" });
    }
    if (entry.type !== "llm") throw invalidRequest(`draft_model "${name}" is an embedding model; a draft model must be an LLM.`, "draft_model");
    if (entry.id === target.id) throw invalidRequest(`draft_model "${name}" is the model itself; a draft model is a smaller model with its vocabulary.`, "draft_model");
    if (!this.#host.isLoaded(entry.id)) await this.#host.checkDraft(target, entry);
    let lease: ModelLease<LoadedModel>;
    try {
      lease = await this.#host.acquire(entry.id, "llm", request.ttl);
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
}
