/** A sliding window: how long it is, and where it keeps its rows (a table of (subject, at) and its two indexes, by their stored names). */
export interface WindowSpec {
  windowMs: number;
  table: string;
  subject: string;
  bySubject: string;
  byTime: string;
}

/**
 * Events per subject over the last `windowMs`, in the Fleet's SQLite storage: the Fleet hibernates
 * after seconds of quiet and forgets its memory, and a limit over a window must not. One row per
 * counted event; rows leave when they leave the window.
 */
export class SlidingWindow {
  readonly #sql: SqlStorage;
  readonly #spec: WindowSpec;

  constructor(sql: SqlStorage, spec: WindowSpec) {
    this.#sql = sql;
    this.#spec = spec;
    const { table: name, subject, bySubject, byTime } = spec;
    sql.exec(`
      CREATE TABLE IF NOT EXISTS ${name} (${subject} TEXT NOT NULL, at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS ${bySubject} ON ${name} (${subject}, at);
      CREATE INDEX IF NOT EXISTS ${byTime} ON ${name} (at);
    `);
  }

  /** Events counted in the window before `now`, and when the newest of them leaves it (ms), without counting one. */
  used(subject: string, now: number): { count: number; clearsAt: number } {
    const { table, subject: column } = this.#spec;
    const { count, newest } = this.#sql
      .exec<{ count: number; newest: number | null }>(`SELECT COUNT(*) AS count, MAX(at) AS newest FROM ${table} WHERE ${column} = ? AND at > ?`, subject, now - this.#spec.windowMs)
      .one();
    return { count, clearsAt: newest === null ? now : newest + this.#spec.windowMs };
  }

  /** Counts an event at `now` if fewer than `limit` were counted in the window before; else the ms until one leaves the window. */
  admit(subject: string, limit: number, now: number): { admitted: true } | { admitted: false; retryAfterMs: number } {
    const { table, subject: column } = this.#spec;
    this.#sql.exec(`DELETE FROM ${table} WHERE at <= ?`, now - this.#spec.windowMs);
    const { count, oldest } = this.#sql
      .exec<{ count: number; oldest: number | null }>(`SELECT COUNT(*) AS count, MIN(at) AS oldest FROM ${table} WHERE ${column} = ?`, subject)
      .one();
    if (count >= limit) return { admitted: false, retryAfterMs: (oldest ?? now) + this.#spec.windowMs - now };
    this.#sql.exec(`INSERT INTO ${table} (${column}, at) VALUES (?, ?)`, subject, now);
    return { admitted: true };
  }

  /** Keeps the newest `maxRows` rows of every subject together: the oldest leave first. */
  bound(maxRows: number): void {
    const { table } = this.#spec;
    this.#sql.exec(`DELETE FROM ${table} WHERE rowid IN (SELECT rowid FROM ${table} ORDER BY at DESC LIMIT -1 OFFSET ?)`, maxRows);
  }
}
