import { ApiError } from "../../../shared/protocol/api-error.ts";

/**
 * The wrong-credential brake: wrong admin, metrics and node tokens per client address. Past
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
  readonly #sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.#sql = sql;
    sql.exec(`
      CREATE TABLE IF NOT EXISTS failed_attempts (address TEXT NOT NULL, at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS failed_attempts_by_address ON failed_attempts (address, at);
      CREATE INDEX IF NOT EXISTS failed_attempts_by_age ON failed_attempts (at);
    `);
  }

  /**
   * A wrong credential from `address`: counted, unless the address is already braked. Returns the
   * seconds until it may be answered again (then the caller answers 429), or null (then 401).
   */
  fail(address: string, now: number): number | null {
    this.#sql.exec("DELETE FROM failed_attempts WHERE at <= ?", now - ATTEMPT_WINDOW_MS);
    const recent = this.#sql
      .exec<{ at: number }>("SELECT at FROM failed_attempts WHERE address = ? ORDER BY at LIMIT ?", address, MAX_FAILED_ATTEMPTS)
      .toArray();
    // Braked attempts are not counted: a flood neither grows the table nor pushes the window on.
    if (recent.length >= MAX_FAILED_ATTEMPTS) return ((recent[0] as { at: number }).at + ATTEMPT_WINDOW_MS - now) / 1000;
    this.#sql.exec("INSERT INTO failed_attempts (address, at) VALUES (?, ?)", address, now);
    this.#sql.exec(
      "DELETE FROM failed_attempts WHERE rowid IN (SELECT rowid FROM failed_attempts ORDER BY at DESC LIMIT -1 OFFSET ?)",
      MAX_ROWS,
    );
    return null;
  }
}

export const tooManyAttempts = (label: string, wait: number) =>
  new ApiError(429, `Too many wrong ${label}s from this address; try again in ${Math.ceil(wait)} s.`, { code: "too_many_attempts", retryAfter: wait });

/** The client's address, as Cloudflare's edge sets it; absent only in local development, where every client is "local". */
export const clientAddress = (request: Request): string => request.headers.get("cf-connecting-ip") ?? "local";
