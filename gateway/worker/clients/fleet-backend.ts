import type { InferenceBackend } from "../../../shared/backend.ts";
import { incompleteGeneration, isDone, untilDone } from "../../../shared/generation-contract.ts";
import type { EmbeddingsResult, GenerationEvent } from "../../../shared/schemas/generation.ts";
import type { LoadResult, ModelObject, UnloadResult } from "../../../shared/schemas/models.ts";
import type { TokenCount } from "../../../shared/schemas/token-count.ts";
import type {
  ChatRequest,
  CompletionRequest,
  EmbeddingsRequest,
  LoadRequest,
  UnloadRequest,
} from "../../../shared/schemas/requests.ts";
import type { Caller } from "../../fleet/access/caller.ts";
import { fromWire } from "../../../shared/protocol.ts";
import { LineDecoder, unwrap, type FleetApi, type GenerationOperation } from "../../fleet/contract.ts";

/**
 * The gateway's `InferenceBackend`: every call is one RPC to the Fleet object. Generations come
 * back as a byte stream of lines that is turned back into events here; cancelling it (the client
 * went away) reaches the Fleet, which tells the node to stop.
 */
export class FleetBackend implements InferenceBackend {
  readonly #fleet: FleetApi;
  readonly #waitUntil: (promise: Promise<unknown>) => void;
  readonly #caller: Caller;

  /** `waitUntil` keeps the Worker alive for the cancel call after its client is gone; `caller` is authorized by the Fleet on every call. */
  constructor(fleet: FleetApi, waitUntil: (promise: Promise<unknown>) => void, caller: Caller) {
    this.#fleet = fleet;
    this.#waitUntil = waitUntil;
    this.#caller = caller;
  }

  async listModels(): Promise<ModelObject[]> {
    return unwrap(await this.#fleet.listModels(this.#caller));
  }

  chat(request: ChatRequest, signal: AbortSignal): AsyncIterable<GenerationEvent> {
    return this.#generate({ op: "chat", body: request }, signal);
  }

  completion(request: CompletionRequest, signal: AbortSignal): AsyncIterable<GenerationEvent> {
    return this.#generate({ op: "completion", body: request }, signal);
  }

  async embeddings(request: EmbeddingsRequest): Promise<EmbeddingsResult> {
    return unwrap(await this.#fleet.embeddings(request, this.#caller));
  }

  async countTokens(request: ChatRequest): Promise<TokenCount | null> {
    return unwrap(await this.#fleet.countTokens(request, this.#caller));
  }

  async loadModel(request: LoadRequest): Promise<LoadResult> {
    return unwrap(await this.#fleet.loadModel(request, this.#caller));
  }

  async unloadModel(request: UnloadRequest): Promise<UnloadResult> {
    return unwrap(await this.#fleet.unloadModel(request, this.#caller));
  }

  async *#generate(operation: GenerationOperation, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    signal.throwIfAborted();
    const { id, events } = await this.#fleet.generate(operation, this.#caller);
    const reader = events.getReader();
    /** No cancel to send: the Fleet ended the request itself (`done`, an error line, the stream's end), or it was sent. */
    let ended = false;
    const stop = () => {
      void reader.cancel(signal.reason).catch(() => undefined);
      if (!ended) this.#waitUntil(this.#fleet.cancel(id).catch(() => undefined));
      ended = true;
    };
    signal.addEventListener("abort", stop, { once: true });
    async function* received(): AsyncGenerator<GenerationEvent> {
      const lines = new LineDecoder();
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        for (const line of lines.push(chunk.value)) {
          if ("error" in line) {
            ended = true;
            throw fromWire(line.error);
          }
          if (isDone(line.event)) ended = true;
          yield line.event;
        }
      }
      ended = true;
      signal.throwIfAborted();
    }
    try {
      yield* untilDone(received(), () => incompleteGeneration("The fleet"));
    } finally {
      signal.removeEventListener("abort", stop);
      // Also reached when the consumer stops early: the Fleet then cancels the node's work.
      stop();
    }
  }
}
