/** Something the Fleet holds in memory that must outlive the object. */
export interface Persistent {
  /** Plain data (JSON) to be given back to `restore`. */
  saved(): unknown;
  /** What an earlier `saved` returned, perhaps by an older version of the code: the part takes what still fits. */
  restore(saved: unknown): void;
}

/**
 * What the Fleet counts in memory but must not forget when it hibernates after a quiet spell or is
 * evicted (Prometheus counters, the dashboard's traffic): written to its SQLite storage shortly
 * after a change, one write for every change in between, and read back when the object starts. The
 * pending write keeps the object awake, so hibernation loses nothing; a crash of the runtime loses
 * at most the last `flushAfterMs`.
 */
export class SavedState {
  readonly #sql: SqlStorage;
  readonly #parts: Record<string, Persistent>;
  readonly #flushAfterMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(sql: SqlStorage, parts: Record<string, Persistent>, options: { flushAfterMs: number }) {
    this.#sql = sql;
    this.#parts = parts;
    this.#flushAfterMs = options.flushAfterMs;
    sql.exec("CREATE TABLE IF NOT EXISTS saved_state (part TEXT PRIMARY KEY, state TEXT NOT NULL)");
    for (const row of sql.exec<{ part: string; state: string }>("SELECT part, state FROM saved_state")) {
      parts[row.part]?.restore(JSON.parse(row.state));
    }
  }

  changed(): void {
    this.#timer ??= setTimeout(() => this.flush(), this.#flushAfterMs);
  }

  flush(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const [part, state] of Object.entries(this.#parts)) {
      this.#sql.exec("INSERT OR REPLACE INTO saved_state (part, state) VALUES (?, ?)", part, JSON.stringify(state.saved()));
    }
  }
}
