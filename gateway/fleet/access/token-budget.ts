import { ApiError } from "../../../shared/protocol/api-error.ts";
import type { KeyRecord } from "../../../shared/gateway-admin/admin-schemas.ts";
import { utcDay } from "./usage-ledger.ts";

/**
 * Tokens per day enforced while generating, not only at admission: each generation of a key with
 * a budget may produce at most what the key has left, less what its other generations in flight
 * may still produce. Its `max_tokens` is capped to that, so parallel requests cannot together
 * overshoot. A prompt is held at its estimate (prompt-estimate.ts) and settles to the node's count.
 */
export class TokenBudget {
  /** Completion tokens held back per key id, and per request id, until the request settles. */
  readonly #heldByKey = new Map<string, number>();
  readonly #held = new Map<string, { key: string; tokens: number }>();

  /**
   * Holds up to `wanted` completion tokens of `key`'s budget for request `id`, having spent
   * `spent` today; returns how many it may produce, or refuses with 429 when none are left.
   */
  hold(id: string, key: KeyRecord, spent: number, wanted: number, now: Date): number {
    if (key.tokens_per_day === null) return wanted;
    const left = key.tokens_per_day - spent - (this.#heldByKey.get(key.id) ?? 0);
    if (left <= 0) throw exhausted(key.tokens_per_day, now);
    const tokens = Math.min(wanted, left);
    this.#held.set(id, { key: key.id, tokens });
    this.#heldByKey.set(key.id, (this.#heldByKey.get(key.id) ?? 0) + tokens);
    return tokens;
  }

  release(id: string): void {
    const held = this.#held.get(id);
    if (held === undefined) return;
    this.#held.delete(id);
    const left = (this.#heldByKey.get(held.key) ?? 0) - held.tokens;
    if (left > 0) this.#heldByKey.set(held.key, left);
    else this.#heldByKey.delete(held.key);
  }
}

/** 429: the prompt alone (about `prompt` tokens) needs more than the `left` tokens the key still has today. */
export function promptOverBudget(prompt: number, left: number, tokensPerDay: number, now: Date): ApiError {
  const error = exhausted(tokensPerDay, now);
  return new ApiError(429, `This request's prompt (about ${prompt} tokens) needs more than the ${left} tokens this API key has left of its ${tokensPerDay} for today (UTC).`, {
    code: "tokens_per_day_exceeded",
    retryAfter: error.retryAfter,
  });
}
/** When today's tokens per day start again: the next UTC midnight (ms). */
export const nextUtcMidnight = (now: Date): number => Date.parse(`${utcDay(now)}T00:00:00.000Z`) + 24 * 3600 * 1000;

/** 429 until the next UTC midnight. */
export function exhausted(tokensPerDay: number, now: Date): ApiError {
  const midnight = nextUtcMidnight(now);
  return new ApiError(429, `This API key has used its ${tokensPerDay} tokens for today (UTC).`, {
    code: "tokens_per_day_exceeded",
    retryAfter: (midnight - now.getTime()) / 1000,
  });
}
