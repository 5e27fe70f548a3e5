import type { UsageQuery, UsageRow } from "../../../shared/gateway-admin/admin-schemas.ts";

export interface UsageDelta {
  promptTokens: number;
  completionTokens: number;
  failed: boolean;
}

interface Totals {
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  errors: number;
}

export const utcDay = (at: Date) => at.toISOString().slice(0, 10);

/**
 * Usage per key × model × UTC day. Requests add to an in-memory batch that is written in one
 * transaction shortly after: no storage write waits on a request's path, and the pending flush
 * keeps the Fleet from hibernating, so a count is not lost to eviction. Readers flush first.
 */
export class UsageLedger {
  readonly #sql: SqlStorage;
  readonly #flushAfterMs: number;
  readonly #onFlush: (lastUsed: Map<string, string>) => void;
  #pending = new Map<string, Totals>();
  #lastUsed = new Map<string, string>();
  /** Tokens per key for one day, so daily budgets are checked without a query per request. */
  #today: { day: string; tokens: Map<string, number> } = { day: "", tokens: new Map() };
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(sql: SqlStorage, options: { flushAfterMs: number; onFlush: (lastUsed: Map<string, string>) => void }) {
    this.#sql = sql;
    this.#flushAfterMs = options.flushAfterMs;
    this.#onFlush = options.onFlush;
    sql.exec(`
      CREATE TABLE IF NOT EXISTS usage (
        key_id TEXT NOT NULL, model TEXT NOT NULL, day TEXT NOT NULL,
        requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, errors INTEGER NOT NULL,
        PRIMARY KEY (key_id, model, day)
      );
    `);
  }

  record(keyId: string, model: string, delta: UsageDelta, at: Date): void {
    const day = utcDay(at);
    // Loaded before this delta joins the pending batch, which a fresh load also counts.
    const today = this.#todayTokens(day);
    const id = JSON.stringify([keyId, model, day]);
    const totals = this.#pending.get(id) ?? { requests: 0, prompt_tokens: 0, completion_tokens: 0, errors: 0 };
    totals.requests += 1;
    totals.prompt_tokens += delta.promptTokens;
    totals.completion_tokens += delta.completionTokens;
    totals.errors += delta.failed ? 1 : 0;
    this.#pending.set(id, totals);
    this.#lastUsed.set(keyId, at.toISOString());
    today.set(keyId, (today.get(keyId) ?? 0) + delta.promptTokens + delta.completionTokens);
    this.#timer ??= setTimeout(() => this.flush(), this.#flushAfterMs);
  }

  tokensOn(keyId: string, at: Date): number {
    return this.#todayTokens(utcDay(at)).get(keyId) ?? 0;
  }

  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.size === 0) return;
    const pending = this.#pending;
    const lastUsed = this.#lastUsed;
    this.#pending = new Map();
    this.#lastUsed = new Map();
    for (const [id, totals] of pending) {
      const [keyId, model, day] = JSON.parse(id) as [string, string, string];
      this.#sql.exec(
        `INSERT INTO usage (key_id, model, day, requests, prompt_tokens, completion_tokens, errors) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (key_id, model, day) DO UPDATE SET
           requests = requests + excluded.requests, prompt_tokens = prompt_tokens + excluded.prompt_tokens,
           completion_tokens = completion_tokens + excluded.completion_tokens, errors = errors + excluded.errors`,
        keyId,
        model,
        day,
        totals.requests,
        totals.prompt_tokens,
        totals.completion_tokens,
        totals.errors,
      );
    }
    this.#onFlush(lastUsed);
  }

  query(query: UsageQuery, keyNames: Map<string, string>): UsageRow[] {
    this.flush();
    const where: string[] = [];
    const binds: string[] = [];
    if (query.key !== undefined) (where.push("key_id = ?"), binds.push(query.key));
    if (query.model !== undefined) (where.push("model = ?"), binds.push(query.model));
    if (query.from !== undefined) (where.push("day >= ?"), binds.push(query.from));
    if (query.to !== undefined) (where.push("day <= ?"), binds.push(query.to));
    const rows = this.#sql
      .exec<Omit<UsageRow, "key_name">>(
        `SELECT * FROM usage ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY day, key_id, model`,
        ...binds,
      )
      .toArray();
    return rows.map((row) => ({ ...row, key_name: keyNames.get(row.key_id) ?? row.key_id }));
  }

  #todayTokens(day: string): Map<string, number> {
    if (this.#today.day !== day) {
      const rows = this.#sql
        .exec<{ key_id: string; tokens: number }>(
          "SELECT key_id, SUM(prompt_tokens + completion_tokens) AS tokens FROM usage WHERE day = ? GROUP BY key_id",
          day,
        )
        .toArray();
      this.#today = { day, tokens: new Map(rows.map((row) => [row.key_id, row.tokens])) };
      // Pending counts of that day are not in the table yet.
      for (const [id, totals] of this.#pending) {
        const [keyId, , pendingDay] = JSON.parse(id) as [string, string, string];
        if (pendingDay === day) this.#today.tokens.set(keyId, (this.#today.tokens.get(keyId) ?? 0) + totals.prompt_tokens + totals.completion_tokens);
      }
    }
    return this.#today.tokens;
  }
}
