import type { ChatMessage } from "../../../shared/protocol/request-schemas.ts";

/** Conversation prefixes remembered; the oldest are forgotten first. A few hundred bytes each. */
const MAX_PREFIXES = 8_192;

/**
 * Where each conversation prefix last went, so that a conversation's next turn (which repeats
 * every earlier message) goes back to the node whose engine caches them. Kept in memory only:
 * after a restart the next turns simply land by load and are remembered again.
 */
export class PromptAffinity {
  /** Prefix key → node name, oldest first (a Map keeps insertion order). */
  readonly #nodes = new Map<string, string>();

  /**
   * One key per leading run of messages (the first message, the first two, …), longest last.
   * The model is part of every key: another model has its own caches.
   */
  static keys(model: string, messages: readonly ChatMessage[]): string[] {
    const keys: string[] = [];
    let key = hash(model).toString(36);
    for (const message of messages) {
      key = hash(`${key}\u0000${JSON.stringify(message)}`).toString(36);
      keys.push(key);
    }
    return keys;
  }

  /**
   * The node that got the longest of these prefixes most recently, if any. The whole prompt
   * itself does not count: an identical prompt is mostly a concurrent duplicate (retries, n
   * samples), whose cached slot is busy with the original; they are better spread.
   */
  nodeFor(keys: readonly string[]): string | undefined {
    for (let index = keys.length - 2; index >= 0; index--) {
      const node = this.#nodes.get(keys[index] as string);
      if (node !== undefined) return node;
    }
    return undefined;
  }

  /** The node now caches every prefix of this prompt. */
  remember(keys: readonly string[], node: string): void {
    for (const key of keys) {
      this.#nodes.delete(key);
      this.#nodes.set(key, node);
    }
    for (const oldest of this.#nodes.keys()) {
      if (this.#nodes.size <= MAX_PREFIXES) break;
      this.#nodes.delete(oldest);
    }
  }
}

/** cyrb53: a fast 53-bit string hash, plenty to tell conversations apart (a collision only costs a cache miss). */
function hash(text: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let index = 0; index < text.length; index++) {
    const char = text.charCodeAt(index);
    h1 = Math.imul(h1 ^ char, 2654435761);
    h2 = Math.imul(h2 ^ char, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}
