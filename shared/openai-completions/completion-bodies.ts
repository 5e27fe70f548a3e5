import { choiceEnd, completionLogprobs, type ChoiceRequest, type ChoiceText } from "./choice-texts.ts";
import type { EmbeddingsResult, GenerationResult, TokenLogprob } from "../protocol/generation-events.ts";
import type {
  ChatCompletion,
  ChatCompletionChunk,
  EmbeddingsResponse,
  TextCompletion,
  TextCompletionChunk,
} from "./completion-schemas.ts";

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

/** What shapes a completion's body or chunks: its API, its flavor, the choices asked for, and the head each chunk repeats. */
export interface CompletionShape {
  kind: CompletionKind;
  flavor: Flavor;
  choices: ChoiceRequest;
  head: ResponseHead;
}

export function completionBody({ kind, flavor, choices: request, head }: CompletionShape, texts: readonly ChoiceText[], result: GenerationResult): ChatCompletion | TextCompletion {
  const tail = { usage: result.usage, ...extras(result, flavor) };
  if (kind === "text") {
    const choices = texts.map(({ text, logprobs }, index) => ({
      index,
      text,
      logprobs: request.logprobs ? completionLogprobs(logprobs, 0) : null,
      finish_reason: choiceEnd(result, index).finish_reason,
    }));
    return { ...ordered(head, "text_completion"), choices, ...tail };
  }
  const choices = texts.map(({ text, logprobs }, index) => {
    const end = choiceEnd(result, index);
    const message = {
      role: "assistant" as const,
      content: end.tool_calls && text === "" ? null : text,
      ...(end.tool_calls ? { tool_calls: end.tool_calls } : {}),
    };
    return { index, logprobs: request.logprobs ? { content: logprobs } : null, finish_reason: end.finish_reason, message };
  });
  return { ...ordered(head, "chat.completion"), choices, ...tail };
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
  readonly #request: ChoiceRequest;
  /** Characters sent so far per choice: completions' `text_offset`. */
  readonly #sent: number[];

  constructor({ kind, head, flavor, choices }: CompletionShape) {
    this.#kind = kind;
    this.#head = head;
    this.#flavor = flavor;
    this.#request = choices;
    this.#sent = Array.from({ length: choices.count }, () => 0);
  }

  #chunk(choice: Record<string, unknown> | null, rest: Record<string, unknown> = {}): Chunk {
    const choices = choice === null ? [] : [{ index: 0, logprobs: null, finish_reason: null, ...choice }];
    return { ...ordered(this.#head, this.#kind === "chat" ? "chat.completion.chunk" : "text_completion"), choices, ...rest } as Chunk;
  }

  /** OpenAI's first chat chunk announces the role, once per choice; completions have no such chunk. */
  opening(): Chunk[] {
    if (this.#kind !== "chat") return [];
    const empty = this.#request.logprobs ? { logprobs: { content: [] } } : {};
    return this.#sent.map((_, index) => this.#chunk({ index, delta: { role: "assistant", content: "" }, ...empty }));
  }

  delta(text: string, index = 0, logprobs: TokenLogprob[] = []): Chunk {
    if (this.#kind === "chat") {
      return this.#chunk({ index, delta: { content: text }, ...(this.#request.logprobs ? { logprobs: { content: logprobs } } : {}) });
    }
    const offset = this.#sent[index] ?? 0;
    this.#sent[index] = offset + text.length;
    return this.#chunk({ index, text, ...(this.#request.logprobs ? { logprobs: completionLogprobs(logprobs, offset) } : {}) });
  }

  closing(result: GenerationResult, includeUsage: boolean): Chunk[] {
    const chunks: Chunk[] = [];
    this.#sent.forEach((_, index) => {
      const end = choiceEnd(result, index);
      if (this.#kind === "chat" && end.tool_calls) {
        const toolCalls = end.tool_calls.map((call, position) => ({ index: position, ...call }));
        chunks.push(this.#chunk({ index, delta: { tool_calls: toolCalls } }));
      }
      const finalDelta = this.#kind === "chat" ? { delta: {} } : { text: "" };
      const last = index === this.#sent.length - 1;
      chunks.push(this.#chunk({ index, ...finalDelta, finish_reason: end.finish_reason }, last ? extras(result, this.#flavor) : {}));
    });
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

/** OpenAI's base64 encoding: the vector as little-endian float32 bytes. */
function float32Base64(vector: number[]): string {
  const bytes = new Uint8Array(new Float32Array(vector).buffer);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}
