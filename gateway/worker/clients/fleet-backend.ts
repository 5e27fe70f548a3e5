import type { InferenceBackend } from "../../../shared/app/inference-backend.ts";
import { incompleteGeneration, untilDone } from "../../../shared/protocol/generation-contract.ts";
import type { EmbeddingsResult, GenerationEvent } from "../../../shared/protocol/generation-events.ts";
import type { LoadResult, ModelObject, UnloadResult } from "../../../shared/protocol/model-schemas.ts";
import type { TokenCount } from "../../../shared/protocol/token-count.ts";
import type {
  ChatRequest,
  CompletionRequest,
  EmbeddingsRequest,
  LoadRequest,
  UnloadRequest,
} from "../../../shared/protocol/request-schemas.ts";
import type { Caller } from "../../fleet/access/caller.ts";
import { ApiError } from "../../../shared/protocol/api-error.ts";
import { fromWire, toWire, type WireError } from "../../../shared/protocol/frames.ts";
import { unwrap, type FleetApi, type GenerationOperation } from "../../fleet/fleet-contract.ts";
import { LineDecoder, settledFrom, type NodeApi } from "../../node/node-contract.ts";

/**
 * The gateway's `InferenceBackend`: every call is one RPC to the Fleet object, except a
 * generation's tokens: the Fleet admits and places it, and the Worker reads it from the chosen
 * node's object as a byte stream of lines, turned back into events here. When the node fails it
 * before any text, the Worker asks the Fleet again (`retry`), which moves it or ends it. Cancelling
 * (the client went away) reaches the Fleet, which frees the slot and tells the node to stop.
 */
export class FleetBackend implements InferenceBackend {
  readonly #fleet: FleetApi;
  readonly #node: (name: string) => NodeApi;
  readonly #waitUntil: (promise: Promise<unknown>) => void;
  readonly #caller: Caller;

  /** `waitUntil` keeps the Worker alive for the cancel call after its client is gone; `caller` is authorized by the Fleet on every call. */
  constructor(fleet: FleetApi, node: (name: string) => NodeApi, waitUntil: (promise: Promise<unknown>) => void, caller: Caller) {
    this.#fleet = fleet;
    this.#node = node;
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
    const fleet = this.#fleet;
    const nodeObject = this.#node;
    const caller = this.#caller;
    const id = crypto.randomUUID();
    /** No cancel to send: the request ended (`done`, an error, a refusal), or it was sent. */
    let ended = false;
    let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
    const stop = () => {
      void reader?.cancel(signal.reason).catch(() => undefined);
      if (!ended) this.#waitUntil(fleet.cancel(id).catch(() => undefined));
      ended = true;
    };
    signal.addEventListener("abort", stop, { once: true });
    async function* received(): AsyncGenerator<GenerationEvent> {
      let granted = await fleet.admit(id, operation, caller);
      /** The client sees `start` once, whichever node it came from. */
      let startSent = false;
      for (;;) {
        if (!granted.ok) {
          ended = true;
          throw fromWire(granted.error);
        }
        const lease = granted.result;
        /** Set when the node failed it before any text: the Fleet moves it on, or ends it with this. */
        let failure: WireError | null = null;
        let deltaSent = false;
        try {
          reader = (await nodeObject(lease.node).relay(lease)).getReader();
          // The client left while the relay was being asked for: `stop` found no reader to cancel then.
          if (signal.aborted) void reader.cancel(signal.reason).catch(() => undefined);
          const lines = new LineDecoder();
          read: for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
            for (const line of lines.push(chunk.value)) {
              if ("error" in line) {
                if (line.retryable === true) {
                  failure = line.error;
                  break read;
                }
                ended = true;
                throw fromWire(line.error);
              }
              if (line.event.type === "start") {
                if (startSent) continue;
                startSent = true;
              } else if (line.event.type === "delta") {
                deltaSent = true;
              } else {
                ended = true;
              }
              yield line.event;
              if (ended) return;
            }
          }
          if (failure === null) throw new Error("the node object's stream ended before the generation did");
        } catch (error) {
          if (error instanceof ApiError) throw error;
          // The client left: its reason ends the stream, as everywhere else.
          signal.throwIfAborted();
          // The node's object went away (evicted, restarted) mid-read: it can no longer settle the
          // request, so the Worker does; before any text, the request moves on as from a lost node.
          const lost = new ApiError(
            502,
            deltaSent
              ? `The node "${lease.node}" was lost in the middle of the generation; the output is incomplete.`
              : `The node "${lease.node}" was lost before answering.`,
            { code: "node_disconnected", type: "server_error" },
          );
          if (deltaSent) {
            ended = true;
            await fleet.settle(id, lease.attempt, { status: 502, failed: true, errorCode: "node_disconnected" }, settledFrom(lease)).catch(() => undefined);
            throw lost;
          }
          failure = toWire(lost);
        }
        reader = null;
        granted = await fleet.retry(id, lease.conn, failure);
      }
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
