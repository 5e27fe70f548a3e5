import type { StoredResponse } from "../../../shared/openai-responses/store.ts";

/** OpenAI keeps stored responses 30 days; so does the gateway, then they go. */
const RETENTION_SECONDS = 30 * 24 * 3600;

/**
 * Stored `/v1/responses` in the Fleet's SQLite, each under the id of the key that made it: every
 * read and delete names the owner, so one key never sees another's conversation. Kept centrally,
 * a conversation continues on whichever node serves its next turn.
 */
export class ResponseTable {
  readonly #sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.#sql = sql;
    sql.exec(`
      CREATE TABLE IF NOT EXISTS stored_responses (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at INTEGER NOT NULL, record TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS stored_responses_by_age ON stored_responses (created_at);
    `);
  }

  save(owner: string, record: StoredResponse): void {
    const createdAt = record.created_at;
    this.#sql.exec(
      "INSERT OR REPLACE INTO stored_responses (id, owner, created_at, record) VALUES (?, ?, ?, ?)",
      record.id,
      owner,
      createdAt,
      JSON.stringify(record),
    );
    this.#sql.exec("DELETE FROM stored_responses WHERE created_at < ?", createdAt - RETENTION_SECONDS);
  }

  get(owner: string, id: string): StoredResponse | null {
    const row = this.#sql.exec<{ record: string }>("SELECT record FROM stored_responses WHERE id = ? AND owner = ?", id, owner).toArray()[0];
    return row ? (JSON.parse(row.record) as StoredResponse) : null;
  }

  delete(owner: string, id: string): boolean {
    return this.#sql.exec("DELETE FROM stored_responses WHERE id = ? AND owner = ?", id, owner).rowsWritten > 0;
  }
}
