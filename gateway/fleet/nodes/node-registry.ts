import type { NodeStatus } from "../../../shared/protocol.ts";
import type { NodeSummary } from "../../../shared/schemas/admin.ts";
import { FleetNode, type HelloFrame, type NodeInfo } from "./fleet-node.ts";

/** What a socket carries through hibernation (≤ 2 KB): who it is, never the model catalog. */
export interface Attachment {
  conn: string;
  acceptedAt: number;
  /** Set once the node has said hello; its details are in SQLite under this name. */
  name?: string;
  /** The node token it connected with (absent for the deployment's own LMGATE_NODE_TOKEN), so revoking it can close the socket. */
  token?: string;
}

type NodeRow = {
  name: string;
  conn_id: string;
  info_json: string;
  status_json: string;
  connected_at: number;
  disconnected_at: number | null;
  /** The node's goodbye: it went away on purpose (`sleep`, `shutdown`); null when it was lost. */
  left_as: string | null;
};

/** Offline nodes stay listed (for the admin) this long, the most recently seen this many at most. */
const FORGET_OFFLINE_MS = 7 * 24 * 3600 * 1000;
const MAX_OFFLINE_NODES = 100;

/**
 * The nodes of the fleet. Live sockets are in memory; each node's hello and latest status are
 * also in SQLite, so the registry is rebuilt from `getWebSockets()` + attachments + storage
 * whenever the object wakes from hibernation (the constructor runs again then).
 */
export class NodeRegistry {
  readonly #ctx: DurableObjectState;
  readonly #nodes = new Map<string, FleetNode>();
  readonly #connOf = new WeakMap<WebSocket, string>();
  readonly #heartbeatTimeoutMs: number;

  constructor(ctx: DurableObjectState, heartbeatTimeoutMs: number) {
    this.#ctx = ctx;
    this.#heartbeatTimeoutMs = heartbeatTimeoutMs;
    ctx.storage.sql.exec(`CREATE TABLE IF NOT EXISTS nodes (
      name TEXT PRIMARY KEY,
      conn_id TEXT NOT NULL,
      info_json TEXT NOT NULL,
      status_json TEXT NOT NULL,
      connected_at INTEGER NOT NULL,
      disconnected_at INTEGER
    )`);
    const columns = ctx.storage.sql.exec<{ name: string }>("PRAGMA table_info(nodes)").toArray();
    if (!columns.some((column) => column.name === "left_as")) ctx.storage.sql.exec("ALTER TABLE nodes ADD COLUMN left_as TEXT");
    this.#rebuild();
  }

  #rebuild(): void {
    const live = new Set<string>();
    for (const ws of this.#ctx.getWebSockets()) {
      const attachment = attachmentOf(ws);
      if (attachment === null || ws.readyState !== WebSocket.OPEN) continue;
      this.#connOf.set(ws, attachment.conn);
      if (attachment.name === undefined) continue;
      const row = this.#ctx.storage.sql
        .exec<NodeRow>("SELECT * FROM nodes WHERE name = ? AND conn_id = ?", attachment.name, attachment.conn)
        .toArray()[0];
      if (row === undefined) {
        // Replaced or lost while asleep: the agent reconnects and says hello again.
        closeQuietly(ws, 1011, "gateway lost this node's state; reconnect");
        continue;
      }
      live.add(row.conn_id);
      this.#nodes.set(row.conn_id, nodeFromRow(row, ws));
    }
    const stale = this.#ctx.storage.sql
      .exec<{ conn_id: string }>("SELECT conn_id FROM nodes WHERE disconnected_at IS NULL")
      .toArray()
      .filter((row) => !live.has(row.conn_id));
    for (const row of stale) this.#markOffline(row.conn_id, Date.now());
  }

  /** A socket that just connected, not yet introduced. */
  accept(ws: WebSocket, conn: string, now: number, token?: string): void {
    ws.serializeAttachment({ conn, acceptedAt: now, ...(token === undefined ? {} : { token }) } satisfies Attachment);
    this.#connOf.set(ws, conn);
  }

  connOf(ws: WebSocket): string | undefined {
    const cached = this.#connOf.get(ws);
    if (cached !== undefined) return cached;
    const conn = attachmentOf(ws)?.conn;
    if (conn !== undefined) this.#connOf.set(ws, conn);
    return conn;
  }

  get(conn: string): FleetNode | undefined {
    return this.#nodes.get(conn);
  }

  byName(name: string): FleetNode | undefined {
    for (const node of this.#nodes.values()) if (node.name === name) return node;
    return undefined;
  }

  online(): FleetNode[] {
    return [...this.#nodes.values()];
  }

  /** Online nodes whose heartbeats are on time: the ones requests can go to. */
  alive(now: number): FleetNode[] {
    return this.online().filter((node) => this.isAlive(node, now));
  }

  /** Names of offline nodes whose last known catalog holds `model` (SQLite reads the stored JSON; nothing is parsed here). */
  offlineHolders(model: string): string[] {
    return this.#ctx.storage.sql
      .exec<Pick<NodeRow, "name">>(
        `SELECT name FROM nodes WHERE disconnected_at IS NOT NULL
           AND EXISTS (SELECT 1 FROM json_each(status_json, '$.models') WHERE json_extract(value, '$.id') = ?)
         ORDER BY name`,
        model,
      )
      .toArray()
      .map((row) => row.name);
  }

  /** Whether a node of this name has connected before (it is online, or still listed offline). */
  knows(name: string): boolean {
    return this.#ctx.storage.sql.exec("SELECT 1 FROM nodes WHERE name = ?", name).toArray().length > 0;
  }

  /** Registers a node that said hello; the caller retires any older connection of the same name first. */
  register(ws: WebSocket, conn: string, hello: HelloFrame, now: number): FleetNode {
    const node = new FleetNode({ id: conn, name: hello.node.name, connectedAt: now, ws, info: hello.node, status: hello.status });
    ws.serializeAttachment({ ...attachmentOf(ws), conn, acceptedAt: now, name: node.name } satisfies Attachment);
    this.#ctx.storage.sql.exec(
      `INSERT INTO nodes (name, conn_id, info_json, status_json, connected_at, disconnected_at) VALUES (?, ?, ?, ?, ?, NULL)
       ON CONFLICT(name) DO UPDATE SET conn_id = excluded.conn_id, info_json = excluded.info_json,
         status_json = excluded.status_json, connected_at = excluded.connected_at, disconnected_at = NULL, left_as = NULL`,
      node.name,
      conn,
      JSON.stringify(hello.node),
      JSON.stringify(hello.status),
      now,
    );
    this.#ctx.storage.sql.exec("DELETE FROM nodes WHERE disconnected_at IS NOT NULL AND disconnected_at < ?", now - FORGET_OFFLINE_MS);
    this.#nodes.set(conn, node);
    return node;
  }

  /**
   * Busy counts change with every request and mean nothing after a wake (nothing runs while the
   * fleet sleeps), so only a change of the model catalog is written to storage: a storage write
   * would hold back the fleet's next outgoing frames until it is durable (the output gate).
   */
  updateStatus(node: FleetNode, status: NodeStatus): void {
    const catalogChanged = JSON.stringify(status.models) !== JSON.stringify(node.status.models);
    node.status = status;
    if (catalogChanged) {
      this.#ctx.storage.sql.exec("UPDATE nodes SET status_json = ? WHERE conn_id = ?", JSON.stringify({ ...status, busy: {} }), node.id);
    }
  }

  /** The node said why it is going (its socket closes next): remembered while it is offline. */
  goodbye(node: FleetNode, reason: "shutdown" | "sleep"): void {
    this.#ctx.storage.sql.exec("UPDATE nodes SET left_as = ? WHERE conn_id = ?", reason, node.id);
  }

  /** An offline node's last hello, as stored; undefined for a node that is online or unknown. */
  offlineInfo(name: string): NodeInfo | undefined {
    const row = this.#ctx.storage.sql
      .exec<Pick<NodeRow, "info_json">>("SELECT info_json FROM nodes WHERE name = ? AND disconnected_at IS NOT NULL", name)
      .toArray()[0];
    return row === undefined ? undefined : (JSON.parse(row.info_json) as NodeInfo);
  }

  /** Forgets a connection; returns its node if it had said hello. */
  remove(conn: string, now: number): FleetNode | undefined {
    const node = this.#nodes.get(conn);
    this.#nodes.delete(conn);
    this.#markOffline(conn, now);
    return node;
  }

  #markOffline(conn: string, now: number): void {
    this.#ctx.storage.sql.exec("UPDATE nodes SET disconnected_at = ? WHERE conn_id = ? AND disconnected_at IS NULL", now, conn);
    // A token that may use any name (LMGATE_NODE_TOKEN) could otherwise leave a row per name it makes up.
    this.#ctx.storage.sql.exec(
      `DELETE FROM nodes WHERE disconnected_at IS NOT NULL AND name NOT IN
         (SELECT name FROM nodes WHERE disconnected_at IS NOT NULL ORDER BY disconnected_at DESC, name DESC LIMIT ?)`,
      MAX_OFFLINE_NODES,
    );
  }

  /** Last sign of life: the last auto-answered ping, else the moment it connected. */
  lastHeartbeat(node: FleetNode): number {
    return this.#ctx.getWebSocketAutoResponseTimestamp(node.ws)?.getTime() ?? node.connectedAt;
  }

  /** A node whose pings stopped leaves routing at once, even before the sweep closes it. */
  isAlive(node: FleetNode, now: number): boolean {
    return now - this.lastHeartbeat(node) <= this.#heartbeatTimeoutMs;
  }

  summaries(now: number): NodeSummary[] {
    const online: NodeSummary[] = this.online().map((node) => ({
      ...summaryOf(node.info, node.name, node.id),
      online: this.isAlive(node, now),
      connected_at: new Date(node.connectedAt).toISOString(),
      last_heartbeat_at: new Date(this.lastHeartbeat(node)).toISOString(),
      in_flight: node.totalInFlight(),
      models: node.status.models.map((model) => ({ ...model, nodes: [node.modelNodeInfo(model)] })),
      ...(node.status.downloads ? { downloads: node.status.downloads } : {}),
      ...placementOf(node.status),
      ...wakeOf(node.info, null),
    }));
    const offline: NodeSummary[] = this.#ctx.storage.sql
      .exec<NodeRow>("SELECT * FROM nodes WHERE disconnected_at IS NOT NULL ORDER BY name")
      .toArray()
      .map((row) => {
        const info = JSON.parse(row.info_json) as NodeInfo;
        const status = JSON.parse(row.status_json) as NodeStatus;
        return {
          ...summaryOf(info, row.name, row.conn_id),
          online: false,
          connected_at: new Date(row.connected_at).toISOString(),
          last_heartbeat_at: row.disconnected_at === null ? null : new Date(row.disconnected_at).toISOString(),
          in_flight: 0,
          models: status.models.map((model) => ({ ...model, state: "not-loaded" as const, loaded_context_length: undefined })),
          ...wakeOf(info, row.left_as),
        };
      });
    return [...online.sort((a, b) => a.name.localeCompare(b.name)), ...offline];
  }
}

function placementOf(status: NodeStatus): Pick<NodeSummary, "memory" | "footprints"> {
  return { ...(status.memory ? { memory: status.memory } : {}), ...(status.footprints ? { footprints: status.footprints } : {}) };
}

function wakeOf(info: NodeInfo, leftAs: string | null): Pick<NodeSummary, "wake"> {
  if (info.wake === undefined) return {};
  return { wake: { wakeable: info.wake.wakeable, wakes_peers: info.wake.wakes_peers, asleep: leftAs === "sleep" } };
}

function summaryOf(info: NodeInfo, name: string, id: string) {
  return {
    id,
    name,
    runtime: { name: info.runtime.name, version: info.runtime.version },
    hardware: info.hardware,
    slots_per_model: info.slots_per_model,
  };
}

function nodeFromRow(row: NodeRow, ws: WebSocket): FleetNode {
  return new FleetNode({
    id: row.conn_id,
    name: row.name,
    connectedAt: row.connected_at,
    ws,
    // Written from frames that were validated when they arrived.
    info: JSON.parse(row.info_json) as NodeInfo,
    status: JSON.parse(row.status_json) as NodeStatus,
  });
}

export function attachmentOf(ws: WebSocket): Attachment | null {
  return ws.deserializeAttachment() as Attachment | null;
}

/** `close` throws on a socket that is already closing; there is nothing left to do then. */
export function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason.slice(0, 120));
  } catch {
    // already closed
  }
}
