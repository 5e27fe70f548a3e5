import type { CreateKeyRequest, CreateNodeTokenRequest, KeyRecord, NodeTokenRecord, UpdateKeyRequest } from "../../../shared/gateway-admin/admin-schemas.ts";
import { newCredential } from "./credentials.ts";

/**
 * API keys and node tokens in the Fleet's SQLite storage. Reads and writes are synchronous and
 * local to the Fleet, so a revocation or a scope change holds from the very next request.
 */
export class AccessStore {
  readonly #sql: SqlStorage;

  constructor(sql: SqlStorage) {
    this.#sql = sql;
    sql.exec(`
      CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, prefix TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
        models TEXT, rpm INTEGER, tokens_per_day INTEGER, expires_at TEXT,
        created_at TEXT NOT NULL, last_used_at TEXT, revoked_at TEXT, can TEXT NOT NULL DEFAULT '[]'
      );
      CREATE TABLE IF NOT EXISTS node_tokens (
        id TEXT PRIMARY KEY, node TEXT NOT NULL, prefix TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL, last_used_at TEXT, revoked_at TEXT
      );
    `);
    // Keys created before model management existed may do none of it.
    const columns = sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('api_keys')").toArray();
    if (!columns.some((column) => column.name === "can")) sql.exec("ALTER TABLE api_keys ADD COLUMN can TEXT NOT NULL DEFAULT '[]'");
    // Node tokens made before model scopes may serve every model (NULL).
    const tokenColumns = sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('node_tokens')").toArray();
    if (!tokenColumns.some((column) => column.name === "models")) sql.exec("ALTER TABLE node_tokens ADD COLUMN models TEXT");
  }

  async createKey(request: CreateKeyRequest, now: Date): Promise<{ secret: string; record: KeyRecord }> {
    const credential = await newCredential("key");
    const id = newId("key");
    this.#sql.exec(
      `INSERT INTO api_keys (id, name, prefix, hash, models, rpm, tokens_per_day, expires_at, created_at, can)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      id,
      request.name,
      credential.prefix,
      credential.hash,
      request.models ? JSON.stringify(request.models) : null,
      request.rpm ?? null,
      request.tokens_per_day ?? null,
      request.expires_at ?? null,
      now.toISOString(),
      JSON.stringify(request.can ?? []),
    );
    return { secret: credential.secret, record: this.key(id) as KeyRecord };
  }

  keys(): KeyRecord[] {
    return this.#sql.exec<KeyRow>("SELECT * FROM api_keys ORDER BY created_at, id").toArray().map(keyRecord);
  }

  key(id: string): KeyRecord | undefined {
    const row = this.#sql.exec<KeyRow>("SELECT * FROM api_keys WHERE id = ?", id).toArray()[0];
    return row && keyRecord(row);
  }

  keyByHash(hash: string): KeyRecord | undefined {
    const row = this.#sql.exec<KeyRow>("SELECT * FROM api_keys WHERE hash = ?", hash).toArray()[0];
    return row && keyRecord(row);
  }

  updateKey(id: string, update: UpdateKeyRequest): KeyRecord | undefined {
    const columns: Array<[string, SqlStorageValue]> = [];
    if (update.name !== undefined) columns.push(["name", update.name]);
    if (update.models !== undefined) columns.push(["models", update.models === null ? null : JSON.stringify(update.models)]);
    if (update.rpm !== undefined) columns.push(["rpm", update.rpm]);
    if (update.tokens_per_day !== undefined) columns.push(["tokens_per_day", update.tokens_per_day]);
    if (update.expires_at !== undefined) columns.push(["expires_at", update.expires_at]);
    if (update.can !== undefined) columns.push(["can", JSON.stringify(update.can)]);
    if (columns.length > 0) {
      this.#sql.exec(
        `UPDATE api_keys SET ${columns.map(([column]) => `${column} = ?`).join(", ")} WHERE id = ?`,
        ...columns.map(([, value]) => value),
        id,
      );
    }
    return this.key(id);
  }

  revokeKey(id: string, now: Date): KeyRecord | undefined {
    this.#sql.exec("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", now.toISOString(), id);
    return this.key(id);
  }

  /** Batched by the usage ledger: a write per request would sit on the hot path. */
  touchKeys(lastUsed: Map<string, string>): void {
    for (const [id, at] of lastUsed) this.#sql.exec("UPDATE api_keys SET last_used_at = ? WHERE id = ?", at, id);
  }

  async createNodeToken(request: CreateNodeTokenRequest, now: Date): Promise<{ secret: string; record: NodeTokenRecord }> {
    const credential = await newCredential("node");
    const id = newId("node");
    this.#sql.exec(
      "INSERT INTO node_tokens (id, node, models, prefix, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
      id,
      request.node,
      request.models ? JSON.stringify(request.models) : null,
      credential.prefix,
      credential.hash,
      now.toISOString(),
    );
    return { secret: credential.secret, record: this.nodeToken(id) as NodeTokenRecord };
  }

  nodeTokens(): NodeTokenRecord[] {
    return this.#sql.exec<NodeTokenRow>(`SELECT ${NODE_TOKEN_COLUMNS} FROM node_tokens ORDER BY created_at, id`).toArray().map(nodeTokenRecord);
  }

  nodeToken(id: string): NodeTokenRecord | undefined {
    const row = this.#sql.exec<NodeTokenRow>(`SELECT ${NODE_TOKEN_COLUMNS} FROM node_tokens WHERE id = ?`, id).toArray()[0];
    return row && nodeTokenRecord(row);
  }

  /** Whether a node token that is not revoked was made for this node name: then only it may use the name. */
  nameIsOwned(node: string): boolean {
    return this.#sql.exec("SELECT 1 FROM node_tokens WHERE node = ? AND revoked_at IS NULL LIMIT 1", node).toArray().length > 0;
  }

  /** A node connecting: its token, stamped as used, or undefined when unknown. */
  useNodeToken(hash: string, now: Date): NodeTokenRecord | undefined {
    const row = this.#sql.exec<{ id: string }>("SELECT id FROM node_tokens WHERE hash = ?", hash).toArray()[0];
    if (!row) return undefined;
    this.#sql.exec("UPDATE node_tokens SET last_used_at = ? WHERE id = ?", now.toISOString(), row.id);
    return this.nodeToken(row.id);
  }

  revokeNodeToken(id: string, now: Date): NodeTokenRecord | undefined {
    this.#sql.exec("UPDATE node_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", now.toISOString(), id);
    return this.nodeToken(id);
  }
}

const NODE_TOKEN_COLUMNS = "id, node, models, prefix, created_at, last_used_at, revoked_at";
type NodeTokenRow = Omit<NodeTokenRecord, "models"> & { models: string | null };

function nodeTokenRecord(row: NodeTokenRow): NodeTokenRecord {
  return { ...row, models: row.models === null ? null : (JSON.parse(row.models) as string[]) };
}

type KeyRow = Omit<KeyRecord, "models" | "can"> & { models: string | null; can: string; hash: string };

function keyRecord(row: KeyRow): KeyRecord {
  const { hash: _hash, models, can, ...rest } = row;
  return { ...rest, models: models === null ? null : (JSON.parse(models) as string[]), can: JSON.parse(can) as KeyRecord["can"] };
}

function newId(kind: "key" | "node"): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return `${kind}_${Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}
