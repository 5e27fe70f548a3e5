import type { StoredResponse } from "../../../shared/openai-responses/store.ts";
import type { StoredResponsesUsage } from "../../../shared/gateway-admin/admin-schemas.ts";
import { MAX_STORED_RESPONSES_PER_KEY, storageRefusal, type StoredUsage } from "./response-quota.ts";

/** OpenAI keeps stored responses 30 days; so does the gateway, then they go. */
const RETENTION_SECONDS = 30 * 24 * 3600;

/**
 * Stored `/v1/responses` in the Fleet's SQLite, each under the id of the key that made it: every
 * read and delete names the owner, so one key never sees another's conversation. Kept centrally,
 * a conversation continues on whichever node serves its next turn.
 */
export class ResponseTable {
  readonly #sql: SqlStorage;
  /** Each key's share of the storage, in bytes (response-quota.ts). */
  readonly #maxBytesPerKey: number;

  constructor(sql: SqlStorage, maxBytesPerKey: number) {
    this.#sql = sql;
    this.#maxBytesPerKey = maxBytesPerKey;
    sql.exec(`
      CREATE TABLE IF NOT EXISTS stored_responses (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at INTEGER NOT NULL, record TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS stored_responses_by_age ON stored_responses (created_at);
      CREATE INDEX IF NOT EXISTS stored_responses_by_owner ON stored_responses (owner);
    `);
    // Each row's size, so a key's share is summed without reading its conversations; rows stored before it are measured once.
    const columns = sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('stored_responses')").toArray();
    if (!columns.some((column) => column.name === "bytes")) {
      sql.exec("ALTER TABLE stored_responses ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0");
      sql.exec("UPDATE stored_responses SET bytes = length(CAST(record AS BLOB))");
    }
  }

  /** Refuses (409), before a generation runs, a conversation of `bytes` that would not fit the owner's share. */
  assertRoom(owner: string, bytes: number, nowSeconds: number): void {
    this.#expire(nowSeconds);
    const refusal = storageRefusal(this.usage(owner), bytes, this.#maxBytesPerKey);
    if (refusal !== null) throw refusal;
  }

  save(owner: string, record: StoredResponse): void {
    const createdAt = record.created_at;
    const json = JSON.stringify(record);
    const bytes = new TextEncoder().encode(json).length;
    this.#expire(createdAt);
    const refusal = storageRefusal(this.usage(owner), bytes, this.#maxBytesPerKey);
    if (refusal !== null) throw refusal;
    this.#sql.exec(
      "INSERT OR REPLACE INTO stored_responses (id, owner, created_at, record, bytes) VALUES (?, ?, ?, ?, ?)",
      record.id,
      owner,
      createdAt,
      json,
      bytes,
    );
  }

  /** Deletes every response the owner stored (the admin clearing a key's share). */
  clear(owner: string): void {
    this.#sql.exec("DELETE FROM stored_responses WHERE owner = ?", owner);
  }

  /** The owner's use of its share, as the admin API shows it. */
  usageOf(owner: string): StoredResponsesUsage {
    return { key_id: owner, ...this.usage(owner), max_count: MAX_STORED_RESPONSES_PER_KEY, max_bytes: this.#maxBytesPerKey };
  }

  /** What the owner keeps stored: responses and bytes (of their JSON). */
  usage(owner: string): StoredUsage {
    return this.#sql
      .exec<{ count: number; bytes: number }>("SELECT count(*) AS count, coalesce(sum(bytes), 0) AS bytes FROM stored_responses WHERE owner = ?", owner)
      .one();
  }

  #expire(nowSeconds: number): void {
    this.#sql.exec("DELETE FROM stored_responses WHERE created_at < ?", nowSeconds - RETENTION_SECONDS);
  }

  get(owner: string, id: string): StoredResponse | null {
    const row = this.#sql.exec<{ record: string }>("SELECT record FROM stored_responses WHERE id = ? AND owner = ?", id, owner).toArray()[0];
    return row ? (JSON.parse(row.record) as StoredResponse) : null;
  }

  delete(owner: string, id: string): boolean {
    return this.#sql.exec("DELETE FROM stored_responses WHERE id = ? AND owner = ?", id, owner).rowsWritten > 0;
  }
}
