import { ApiError } from "../../../shared/protocol/api-error.ts";
import { SlidingWindow } from "./sliding-window.ts";

/**
 * The wrong-credential brake: wrong admin, metrics and node tokens and API keys per client address. Past
 * `MAX_FAILED_ATTEMPTS` within `ATTEMPT_WINDOW_MS`, a wrong one from that address gets 429 until
 * the window has passed. Counted in the Fleet's SQLite, so it is exact whichever Worker isolate
 * took the request and survives the object's restarts. Only wrong credentials are ever counted or
 * braked: the right one always gets through, so nobody (a teammate behind the owner's NAT) can
 * lock its owner out. The secrets are 256-bit random values: the brake is against noise and cost,
 * not their only defence.
 */
const MAX_FAILED_ATTEMPTS = 10;
const ATTEMPT_WINDOW_MS = 60_000;
/** Bounded storage: addresses × attempts, the oldest dropped first past this. */
const MAX_ROWS = 50_000;

export class FailedAttempts {
  readonly #window: SlidingWindow;

  constructor(sql: SqlStorage) {
    const spec = { windowMs: ATTEMPT_WINDOW_MS, table: "failed_attempts", subject: "address", bySubject: "failed_attempts_by_address", byTime: "failed_attempts_by_age" };
    this.#window = new SlidingWindow(sql, spec);
  }

  /**
   * A wrong credential from `address`: counted, unless the address is already braked. Returns the
   * seconds until it may be answered again (then the caller answers 429), or null (then 401).
   */
  fail(address: string, now: number): number | null {
    // Braked attempts are not counted: a flood neither grows the table nor pushes the window on.
    const counted = this.#window.admit(address, MAX_FAILED_ATTEMPTS, now);
    if (!counted.admitted) return counted.retryAfterMs / 1000;
    this.#window.bound(MAX_ROWS);
    return null;
  }
}

export const tooManyAttempts = (label: string, wait: number) =>
  new ApiError(429, `Too many wrong ${label}s from this address; try again in ${Math.ceil(wait)} s.`, { code: "too_many_attempts", retryAfter: wait });

/** The client's address, as Cloudflare's edge sets it; absent only in local development, where every client is "local". */
export const clientAddress = (request: Request): string => request.headers.get("cf-connecting-ip") ?? "local";
