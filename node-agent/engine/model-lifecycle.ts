import { InsufficientMemoryError } from "node-llama-cpp";
import { ApiError } from "../../shared/protocol/api-error.ts";

/** How a model is loaded: context per slot and number of slots. */
export interface LoadConfig {
  contextLength: number;
  slots: number;
}

/** What the lifecycle needs of a loaded model. */
export interface ManagedModel {
  dispose(): Promise<void>;
}

export interface LoadedInstance<M extends ManagedModel> {
  readonly id: string;
  readonly model: M;
  readonly config: LoadConfig;
  /** Loaded by a request rather than by `load()`: may be evicted, unloads after its TTL by default. */
  readonly jit: boolean;
}

/** A model in use by one request; it stays loaded (and is not idle) until released. */
export interface ModelLease<M extends ManagedModel> {
  readonly model: M;
  release(): void;
}

export interface ModelLifecycleOptions<M extends ManagedModel> {
  load(id: string, config: LoadConfig): Promise<M>;
  /**
   * Refuses (throws) a load the node can never give, whatever is unloaded first: asked before
   * every load, explicit or JIT, so no route can get a node killed by its memory.
   */
  bound?(id: string, config: LoadConfig): Promise<void>;
  /** Whether the model would fit in memory beside the loaded ones; asked before a JIT load. Defaults to yes. */
  fits?(id: string, config: LoadConfig): Promise<boolean>;
  /** Loaded models allowed before a JIT load evicts idle JIT-loaded ones. Defaults to no limit. */
  maxLoadedModels?: number;
  /** Idle time after which a JIT-loaded model unloads, unless its request gave `ttl`. */
  defaultTtlSeconds: number;
  /** A model was loaded or unloaded. */
  onChange?(): void;
  onInfo?(message: string): void;
}

interface Instance<M extends ManagedModel> extends LoadedInstance<M> {
  jit: boolean;
  ttlMs: number | null;
  users: number;
  lastUsed: number;
  timer: NodeJS.Timeout | undefined;
}

/** The longest delay setTimeout takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Seconds to suggest before retrying a load that found no memory. */
const OUT_OF_MEMORY_RETRY_AFTER_SECONDS = 30;

/**
 * LM Studio's model lifecycle: JIT loading on first use, idle-TTL unloading, auto-eviction of
 * idle JIT-loaded models (least recently used first) to make room, explicit load and unload.
 * Explicitly loaded models are never evicted. Loads and evictions run one at a time, so two
 * requests never evict for each other; requests for a model being loaded share that load.
 */
export class ModelLifecycle<M extends ManagedModel> {
  readonly #options: ModelLifecycleOptions<M>;
  readonly #instances = new Map<string, Instance<M>>();
  readonly #loading = new Map<string, Promise<Instance<M>>>();
  /** Requests waiting for a model's load, by id. */
  readonly #awaited = new Map<string, number>();
  #exclusive: Promise<unknown> = Promise.resolve();
  #disposed = false;

  constructor(options: ModelLifecycleOptions<M>) {
    this.#options = options;
  }

  get(id: string): LoadedInstance<M> | undefined {
    return this.#instances.get(id);
  }

  loaded(): LoadedInstance<M>[] {
    return [...this.#instances.values()];
  }

  /** The model, loaded first if needed (JIT). `ttlSeconds` applies only to a load this call triggers. */
  async acquire(id: string, config: LoadConfig, ttlSeconds: number | undefined): Promise<ModelLease<M>> {
    const loaded = this.#instances.get(id);
    if (loaded) return this.#lease(loaded);
    const ttlMs = (ttlSeconds ?? this.#options.defaultTtlSeconds) * 1000;
    // Counted as a user from now on, so another load cannot evict the model between its load and this lease.
    this.#awaited.set(id, (this.#awaited.get(id) ?? 0) + 1);
    try {
      return this.#lease(await this.#shareLoad(id, () => this.#serialized(() => this.#loadJit(id, config, ttlMs))));
    } finally {
      const left = (this.#awaited.get(id) ?? 1) - 1;
      if (left === 0) this.#awaited.delete(id);
      else this.#awaited.set(id, left);
    }
  }

  /** Explicit load: never evicted; unloads when idle only if `ttlSeconds` is given. */
  async load(id: string, config: LoadConfig, ttlSeconds: number | undefined): Promise<{ instance: LoadedInstance<M>; seconds: number }> {
    const started = performance.now();
    await this.#loading.get(id)?.catch(() => {});
    let instance = this.#instances.get(id);
    if (instance && (instance.config.contextLength !== config.contextLength || instance.config.slots !== config.slots)) {
      if (instance.users > 0) {
        throw new ApiError(409, `Model "${id}" is loaded with other settings and is in use; unload it first, or retry once it is idle.`, {
          code: "model_in_use",
        });
      }
      await this.unload(id);
      instance = undefined;
    }
    instance ??= await this.#shareLoad(id, () =>
      this.#serialized(async () => {
        await this.#options.bound?.(id, config);
        return this.#loadOnce(id, config, false, null).catch((error: unknown) => Promise.reject(outOfMemory(id, error)));
      }),
    );
    instance.jit = false;
    instance.ttlMs = ttlSeconds === undefined ? null : ttlSeconds * 1000;
    this.#scheduleIdleUnload(instance);
    return { instance, seconds: (performance.now() - started) / 1000 };
  }

  /** Unloads at once: running requests stop, queued ones are refused. Resolves to false if it was not loaded. */
  async unload(id: string): Promise<boolean> {
    await this.#loading.get(id)?.catch(() => {});
    const instance = this.#instances.get(id);
    if (!instance) return false;
    await this.#unloadInstance(instance);
    return true;
  }

  async dispose(): Promise<void> {
    this.#disposed = true;
    await Promise.allSettled(this.#loading.values());
    await Promise.all([...this.#instances.values()].map((instance) => this.#unloadInstance(instance)));
  }

  #shareLoad(id: string, start: () => Promise<Instance<M>>): Promise<Instance<M>> {
    let pending = this.#loading.get(id);
    if (!pending) {
      pending = start().finally(() => this.#loading.delete(id));
      this.#loading.set(id, pending);
    }
    return pending;
  }

  #serialized<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#exclusive.then(task, task);
    this.#exclusive = run.catch(() => {});
    return run;
  }

  async #loadJit(id: string, config: LoadConfig, ttlMs: number): Promise<Instance<M>> {
    const existing = this.#instances.get(id);
    if (existing) return existing;
    await this.#options.bound?.(id, config);
    const { maxLoadedModels, fits } = this.#options;
    while (maxLoadedModels !== undefined && this.#instances.size >= maxLoadedModels) {
      if (!(await this.#evictOne(id, "the loaded-model limit"))) break;
    }
    while (fits && !(await fits(id, config))) {
      if (!(await this.#evictOne(id, "memory"))) break;
    }
    for (;;) {
      try {
        return await this.#loadOnce(id, config, true, ttlMs);
      } catch (error) {
        // node-llama-cpp's own check is the final word on memory; each eviction earns one more try.
        if (!(error instanceof InsufficientMemoryError) || !(await this.#evictOne(id, "memory"))) throw outOfMemory(id, error);
      }
    }
  }

  async #loadOnce(id: string, config: LoadConfig, jit: boolean, ttlMs: number | null): Promise<Instance<M>> {
    if (this.#disposed) throw new ApiError(503, "The agent is shutting down.", { code: "shutting_down", retryAfter: 1 });
    const model = await this.#options.load(id, config);
    const instance: Instance<M> = { id, model, config, jit, ttlMs, users: 0, lastUsed: Date.now(), timer: undefined };
    this.#instances.set(id, instance);
    this.#options.onChange?.();
    return instance;
  }

  /** Unloads the least recently used idle JIT-loaded model; false when there is none. */
  async #evictOne(forId: string, reason: string): Promise<boolean> {
    const victim = [...this.#instances.values()]
      .filter((instance) => instance.jit && instance.users === 0 && !this.#awaited.has(instance.id))
      .sort((a, b) => a.lastUsed - b.lastUsed)[0];
    if (!victim) return false;
    this.#options.onInfo?.(`unloading "${victim.id}" to make room for "${forId}" (${reason})`);
    await this.#unloadInstance(victim);
    return true;
  }

  #lease(instance: Instance<M>): ModelLease<M> {
    instance.users += 1;
    instance.lastUsed = Date.now();
    clearTimeout(instance.timer);
    let released = false;
    return {
      model: instance.model,
      release: () => {
        if (released) return;
        released = true;
        instance.users -= 1;
        instance.lastUsed = Date.now();
        this.#scheduleIdleUnload(instance);
      },
    };
  }

  /** `idleUntil` is given only when re-arming for a TTL longer than one timer can wait. */
  #scheduleIdleUnload(instance: Instance<M>, idleUntil?: number): void {
    clearTimeout(instance.timer);
    instance.timer = undefined;
    if (instance.users > 0 || instance.ttlMs === null || this.#instances.get(instance.id) !== instance) return;
    const ttlMs = instance.ttlMs;
    const until = idleUntil ?? Date.now() + ttlMs;
    // setTimeout fires at once past 2^31 - 1 ms, so a longer TTL is waited out in steps.
    instance.timer = setTimeout(() => {
      if (instance.users > 0 || this.#instances.get(instance.id) !== instance) return;
      if (Date.now() < until) return this.#scheduleIdleUnload(instance, until);
      this.#options.onInfo?.(`unloading "${instance.id}" after ${ttlMs / 1000} s idle`);
      void this.#unloadInstance(instance);
    }, Math.min(Math.max(0, until - Date.now()), MAX_TIMER_MS));
    // An idle model must not keep the process alive.
    instance.timer.unref();
  }

  async #unloadInstance(instance: Instance<M>): Promise<void> {
    clearTimeout(instance.timer);
    if (this.#instances.get(instance.id) === instance) {
      this.#instances.delete(instance.id);
      this.#options.onChange?.();
    }
    await instance.model.dispose();
  }
}

/** node-llama-cpp's memory error as the API's: the caller can do something about it. */
function outOfMemory(id: string, error: unknown): unknown {
  if (!(error instanceof InsufficientMemoryError)) return error;
  return new ApiError(503, `Not enough memory to load model "${id}" (${error.message}). Unload a model or load it with a smaller context_length.`, {
    code: "insufficient_memory",
    retryAfter: OUT_OF_MEMORY_RETRY_AFTER_SECONDS,
    cause: error,
  });
}
