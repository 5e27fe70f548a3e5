import type { ApiError } from "../../shared/errors.ts";
import type { StoredResponse } from "../../shared/openai-responses/store.ts";
import { fromWire, toWire, type Operation, type WireError } from "../../shared/protocol.ts";
import type { DeleteRequest, DeleteResult, DownloadJob, DownloadRequest } from "../../shared/schemas/downloads.ts";
import type { EmbeddingsResult, GenerationEvent } from "../../shared/schemas/generation.ts";
import type { LoadResult, ModelObject, UnloadResult } from "../../shared/schemas/models.ts";
import type { ChatRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "../../shared/schemas/requests.ts";
import type { TokenCount } from "../../shared/schemas/token-count.ts";
import type { V1Model } from "../../shared/schemas/v1-models.ts";
import type { Caller } from "./access/caller.ts";

/*
 * The contract between the Worker and the Fleet object: the API calls the Worker makes by RPC,
 * what they answer, and how a generation travels back. The Worker's side of the gateway knows
 * the fleet only through this module.
 */

export type GenerationOperation = Extract<Operation, { op: "chat" | "completion" }>;
export type CallOperation = Extract<Operation, { op: "embeddings" | "load" | "unload" | "download" | "cancel_download" | "delete" | "count_tokens" | "wake" }>;

/** The outcome of a one-shot call over RPC, where thrown errors lose their shape. */
export type Outcome<T> = { ok: true; result: T } | { ok: false; error: WireError };

export const failed = (error: ApiError): { ok: false; error: WireError } => ({ ok: false, error: toWire(error) });

/** The result, or the call's error thrown again as the `ApiError` it was in the Fleet. */
export function unwrap<T>(outcome: Outcome<T>): T {
  if (outcome.ok) return outcome.result;
  throw fromWire(outcome.error);
}

/** A generation as the Worker gets it: the request id (to cancel it) and its stream of lines. */
export interface GenerationHandle {
  id: string;
  events: ReadableStream<Uint8Array>;
}

/**
 * How a generation travels from the Fleet object to the Worker: a byte stream of NDJSON lines
 * (Workers RPC only carries byte streams). Each line is one event, or the error that ends it.
 * The Fleet validated every event when it arrived from the node, so the Worker trusts the lines.
 */
export type FleetLine = { event: GenerationEvent } | { error: WireError };

const encoder = new TextEncoder();

export const encodeLines = (lines: FleetLine[]): Uint8Array =>
  encoder.encode(lines.map((line) => `${JSON.stringify(line)}\n`).join(""));

/** Splits a byte stream into lines; a line may arrive split over chunks. */
export class LineDecoder {
  readonly #decoder = new TextDecoder();
  #rest = "";

  push(chunk: Uint8Array): FleetLine[] {
    const text = this.#rest + this.#decoder.decode(chunk, { stream: true });
    const parts = text.split("\n");
    this.#rest = parts.pop() ?? "";
    return parts.filter((part) => part !== "").map((part) => JSON.parse(part) as FleetLine);
  }
}

/**
 * The API's entry points into the Fleet, as the Worker calls them: every one authorizes `caller`
 * in the Fleet. The Worker holds a `DurableObjectStub<Fleet>` as this type, so each result is
 * typed here rather than derived through `Rpc.Result`, which turns any result holding an
 * `unknown` (a stored response's tool schemas) into `never` (workerd#5200).
 */
export interface FleetApi {
  listModels(caller: Caller): Promise<Outcome<ModelObject[]>>;
  /** NDJSON lines of `FleetLine`: the events of the generation, or the error that ends it. */
  generate(operation: GenerationOperation, caller: Caller): Promise<GenerationHandle>;
  /** The client of a generation went away: stop it on its node and free the slot. */
  cancel(id: string): Promise<void>;
  embeddings(body: EmbeddingsRequest, caller: Caller): Promise<Outcome<EmbeddingsResult>>;
  loadModel(body: LoadRequest, caller: Caller): Promise<Outcome<LoadResult>>;
  /** Null when every node that holds the model runs an agent too old to count. */
  countTokens(body: ChatRequest, caller: Caller): Promise<Outcome<TokenCount | null>>;
  unloadModel(body: UnloadRequest, caller: Caller): Promise<Outcome<UnloadResult>>;
  saveResponse(caller: Caller, record: StoredResponse): Promise<Outcome<null>>;
  storedResponse(caller: Caller, id: string): Promise<Outcome<StoredResponse | null>>;
  deleteResponse(caller: Caller, id: string): Promise<Outcome<boolean>>;
  listModelsV1(caller: Caller): Promise<Outcome<V1Model[]>>;
  downloadModel(body: DownloadRequest, caller: Caller): Promise<Outcome<DownloadJob>>;
  downloadStatus(jobId: string, caller: Caller): Promise<Outcome<DownloadJob>>;
  cancelDownload(jobId: string, caller: Caller): Promise<Outcome<DownloadJob>>;
  deleteModel(body: DeleteRequest, caller: Caller): Promise<Outcome<DeleteResult>>;
}

/** The same entry points as the Fleet serves them: an RPC result may be ready at once. */
export type Serving<Api> = {
  [K in keyof Api]: Api[K] extends (...args: infer A) => Promise<infer R> ? (...args: A) => R | Promise<R> : never;
};
