/**
 * Failed attempts at a secret (the admin or metrics token) per client address: past `max` within
 * `windowMs`, every attempt from that address is refused until the window has passed, right token
 * or not, so guessing costs a window per `max` tries. Kept in the Worker's memory (per instance):
 * the tokens are long random secrets, so this is a brake on noise, not their only defence.
 */
export class FailedAttempts {
  readonly #max: number;
  readonly #windowMs: number;
  /** Failure times per address, oldest first; addresses in the order they last failed. */
  readonly #failures = new Map<string, number[]>();

  constructor(max: number, windowMs: number) {
    this.#max = max;
    this.#windowMs = windowMs;
  }

  /** Seconds until `address` may try again, or null if it may now. */
  blockedFor(address: string, now: number): number | null {
    const recent = this.#recent(address, now);
    if (recent.length < this.#max) return null;
    return ((recent[0] as number) + this.#windowMs - now) / 1000;
  }

  fail(address: string, now: number): void {
    const recent = this.#recent(address, now);
    recent.push(now);
    this.#failures.delete(address);
    this.#failures.set(address, recent.slice(-this.#max));
    // Bounded memory: the addresses that failed longest ago go first.
    if (this.#failures.size > MAX_ADDRESSES) this.#failures.delete(this.#failures.keys().next().value as string);
  }

  #recent(address: string, now: number): number[] {
    return (this.#failures.get(address) ?? []).filter((at) => at > now - this.#windowMs);
  }
}

const MAX_ADDRESSES = 10_000;
