import type { RequestPage, RequestQuery, RequestRow } from "../../../shared/gateway-admin/request-log-schemas.ts";

/** A finished request as the Fleet records it; `seq` is given when it is written. */
export type RequestRecord = Omit<RequestRow, "seq">;

export interface RequestLogBounds {
  /** Rows kept at most: the oldest leave first. */
  maxRows: number;
  /** Rows older than this leave. */
  maxAgeMs: number;
}

const COLUMNS = [
  "id",
  "at",
  "key_id",
  "key_name",
  "family",
  "route",
  "op",
  "model",
  "node",
  "status",
  "error_code",
  "prompt_tokens",
  "cached_tokens",
  "completion_tokens",
  "queue_ms",
  "ttft_ms",
  "duration_ms",
  "tokens_per_second",
  "retries",
  "traceparent",
] as const satisfies ReadonlyArray<keyof RequestRecord>;

/**
 * One row per finished request, in the Fleet's SQLite storage, bounded by count and by age.
 * Like the usage ledger, rows wait in memory and are written in one batch shortly after, so no
 * storage write waits on a request's path; the pending write keeps the Fleet from hibernating.
 * Readers flush first.
 */
export class RequestLog {
  readonly #sql: SqlStorage;
  readonly #bounds: RequestLogBounds;
  readonly #flushAfterMs: number;
  #pending: RequestRecord[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(sql: SqlStorage, options: RequestLogBounds & { flushAfterMs: number }) {
    this.#sql = sql;
    this.#bounds = { maxRows: options.maxRows, maxAgeMs: options.maxAgeMs };
    this.#flushAfterMs = options.flushAfterMs;
    sql.exec(`
      CREATE TABLE IF NOT EXISTS request_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL, at TEXT NOT NULL, key_id TEXT, key_name TEXT, family TEXT, route TEXT, op TEXT NOT NULL,
        model TEXT NOT NULL, node TEXT, status INTEGER NOT NULL, error_code TEXT,
        prompt_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
        queue_ms INTEGER NOT NULL, ttft_ms REAL, duration_ms INTEGER NOT NULL, tokens_per_second REAL,
        retries INTEGER NOT NULL, traceparent TEXT
      );
      CREATE INDEX IF NOT EXISTS request_log_by_time ON request_log (at);
      CREATE INDEX IF NOT EXISTS request_log_by_key ON request_log (key_id, seq);
    `);
  }

  record(row: RequestRecord): void {
    this.#pending.push(row);
    // A burst between two flushes cannot hold more than the table would keep.
    if (this.#pending.length > this.#bounds.maxRows) this.#pending.shift();
    this.#timer ??= setTimeout(() => this.flush(), this.#flushAfterMs);
  }

  /** Writes the pending rows, then drops what is past the bounds. */
  flush(now = Date.now()): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const pending = this.#pending;
    this.#pending = [];
    const insert = `INSERT INTO request_log (${COLUMNS.join(", ")}) VALUES (${COLUMNS.map(() => "?").join(", ")})`;
    for (const row of pending) this.#sql.exec(insert, ...COLUMNS.map((column) => row[column]));
    this.#sql.exec("DELETE FROM request_log WHERE at < ?", new Date(now - this.#bounds.maxAgeMs).toISOString());
    // Sequence numbers are consecutive (AUTOINCREMENT never reuses one), so the newest maxRows are a range.
    this.#sql.exec("DELETE FROM request_log WHERE seq <= (SELECT MAX(seq) FROM request_log) - ?", this.#bounds.maxRows);
  }

  /** A page of rows matching the query: newest first, or oldest first after a cursor (`after`). */
  query(query: RequestQuery): RequestPage {
    this.flush();
    const where: string[] = [];
    const binds: Array<string | number> = [];
    const add = (clause: string, ...values: Array<string | number>) => (where.push(clause), binds.push(...values));
    if (query.key !== undefined) add("key_id = ?", query.key);
    if (query.model !== undefined) add("model = ?", query.model);
    if (query.node !== undefined) add("node = ?", query.node);
    if (query.status !== undefined) {
      const base = Number(query.status.replace("xx", "00"));
      if (query.status.endsWith("xx")) add("status >= ? AND status < ?", base, base + 100);
      else add("status = ?", base);
    }
    if (query.since !== undefined) add("at >= ?", new Date(query.since).toISOString());
    if (query.before !== undefined) add("seq < ?", query.before);
    if (query.after !== undefined) add("seq > ?", query.after);
    const order = query.after === undefined ? "DESC" : "ASC";
    const rows = this.#sql
      .exec<RequestRow>(
        `SELECT * FROM request_log ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY seq ${order} LIMIT ?`,
        ...binds,
        query.limit + 1,
      )
      .toArray();
    const more = rows.length > query.limit;
    const data = rows.slice(0, query.limit);
    return { data, next: more && order === "DESC" ? (data.at(-1)?.seq ?? null) : null };
  }
}
