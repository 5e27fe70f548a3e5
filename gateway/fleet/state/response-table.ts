import { MAX_STORED_TURNS, rebuildConversation, type StoredResponse, type StoredTurn } from "../../../shared/openai-responses/store.ts";
import type { StoredResponsesUsage } from "../../../shared/gateway-admin/admin-schemas.ts";
import { MAX_STORED_RESPONSES_PER_KEY, storageRefusal, type StoredUsage } from "./response-quota.ts";

/** OpenAI keeps stored responses 30 days; so does the gateway, counted from the last turn that continued them, then they go. */
const RETENTION_SECONDS = 30 * 24 * 3600;

/**
 * Stored `/v1/responses` in the Fleet's SQLite, each under the id of the key that made it: every
 * read and delete names the owner, so one key never sees another's conversation. Kept centrally,
 * a conversation continues on whichever node serves its next turn. Each row holds one turn and
 * the id of the response it continued (`previous_id`); a read rebuilds the conversation along
 * that chain, so a long conversation is stored once, not again at each turn.
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
    // The chain: rows stored before it each hold their whole conversation, so they begin their own (no previous_id).
    if (!columns.some((column) => column.name === "previous_id")) {
      sql.exec("ALTER TABLE stored_responses ADD COLUMN previous_id TEXT");
      sql.exec("ALTER TABLE stored_responses ADD COLUMN used_at INTEGER NOT NULL DEFAULT 0");
      sql.exec("UPDATE stored_responses SET used_at = created_at");
    }
    sql.exec("CREATE INDEX IF NOT EXISTS stored_responses_by_use ON stored_responses (used_at)");
  }

  /** Refuses (409), before a generation runs, a conversation of `bytes` that would not fit the owner's share. */
  assertRoom(owner: string, bytes: number, nowSeconds: number): void {
    this.#expire(nowSeconds);
    const refusal = storageRefusal(this.usage(owner), bytes, this.#maxBytesPerKey);
    if (refusal !== null) throw refusal;
  }

  /** Stores one turn; the responses it continues are kept as long as it is (their retention starts again). */
  save(owner: string, turn: StoredTurn): void {
    const createdAt = turn.created_at;
    const json = JSON.stringify(turn);
    const bytes = new TextEncoder().encode(json).length;
    this.#expire(createdAt);
    const refusal = storageRefusal(this.usage(owner), bytes, this.#maxBytesPerKey);
    if (refusal !== null) throw refusal;
    this.#sql.exec(
      "INSERT OR REPLACE INTO stored_responses (id, owner, created_at, record, bytes, previous_id, used_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
      turn.id,
      owner,
      createdAt,
      json,
      bytes,
      turn.previous_response_id ?? null,
      createdAt,
    );
    this.#sql.exec(
      `WITH RECURSIVE chain (id, depth) AS (
         SELECT previous_id, 1 FROM stored_responses WHERE id = ? AND owner = ? AND previous_id IS NOT NULL
         UNION ALL
         SELECT r.previous_id, chain.depth + 1 FROM stored_responses r JOIN chain ON r.id = chain.id
         WHERE r.owner = ? AND r.previous_id IS NOT NULL AND chain.depth < ?
       )
       UPDATE stored_responses SET used_at = ? WHERE owner = ? AND id IN (SELECT id FROM chain)`,
      turn.id,
      owner,
      owner,
      MAX_STORED_TURNS,
      createdAt,
      owner,
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
    this.#sql.exec("DELETE FROM stored_responses WHERE used_at < ?", nowSeconds - RETENTION_SECONDS);
  }

  /** The response with its conversation rebuilt from the owner's own turns (`missing` names a link that was deleted). */
  get(owner: string, id: string): StoredResponse | null {
    return rebuildConversation(id, (turn) => this.#turn(owner, turn)) ?? null;
  }

  #turn(owner: string, id: string): StoredTurn | undefined {
    const row = this.#sql.exec<{ record: string }>("SELECT record FROM stored_responses WHERE id = ? AND owner = ?", id, owner).toArray()[0];
    return row === undefined ? undefined : (JSON.parse(row.record) as StoredTurn);
  }

  /** Deletes this response alone: a later one that continued it keeps its own turn, and says its chain is broken if continued. */
  delete(owner: string, id: string): boolean {
    return this.#sql.exec("DELETE FROM stored_responses WHERE id = ? AND owner = ?", id, owner).rowsWritten > 0;
  }
}
