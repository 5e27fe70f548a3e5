import type { Llama, LlamaEmbeddingContext, LlamaModel } from "node-llama-cpp";
import { ApiError, invalidRequest, toApiError } from "../../shared/protocol/api-error.ts";
import { modelUnloaded, requestCancelled } from "../../shared/protocol/api-error.ts";
import { SlotPool } from "./slot-pool.ts";

export interface EmbeddingLoadOptions {
  id: string;
  path: string;
  /** Longest input, in tokens. */
  contextLength: number;
  maxQueue: number;
  threads: number;
  onLoadProgress?: (fraction: number) => void;
  onSlotsChange?: () => void;
}

export interface Embeddings {
  vectors: number[][];
  /** Every input's tokens, as the model reads them (with the tokens it adds around each input). */
  promptTokens: number;
}

/**
 * A loaded embedding model. node-llama-cpp's embedding context evaluates one input at a time, so
 * it is a single slot with a bounded queue; a request holds it for all of its inputs.
 */
export class LoadedEmbeddingModel {
  readonly id: string;
  readonly contextLength: number;
  readonly #model: LlamaModel;
  readonly #context: LlamaEmbeddingContext;
  readonly #pool: SlotPool;
  readonly #unloading = new AbortController();
  readonly #running = new Set<Promise<unknown>>();
  #disposed: Promise<void> | undefined;

  private constructor(model: LlamaModel, context: LlamaEmbeddingContext, options: EmbeddingLoadOptions) {
    this.id = options.id;
    this.contextLength = options.contextLength;
    this.#model = model;
    this.#context = context;
    this.#pool = new SlotPool({ size: 1, maxQueue: options.maxQueue, label: `model "${options.id}"`, onChange: options.onSlotsChange });
  }

  static async load(llama: Llama, options: EmbeddingLoadOptions): Promise<LoadedEmbeddingModel> {
    const model = await llama.loadModel({ modelPath: options.path, onLoadProgress: options.onLoadProgress });
    try {
      const context = await model.createEmbeddingContext({ contextSize: options.contextLength, threads: options.threads });
      return new LoadedEmbeddingModel(model, context, options);
    } catch (error) {
      await model.dispose();
      throw error;
    }
  }

  get slots(): number {
    return this.#pool.size;
  }

  get busySlots(): number {
    return this.#pool.busy;
  }

  /** Requests waiting for a slot. */
  get queuedRequests(): number {
    return this.#pool.waiting;
  }

  async embed(inputs: readonly string[], signal: AbortSignal): Promise<Embeddings> {
    let promptTokens = 0;
    inputs.forEach((input, index) => {
      if (input === "") throw invalidRequest(`input[${index}] is empty; every input needs some text.`, "input");
      const tokens = this.#context.calculateInputLength(input);
      if (tokens >= this.contextLength) {
        throw new ApiError(
          400,
          `input[${index}] is ${tokens} tokens but the model is loaded with a context length of only ${this.contextLength} tokens.`,
          { param: "input", code: "context_length_exceeded" },
        );
      }
      promptTokens += tokens;
    });

    const lease = await this.#pool.acquire(signal);
    const work = (async () => {
      try {
        const vectors: number[][] = [];
        for (const input of inputs) {
          if (signal.aborted) throw requestCancelled();
          if (this.#unloading.signal.aborted) throw modelUnloaded(this.id);
          vectors.push([...(await this.#context.getEmbeddingFor(input)).vector]);
        }
        return { vectors, promptTokens };
      } finally {
        lease.release();
      }
    })();
    this.#running.add(work);
    try {
      return await work;
    } catch (error) {
      throw error instanceof ApiError ? error : toApiError(error);
    } finally {
      this.#running.delete(work);
    }
  }

  /** Refuses queued requests, lets the running one stop at its next input, then frees the model. Idempotent. */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      this.#unloading.abort();
      this.#pool.close(modelUnloaded(this.id));
      await Promise.allSettled(this.#running);
      await this.#context.dispose();
      await this.#model.dispose();
    })();
    return this.#disposed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}
