import { ApiError } from "../protocol/api-error.ts";
import type { ResponseObject } from "./schemas.ts";
import type { MessageInput } from "./to-chat.ts";

/**
 * A response as it is stored: only what its turn added, linked to the response it continued. A
 * `previous_response_id` chain is kept as its turns, never as a copy of the conversation at each
 * one (which grows with the square of its length). `/v1/responses` and LM Studio's `/api/v1/chat`
 * share the store, so either can continue the other's conversation.
 */
export interface StoredTurn {
  id: string;
  /** Unix seconds. */
  created_at: number;
  /** The stored response this one continued; null (or absent, in rows stored before chains were linked) when it began a conversation. */
  previous_response_id?: string | null;
  /** What this turn added: its input and its output. Instructions are not inherited, so not here. */
  messages: MessageInput[];
  /** The Responses API object, for `GET /v1/responses/{id}`; absent for an LM Studio chat. */
  response?: ResponseObject;
}

/** A stored response as read: its conversation rebuilt along its chain, up to and including its output. */
export interface StoredResponse {
  id: string;
  created_at: number;
  messages: MessageInput[];
  response?: ResponseObject;
  /** How many stored responses the conversation spans, this one included. */
  turns: number;
  /**
   * A response the chain continues that was deleted (or expired) since: `messages` then holds only
   * what came after it, and the conversation cannot be continued or listed (409).
   */
  missing?: string;
}

/**
 * Where responses made with `store` live, readable only by whoever made them: the gateway keeps
 * them in the Fleet's SQLite under the caller's key, so a conversation continues on any node;
 * an agent in direct mode keeps them in memory.
 */
export interface ResponseStore {
  save(turn: StoredTurn): Promise<void>;
  get(id: string): Promise<StoredResponse | undefined>;
  /**
   * Whether there was such a response. Only that response goes: a later one that continued it
   * stays readable, but continuing it (or listing its input items) is a 409 `conversation_incomplete`.
   */
  delete(id: string): Promise<boolean>;
  /** Refuses (a 4xx) when the caller may not store `bytes` more; called before a generation that would store its turn. */
  assertRoom(bytes: number): Promise<void>;
}

/** The longest chain a conversation may be stored as: bounds the rows a read walks. */
export const MAX_STORED_TURNS = 1_000;

/**
 * The conversation of response `id`, rebuilt from its turns (`turnOf` finds one by id, among the
 * caller's own). Walks at most `MAX_STORED_TURNS`: a longer chain is never stored.
 */
export function rebuildConversation(id: string, turnOf: (id: string) => StoredTurn | undefined): StoredResponse | undefined {
  const last = turnOf(id);
  if (last === undefined) return undefined;
  const turns = [last];
  let missing: string | undefined;
  for (let previous = last.previous_response_id; previous != null && turns.length < MAX_STORED_TURNS; ) {
    const turn = turnOf(previous);
    if (turn === undefined) {
      missing = previous;
      break;
    }
    turns.push(turn);
    previous = turn.previous_response_id;
  }
  const messages = turns.reverse().flatMap((turn) => turn.messages);
  return {
    id,
    created_at: last.created_at,
    messages,
    ...(last.response === undefined ? {} : { response: last.response }),
    turns: turns.length,
    ...(missing === undefined ? {} : { missing }),
  };
}

/** The whole conversation of a stored response; 409 when a response it continued was deleted. */
export function wholeConversation(record: StoredResponse, param = "previous_response_id"): MessageInput[] {
  if (record.missing === undefined) return record.messages;
  throw new ApiError(
    409,
    `Response '${record.id}' continues '${record.missing}', which was deleted or has expired: its conversation can no longer be rebuilt. ` +
      "Send the history yourself (input with the earlier turns) instead.",
    { param, code: "conversation_incomplete" },
  );
}

/** Direct mode's store: the most recently used responses, in memory. */
export class MemoryResponseStore implements ResponseStore {
  /** In order of use, least recent first: a turn is used again whenever a later one continues it. */
  readonly #turns = new Map<string, StoredTurn>();
  readonly #capacity: number;

  constructor(capacity = 1_000) {
    this.#capacity = capacity;
  }

  async save(turn: StoredTurn): Promise<void> {
    this.#turns.set(turn.id, turn);
    // Its chain moves up behind it, nearest first, so the oldest out are never a live chain's start.
    for (let previous = turn.previous_response_id, hops = 0; previous != null && hops < MAX_STORED_TURNS; hops += 1) {
      const earlier = this.#turns.get(previous);
      if (earlier === undefined) break;
      this.#turns.delete(previous);
      this.#turns.set(previous, earlier);
      previous = earlier.previous_response_id;
    }
    // A Map iterates in insertion order: the first key is the least recently used.
    for (const id of this.#turns.keys()) {
      if (this.#turns.size <= this.#capacity) break;
      this.#turns.delete(id);
    }
  }

  async get(id: string): Promise<StoredResponse | undefined> {
    return rebuildConversation(id, (turn) => this.#turns.get(turn));
  }

  async delete(id: string): Promise<boolean> {
    return this.#turns.delete(id);
  }

  /** Always room: the least recently used make way for the newest. */
  async assertRoom(_bytes: number): Promise<void> {}
}

/** The stored conversation a request continues from, and the turns it spans. */
export interface ConversationBefore {
  messages: MessageInput[];
  turns: number;
}

/** The stored conversation a request continues (none without `previous_response_id`); an unknown id is a 400, as at OpenAI and LM Studio. */
export async function conversationBefore(store: ResponseStore, previousId: string | undefined): Promise<ConversationBefore> {
  if (previousId === undefined) return { messages: [], turns: 0 };
  const previous = await store.get(previousId);
  if (previous === undefined) {
    throw new ApiError(400, `Previous response with id '${previousId}' not found.`, { param: "previous_response_id", code: "previous_response_not_found" });
  }
  return { messages: wholeConversation(previous), turns: previous.turns };
}

/** A conversation sent to a node whole at each turn: bounded so that reading it back and sending it stays cheap. */
const MAX_STORED_CONVERSATION_BYTES = 1_500_000;

const bytesOf = (messages: MessageInput[]) => new TextEncoder().encode(JSON.stringify(messages)).length;

/**
 * Refuses, before any token is spent, a turn that would make its conversation too long to store
 * (in bytes, or in turns); returns the bytes the turn itself adds, which is what storing it takes.
 */
export function assertStorable(before: ConversationBefore, added: MessageInput[]): number {
  const addedBytes = bytesOf(added);
  const bytes = bytesOf(before.messages) + addedBytes;
  if (bytes > MAX_STORED_CONVERSATION_BYTES) {
    throw new ApiError(413, `This conversation is ${bytes} bytes, too long to store (at most ${MAX_STORED_CONVERSATION_BYTES}). Send store: false with the whole history instead.`, {
      param: "store",
      code: "conversation_too_large",
    });
  }
  if (before.turns >= MAX_STORED_TURNS) {
    throw new ApiError(413, `This conversation is stored as ${before.turns} responses, the most one may span. Send store: false with the whole history instead.`, {
      param: "store",
      code: "conversation_too_large",
    });
  }
  return addedBytes;
}
