import type { ResponseObject } from "./schemas.ts";
import type { MessageInput } from "./to-chat.ts";

/** A stored response and what a follow-up (`previous_response_id`) continues from. */
export interface StoredResponse {
  response: ResponseObject;
  /** The conversation up to and including this response's output; instructions are not inherited, so not here. */
  messages: MessageInput[];
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
}

/** Direct mode's store: the most recent responses, in memory. */
export class MemoryResponseStore implements ResponseStore {
  readonly #records = new Map<string, StoredResponse>();
  readonly #capacity: number;

  constructor(capacity = 1_000) {
    this.#capacity = capacity;
  }

  async save(record: StoredResponse): Promise<void> {
    this.#records.set(record.response.id, record);
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
}
