import type { EmbeddingsResult, GenerationResult } from "./schemas/generation.ts";
import type { ModelObject, OpenAIModelObject } from "./schemas/models.ts";
import type {
  ChatCompletion,
  ChatCompletionChunk,
  EmbeddingsResponse,
  TextCompletion,
  TextCompletionChunk,
} from "./schemas/responses.ts";

/**
 * Shapes backend results into API responses. `lmstudio` (the `/api/v0/*` family) carries
 * `stats`, `model_info` and `runtime`; `openai` (`/v1/*`) keeps OpenAI's plain shape.
 * Both carry the gateway's one namespaced `gateway` object when there is one.
 */
export type Flavor = "lmstudio" | "openai";

export type CompletionKind = "chat" | "text";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

export function responseId(kind: CompletionKind): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  let suffix = "";
  for (const byte of bytes) suffix += ALPHABET[byte % ALPHABET.length];
  return `${kind === "chat" ? "chatcmpl" : "cmpl"}-${suffix}`;
}

export const unixSeconds = () => Math.floor(Date.now() / 1000);

function extras(result: GenerationResult, flavor: Flavor) {
  return {
    ...(flavor === "lmstudio" ? { stats: result.stats, model_info: result.model_info, runtime: result.runtime } : {}),
    ...(result.gateway ? { gateway: result.gateway } : {}),
  };
}

export interface ResponseHead {
  id: string;
  created: number;
  model: string;
}

export function completionBody(
  kind: CompletionKind,
  head: ResponseHead,
  text: string,
  result: GenerationResult,
  flavor: Flavor,
): ChatCompletion | TextCompletion {
  const tail = { usage: result.usage, ...extras(result, flavor) };
  if (kind === "text") {
    const choices = [{ index: 0, text, logprobs: null, finish_reason: result.finish_reason }];
    return { ...ordered(head, "text_completion"), choices, ...tail };
  }
  const message = {
    role: "assistant" as const,
    content: result.tool_calls && text === "" ? null : text,
    ...(result.tool_calls ? { tool_calls: result.tool_calls } : {}),
  };
  return { ...ordered(head, "chat.completion"), choices: [{ index: 0, logprobs: null, finish_reason: result.finish_reason, message }], ...tail };
}

/** OpenAI's key order (`id`, `object`, `created`, `model`): some clients print bodies as they come. */
function ordered<O extends string>(head: ResponseHead, object: O) {
  return { id: head.id, object, created: head.created, model: head.model };
}

type Chunk = ChatCompletionChunk | TextCompletionChunk;

/** The chunks of a stream, in order: `opening`, any number of `delta`, then `closing`. */
export class ChunkShaper {
  readonly #kind: CompletionKind;
  readonly #head: ResponseHead;
  readonly #flavor: Flavor;

  constructor(kind: CompletionKind, head: ResponseHead, flavor: Flavor) {
    this.#kind = kind;
    this.#head = head;
    this.#flavor = flavor;
  }

  #chunk(choice: Record<string, unknown> | null, rest: Record<string, unknown> = {}): Chunk {
    const choices = choice === null ? [] : [{ index: 0, logprobs: null, finish_reason: null, ...choice }];
    return { ...ordered(this.#head, this.#kind === "chat" ? "chat.completion.chunk" : "text_completion"), choices, ...rest } as Chunk;
  }

  /** OpenAI's first chat chunk announces the role; completions have no such chunk. */
  opening(): Chunk[] {
    return this.#kind === "chat" ? [this.#chunk({ delta: { role: "assistant", content: "" } })] : [];
  }

  delta(text: string): Chunk {
    return this.#kind === "chat" ? this.#chunk({ delta: { content: text } }) : this.#chunk({ text });
  }

  closing(result: GenerationResult, includeUsage: boolean): Chunk[] {
    const chunks: Chunk[] = [];
    if (this.#kind === "chat" && result.tool_calls) {
      const toolCalls = result.tool_calls.map((call, index) => ({ index, ...call }));
      chunks.push(this.#chunk({ delta: { tool_calls: toolCalls } }));
    }
    const finalDelta = this.#kind === "chat" ? { delta: {} } : { text: "" };
    chunks.push(this.#chunk({ ...finalDelta, finish_reason: result.finish_reason }, extras(result, this.#flavor)));
    if (includeUsage) chunks.push(this.#chunk(null, { usage: result.usage }));
    return chunks;
  }
}

export function embeddingsBody(result: EmbeddingsResult, encoding: "float" | "base64" = "float"): EmbeddingsResponse {
  return {
    object: "list",
    data: result.embeddings.map((vector, index) => ({
      object: "embedding",
      embedding: encoding === "base64" ? float32Base64(vector) : vector,
      index,
    })),
    model: result.model,
    usage: result.usage,
    ...(result.gateway ? { gateway: result.gateway } : {}),
  };
}

export function openAIModel(model: ModelObject): OpenAIModelObject {
  return {
    id: model.id,
    object: "model",
    created: 0,
    owned_by: model.publisher,
    context_length: model.loaded_context_length ?? model.max_context_length,
  };
}

/** OpenAI's base64 encoding: the vector as little-endian float32 bytes. */
function float32Base64(vector: number[]): string {
  const bytes = new Uint8Array(new Float32Array(vector).buffer);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}
