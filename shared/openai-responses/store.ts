import { ApiError } from "../protocol/api-error.ts";
import type { ResponseObject } from "./schemas.ts";
import type { MessageInput } from "./to-chat.ts";

/**
 * A stored response and what a follow-up (`previous_response_id`) continues from. `/v1/responses`
 * and LM Studio's `/api/v1/chat` share the store, so either can continue the other's conversation.
 */
export interface StoredResponse {
  id: string;
  /** Unix seconds. */
  created_at: number;
  /** The conversation up to and including this response's output; instructions are not inherited, so not here. */
  messages: MessageInput[];
  /** The Responses API object, for `GET /v1/responses/{id}`; absent for an LM Studio chat. */
  response?: ResponseObject;
}

/**
 * Where responses made with `store` live, readable only by whoever made them: the gateway keeps
 * them in the Fleet's SQLite under the caller's key, so a conversation continues on any node;
 * an agent in direct mode keeps them in memory.
 */
export interface ResponseStore {
  save(record: StoredResponse): Promise<void>;
  get(id: string): Promise<StoredResponse | undefined>;
  /** Whether there was such a response. */
  delete(id: string): Promise<boolean>;
  /** Refuses (a 4xx) when the caller may not store `bytes` more; called before a generation that would store its conversation. */
  assertRoom(bytes: number): Promise<void>;
}

/** Direct mode's store: the most recent responses, in memory. */
export class MemoryResponseStore implements ResponseStore {
  readonly #records = new Map<string, StoredResponse>();
  readonly #capacity: number;

  constructor(capacity = 1_000) {
    this.#capacity = capacity;
  }

  async save(record: StoredResponse): Promise<void> {
    this.#records.set(record.id, record);
    // A Map iterates in insertion order: the first key is the oldest.
    for (const id of this.#records.keys()) {
      if (this.#records.size <= this.#capacity) break;
      this.#records.delete(id);
    }
  }

  async get(id: string): Promise<StoredResponse | undefined> {
    return this.#records.get(id);
  }

  async delete(id: string): Promise<boolean> {
    return this.#records.delete(id);
  }

  /** Always room: the oldest make way for the newest. */
  async assertRoom(_bytes: number): Promise<void> {}
}

/** The stored conversation a request continues (none without `previous_response_id`); an unknown id is a 400, as at OpenAI and LM Studio. */
export async function conversationBefore(store: ResponseStore, previousId: string | undefined): Promise<MessageInput[]> {
  if (previousId === undefined) return [];
  const previous = await store.get(previousId);
  if (previous === undefined) {
    throw new ApiError(400, `Previous response with id '${previousId}' not found.`, { param: "previous_response_id", code: "previous_response_not_found" });
  }
  return previous.messages;
}

/** The gateway keeps a stored conversation in one SQLite row, which holds at most 2 MB; this leaves room for the answer. */
const MAX_STORED_CONVERSATION_BYTES = 1_500_000;

/** Refuses, before any token is spent, a conversation too long to store with its answer; returns its size in bytes. */
export function assertStorable(conversation: MessageInput[]): number {
  const bytes = new TextEncoder().encode(JSON.stringify(conversation)).length;
  if (bytes > MAX_STORED_CONVERSATION_BYTES) {
    throw new ApiError(413, `This conversation is ${bytes} bytes, too long to store (at most ${MAX_STORED_CONVERSATION_BYTES}). Send store: false with the whole history instead.`, {
      param: "store",
      code: "conversation_too_large",
    });
  }
  return bytes;
}
