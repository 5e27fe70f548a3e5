import type { ChatRequest, CompletionRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "../protocol/request-schemas.ts";
import type { LoadResult, ModelObject, UnloadResult } from "../protocol/model-schemas.ts";
import type { EmbeddingsResult, GenerationEvent } from "../protocol/generation-events.ts";
import type { TokenCount } from "../protocol/token-count.ts";

/**
 * Everything the API app needs from whoever does the work: the node agent's local engine in
 * direct mode, or the fleet of remote nodes in the gateway. Failures are thrown as `ApiError`.
 * Cancellation is the web-standard way: abort the signal and the work stops, freeing its slot.
 */
export interface InferenceBackend {
  listModels(): Promise<ModelObject[]>;
  /** Emits `start`, then `delta`s, then one `done`, and holds nothing after it (protocol/generation-contract.ts). */
  chat(request: ChatRequest, signal: AbortSignal): AsyncIterable<GenerationEvent>;
  completion(request: CompletionRequest, signal: AbortSignal): AsyncIterable<GenerationEvent>;
  embeddings(request: EmbeddingsRequest, signal: AbortSignal): Promise<EmbeddingsResult>;
  loadModel(request: LoadRequest): Promise<LoadResult>;
  unloadModel(request: UnloadRequest): Promise<UnloadResult>;
  /**
   * The prompt's exact token count, as a generation of this request would report it. Null (or no
   * such method) when it cannot be counted exactly: the gateway's nodes holding the model are
   * all agents older than this operation.
   */
  countTokens?(request: ChatRequest): Promise<TokenCount | null>;
}
