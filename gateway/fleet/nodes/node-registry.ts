import type { GoodbyeReason, NodeStatus } from "../../../shared/protocol/frames.ts";
import type { NodeApi } from "../../node/node-contract.ts";
import type { StatusDelta } from "../../node/status-deltas.ts";
import type { NodeSummary } from "../../../shared/gateway-admin/admin-schemas.ts";
import { FleetNode, type HelloFrame, type NodeInfo } from "./fleet-node.ts";

type NodeRow = {
  name: string;
  conn_id: string;
  info_json: string;
  status_json: string;
  connected_at: number;
  disconnected_at: number | null;
  /** The node's goodbye: it went away on purpose (`sleep`, `shutdown`); null when it was lost. */
  left_as: GoodbyeReason | null;
};

/** Offline nodes stay listed (for the admin) this long, the most recently seen this many at most. */
const FORGET_OFFLINE_MS = 7 * 24 * 3600 * 1000;
const MAX_OFFLINE_NODES = 100;

/**
 * The nodes of the fleet. Each node's socket ends in its own object (`NodeObject`), which tells
 * the Fleet when the node joins, changes and leaves; the Fleet keeps what placement needs. Each
 * node's hello and latest catalog are also in SQLite, so the registry is rebuilt from storage
 * whenever the Fleet wakes (the constructor runs again then): the rows still marked connected.
 */
export class NodeRegistry {
  readonly #sql: SqlStorage;
  readonly #linkTo: (name: string) => NodeApi;
  readonly #nodes = new Map<string, FleetNode>();

  /** `linkTo` reaches a node's object by its name. */
  constructor(sql: SqlStorage, linkTo: (name: string) => NodeApi) {
    this.#sql = sql;
    this.#linkTo = linkTo;
    sql.exec(`CREATE TABLE IF NOT EXISTS nodes (
      name TEXT PRIMARY KEY,
      conn_id TEXT NOT NULL,
      info_json TEXT NOT NULL,
      status_json TEXT NOT NULL,
      connected_at INTEGER NOT NULL,
      disconnected_at INTEGER
    )`);
    if (!sql.exec<{ name: string }>("PRAGMA table_info(nodes)").toArray().some((column) => column.name === "left_as")) {
      sql.exec("ALTER TABLE nodes ADD COLUMN left_as TEXT");
    }
    for (const row of sql.exec<NodeRow>("SELECT * FROM nodes WHERE disconnected_at IS NULL").toArray()) {
      this.#nodes.set(row.conn_id, nodeFromRow(row, this.#linkTo(row.name)));
    }
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

  /**
   * The nodes requests can go to. A node's object closes a socket whose heartbeats stopped (its
   * sweep, once per heartbeat timeout) and the node leaves then.
   */
  alive(): FleetNode[] {
    return this.online();
  }

  /** Names of offline nodes whose last known catalog holds `model` (SQLite reads the stored JSON; nothing is parsed here). */
  offlineHolders(model: string): string[] {
    return this.#sql
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
    return this.#sql.exec("SELECT 1 FROM nodes WHERE name = ?", name).toArray().length > 0;
  }

  /** Registers a node that said hello; the caller retires any older connection of the same name first. */
  register(conn: string, hello: HelloFrame, now: number, tokenId: string | undefined): FleetNode {
    const node = new FleetNode({ id: conn, name: hello.node.name, connectedAt: now, link: this.#linkTo(hello.node.name), tokenId, info: hello.node, status: hello.status });
    this.#sql.exec(
      `INSERT INTO nodes (name, conn_id, info_json, status_json, connected_at, disconnected_at) VALUES (?, ?, ?, ?, ?, NULL)
       ON CONFLICT(name) DO UPDATE SET conn_id = excluded.conn_id, info_json = excluded.info_json,
         status_json = excluded.status_json, connected_at = excluded.connected_at, disconnected_at = NULL, left_as = NULL`,
      node.name,
      conn,
      JSON.stringify(hello.node),
      JSON.stringify(hello.status),
      now,
    );
    this.#sql.exec("DELETE FROM nodes WHERE disconnected_at IS NOT NULL AND disconnected_at < ?", now - FORGET_OFFLINE_MS);
    this.#nodes.set(conn, node);
    return node;
  }

  /**
   * Busy counts change with every request and mean nothing after a wake (nothing runs while the
   * fleet sleeps), so only a change of the model catalog is written to storage: a storage write
   * would hold back the fleet's next outgoing frames until it is durable (the output gate).
   */
  updateStatus(node: FleetNode, delta: StatusDelta, now: number): void {
    node.apply(delta, now);
    // The node object sends the catalog only when it changed.
    if (delta.models !== undefined) {
      this.#sql.exec("UPDATE nodes SET status_json = ? WHERE conn_id = ?", JSON.stringify({ ...node.status, busy: {} }), node.id);
    }
  }

  /** The node said why it is going (its socket closes next): remembered while it is offline. */
  goodbye(node: FleetNode, reason: GoodbyeReason): void {
    this.#sql.exec("UPDATE nodes SET left_as = ? WHERE conn_id = ?", reason, node.id);
  }

  /** An offline node's last hello, as stored; undefined for a node that is online or unknown. */
  offlineInfo(name: string): NodeInfo | undefined {
    const row = this.#sql
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
    this.#sql.exec("UPDATE nodes SET disconnected_at = ? WHERE conn_id = ? AND disconnected_at IS NULL", now, conn);
    // A token that may use any name (LMGATE_NODE_TOKEN) could otherwise leave a row per name it makes up.
    this.#sql.exec(
      `DELETE FROM nodes WHERE disconnected_at IS NOT NULL AND name NOT IN
         (SELECT name FROM nodes WHERE disconnected_at IS NOT NULL ORDER BY disconnected_at DESC, name DESC LIMIT ?)`,
      MAX_OFFLINE_NODES,
    );
  }

  summaries(): NodeSummary[] {
    const online: NodeSummary[] = this.online().map((node) => ({
      ...summaryOf(node.info, node.name, node.id),
      online: true,
      connected_at: new Date(node.connectedAt).toISOString(),
      last_heartbeat_at: new Date(node.lastSeenAt).toISOString(),
      in_flight: node.totalInFlight(),
      models: node.status.models.map((model) => ({ ...model, nodes: [node.modelNodeInfo(model)] })),
      ...(node.status.downloads ? { downloads: node.status.downloads } : {}),
      ...placementOf(node.status),
      ...wakeOf(node.info),
    }));
    const offline: NodeSummary[] = this.#sql
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
          ...wakeOf(info),
          left: row.left_as,
        };
      });
    return [...online.sort((a, b) => a.name.localeCompare(b.name)), ...offline];
  }
}

function placementOf(status: NodeStatus): Pick<NodeSummary, "memory" | "footprints"> {
  return { ...(status.memory ? { memory: status.memory } : {}), ...(status.footprints ? { footprints: status.footprints } : {}) };
}

function wakeOf(info: NodeInfo): Pick<NodeSummary, "wake"> {
  if (info.wake === undefined) return {};
  return { wake: { wakeable: info.wake.wakeable, wakes_peers: info.wake.wakes_peers } };
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

function nodeFromRow(row: NodeRow, link: NodeApi): FleetNode {
  return new FleetNode({
    id: row.conn_id,
    name: row.name,
    connectedAt: row.connected_at,
    link,
    // Written from frames that were validated when they arrived.
    info: JSON.parse(row.info_json) as NodeInfo,
    status: JSON.parse(row.status_json) as NodeStatus,
  });
}
