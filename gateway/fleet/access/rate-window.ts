const MINUTE_MS = 60_000;

/**
 * The requests each key was admitted in the last minute, in the Fleet's SQLite storage: the Fleet
 * hibernates after seconds of quiet and forgets its memory, and a requests-per-minute limit must
 * not. One row per admitted request of a key that has a limit; rows leave when they leave the minute.
 */
export class RateWindow {
  readonly #sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.#sql = sql;
    sql.exec(`
      CREATE TABLE IF NOT EXISTS rate_window (key_id TEXT NOT NULL, at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS rate_window_by_key ON rate_window (key_id, at);
      CREATE INDEX IF NOT EXISTS rate_window_by_time ON rate_window (at);
    `);
  }

  /** Requests counted in the minute before `now`, and when the newest of them leaves it (ms), without counting one. */
  used(keyId: string, now: number): { count: number; clearsAt: number } {
    const { count, newest } = this.#sql
      .exec<{ count: number; newest: number | null }>("SELECT COUNT(*) AS count, MAX(at) AS newest FROM rate_window WHERE key_id = ? AND at > ?", keyId, now - MINUTE_MS)
      .one();
    return { count, clearsAt: newest === null ? now : newest + MINUTE_MS };
  }

  /** Counts a request at `now` if fewer than `limit` were counted in the minute before; else the ms until one leaves the window. */
  admit(keyId: string, limit: number, now: number): { admitted: true } | { admitted: false; retryAfterMs: number } {
    const since = now - MINUTE_MS;
    this.#sql.exec("DELETE FROM rate_window WHERE at <= ?", since);
    const { count, oldest } = this.#sql
      .exec<{ count: number; oldest: number | null }>("SELECT COUNT(*) AS count, MIN(at) AS oldest FROM rate_window WHERE key_id = ?", keyId)
      .one();
    if (count >= limit) return { admitted: false, retryAfterMs: (oldest ?? now) + MINUTE_MS - now };
    this.#sql.exec("INSERT INTO rate_window (key_id, at) VALUES (?, ?)", keyId, now);
    return { admitted: true };
  }
}
