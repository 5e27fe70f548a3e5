import { ApiError } from "../../shared/protocol/api-error.ts";
import { atDone, doneFailure, type DoneEvent } from "../../shared/protocol/generation-contract.ts";
import type { Hardware, NodeStatus } from "../../shared/protocol/frames.ts";
import type { EmbeddingsResult, GenerationEvent, Runtime } from "../../shared/protocol/generation-events.ts";
import type { LoadResult, ModelObject, UnloadResult } from "../../shared/protocol/model-schemas.ts";
import type { TokenCount } from "../../shared/protocol/token-count.ts";
import type { ChatRequest, CompletionRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "../../shared/protocol/request-schemas.ts";
import type { Drain } from "./drain.ts";
import type { NodeSource } from "../link/node-source.ts";
import type { LocalModelAdmin } from "./model-admin.ts";

/** The API operation a request ran, named after its path (`/v1/chat/completions` → `chat/completions`). */
export type RequestRoute = "chat/completions" | "completions" | "embeddings" | "models/load" | "models/unload" | "messages/count_tokens";

/** One request, as it ended. */
export interface FinishedRequest {
  route: RequestRoute;
  /** The requested model; `unknown` when no such model exists (ids from callers are not trusted as labels). */
  model: string;
  /** HTTP status it ended with: 200, the `ApiError`'s status, 500 for a crash, 499 when the caller went away first. */
  status: number;
  /** From the call to the result (or the failure), queueing and any JIT load included. */
  seconds: number;
  /** Chat and completions only: from the call to the first generated token, queueing and JIT load included. */
  timeToFirstTokenSeconds?: number;
  /** Decode speed measured by the engine (tokens after the first, per second); absent when under two tokens. */
  tokensPerSecond?: number;
  promptTokens?: number;
  completionTokens?: number;
}

/** Hears about every request once when it starts and once when it ends (metrics). */
export interface RequestObserver {
  onRequestStart(route: RequestRoute): void;
  onRequestEnd(request: FinishedRequest): void;
}

export interface TrackedBackendOptions {
  /**
   * Admission: once this drain closes, new requests are refused with a 503 `shutting_down`, and
   * every running request counts in it until it ends. Leave it out where admission happens
   * earlier (the direct server admits whole HTTP requests).
   */
  drain?: Drain;
  observer?: RequestObserver;
  /** Model management offered to the gateway, its listing and downloads reported in `status()`. */
  modelAdmin?: LocalModelAdmin;
}

/** Seconds a request refused during shutdown is told to wait: the gateway retries it elsewhere at once. */
const SHUTDOWN_RETRY_AFTER_SECONDS = 5;

export const shuttingDown = () =>
  new ApiError(503, "This agent is shutting down and takes no new requests.", { code: "shutting_down", retryAfter: SHUTDOWN_RETRY_AFTER_SECONDS });

/**
 * The agent's backend as the outside world uses it: the local engine, plus admission during a
 * shutdown and one observation per request (never per token) for metrics.
 */
export class TrackedBackend implements NodeSource {
  readonly #source: NodeSource;
  readonly #drain: Drain | undefined;
  readonly #observer: RequestObserver | undefined;
  readonly modelAdmin: LocalModelAdmin | undefined;

  constructor(source: NodeSource, options: TrackedBackendOptions = {}) {
    this.#source = source;
    this.#drain = options.drain;
    this.#observer = options.observer;
    this.modelAdmin = options.modelAdmin;
  }

  get runtime(): Runtime {
    return this.#source.runtime;
  }

  get slotsPerModel(): number {
    return this.#source.slotsPerModel;
  }

  listModels(): Promise<ModelObject[]> {
    return this.#source.listModels();
  }

  status(): NodeStatus {
    return { ...this.#source.status(), ...this.modelAdmin?.statusFields() };
  }

  hardware(): Promise<Hardware> {
    return this.#source.hardware();
  }

  onStatusChange(listener: () => void): () => void {
    const unsubscribe = this.#source.onStatusChange(listener);
    const unsubscribeDownloads = this.modelAdmin?.onChange(listener);
    return () => {
      unsubscribe();
      unsubscribeDownloads?.();
    };
  }

  chat(request: ChatRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    return this.#generation("chat/completions", request.model, () => this.#source.chat(request, signal));
  }

  completion(request: CompletionRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    return this.#generation("completions", request.model, () => this.#source.completion(request, signal));
  }

  async embeddings(request: EmbeddingsRequest, signal: AbortSignal): Promise<EmbeddingsResult> {
    const end = this.#begin("embeddings", request.model);
    try {
      const result = await this.#source.embeddings(request, signal);
      end(200, { promptTokens: result.usage.prompt_tokens });
      return result;
    } catch (error) {
      end(statusOf(error, signal), {}, error);
      throw error;
    }
  }

  /** Admitted and observed like the other calls: it may load the model. */
  async countTokens(request: ChatRequest): Promise<TokenCount | null> {
    const count = this.#source.countTokens?.bind(this.#source);
    if (count === undefined) return null;
    return this.#call("messages/count_tokens", request.model, () => count(request));
  }

  loadModel(request: LoadRequest): Promise<LoadResult> {
    return this.#call("models/load", request.model, () => this.#source.loadModel(request));
  }

  unloadModel(request: UnloadRequest): Promise<UnloadResult> {
    return this.#call("models/unload", request.instance_id ?? request.model ?? "", () => this.#source.unloadModel(request));
  }

  async #call<T>(route: RequestRoute, model: string, run: () => Promise<T>): Promise<T> {
    const end = this.#begin(route, model);
    try {
      const result = await run();
      end(200);
      return result;
    } catch (error) {
      end(statusOf(error), {}, error);
      throw error;
    }
  }

  async *#generation(route: RequestRoute, model: string, run: () => AsyncIterable<GenerationEvent>): AsyncGenerator<GenerationEvent> {
    const end = this.#begin(route, model);
    let startedAt: number | undefined;
    // The request ends at its `done`, not when iteration does.
    const ended = ({ result }: DoneEvent) => {
      const { usage, stats } = result;
      // A generation stopped by its caller's abort still reports what it spent (the gateway
      // asks for that after a cancel): it ended as the caller going away, with its tokens.
      // One cut by an unload reaches its caller as an error (see the API app).
      end(stats.stop_reason === "userStopped" ? 499 : (doneFailure(result, model)?.status ?? 200), {
        promptTokens: usage.prompt_tokens,
        completionTokens: usage.completion_tokens,
        ...(stats.tokens_per_second > 0 ? { tokensPerSecond: stats.tokens_per_second } : {}),
        ...(startedAt !== undefined && usage.completion_tokens > 0 ? { firstTokenAt: startedAt + stats.time_to_first_token * 1000 } : {}),
      });
    };
    try {
      for await (const event of atDone(run(), ended)) {
        if (event.type === "start") startedAt = performance.now();
        yield event;
      }
    } catch (error) {
      end(statusOf(error), {}, error);
      throw error;
    } finally {
      // Left early without a result or an error: the caller stopped listening.
      end(499);
    }
  }

  /** Admits a request (or throws the shutdown 503) and returns the one-shot function that ends it. */
  #begin(route: RequestRoute, model: string): (status: number, details?: EndDetails, error?: unknown) => void {
    const calledAt = performance.now();
    this.#observer?.onRequestStart(route);
    if (this.#drain?.draining) {
      this.#observer?.onRequestEnd({ route, model, status: 503, seconds: 0 });
      throw shuttingDown();
    }
    const release = this.#drain?.begin();
    let ended = false;
    return (status, details = {}, error) => {
      if (ended) return;
      ended = true;
      // The consumer gets the result after this returns (a `done` event is yielded next) and sends
      // it on within the same turn; a shutdown waiting for the drain must not close the gateway
      // link before that, so the drain hears of the end one macrotask later.
      if (release) setImmediate(release);
      const { firstTokenAt, ...counts } = details;
      this.#observer?.onRequestEnd({
        route,
        model: isUnknownModel(error) ? "unknown" : model,
        status,
        seconds: (performance.now() - calledAt) / 1000,
        ...(firstTokenAt !== undefined ? { timeToFirstTokenSeconds: (firstTokenAt - calledAt) / 1000 } : {}),
        ...counts,
      });
    };
  }
}

interface EndDetails {
  promptTokens?: number;
  completionTokens?: number;
  tokensPerSecond?: number;
  /** `performance.now()` time of the first token. */
  firstTokenAt?: number;
}

function statusOf(error: unknown, signal?: AbortSignal): number {
  if (error instanceof ApiError) return error.status;
  return signal?.aborted ? 499 : 500;
}

function isUnknownModel(error: unknown): boolean {
  return error instanceof ApiError && error.code === "model_not_found";
}
