import type {
  CreatedKey,
  CreatedNodeToken,
  CreateKeyRequest,
  CreateNodeTokenRequest,
  FleetStats,
  KeyRecord,
  NodeSummary,
  NodeTokenRecord,
  StoredResponsesUsage,
  UpdateKeyRequest,
  UsageQuery,
  UsageRow,
  WakeAttempt,
} from "../../../shared/gateway-admin/admin-schemas.ts";
import type { RequestPage, RequestQuery } from "../../../shared/gateway-admin/request-log-schemas.ts";
import type { RequestLog } from "../state/request-log.ts";
import { toApiError } from "../../../shared/protocol/api-error.ts";
import { failed, type Outcome } from "../fleet-contract.ts";
import type { NodeWaker } from "../nodes/node-waker.ts";
import type { AccessStore } from "../access/access-store.ts";
import { ROOT_CALLER_ID, ROOT_CALLER_NAME } from "../access/caller.ts";
import type { UsageLedger } from "../access/usage-ledger.ts";
import type { FleetMetrics } from "../metrics/fleet-metrics.ts";
import type { Dispatcher } from "../routing/dispatcher.ts";
import type { NodeRegistry } from "../nodes/node-registry.ts";
import type { NodeLinks } from "../nodes/node-links.ts";
import type { SavedState } from "../state/saved-state.ts";
import type { ResponseTable } from "../state/response-table.ts";
import type { TrafficStats } from "../metrics/traffic-stats.ts";

export interface AdminCallsParts {
  registry: NodeRegistry;
  dispatcher: Dispatcher;
  links: NodeLinks;
  access: AccessStore;
  ledger: UsageLedger;
  metrics: FleetMetrics;
  traffic: TrafficStats;
  saved: SavedState;
  responses: ResponseTable;
  log: RequestLog;
  waker: NodeWaker;
}

/** What the admin API and `/metrics` ask the Fleet (the Worker checked the admin or metrics token). */
export class AdminCalls {
  readonly #registry: NodeRegistry;
  readonly #dispatcher: Dispatcher;
  readonly #links: NodeLinks;
  readonly #access: AccessStore;
  readonly #ledger: UsageLedger;
  readonly #metrics: FleetMetrics;
  readonly #traffic: TrafficStats;
  readonly #saved: SavedState;
  readonly #responses: ResponseTable;
  readonly #log: RequestLog;
  readonly #waker: NodeWaker;

  constructor(parts: AdminCallsParts) {
    this.#registry = parts.registry;
    this.#dispatcher = parts.dispatcher;
    this.#links = parts.links;
    this.#access = parts.access;
    this.#ledger = parts.ledger;
    this.#metrics = parts.metrics;
    this.#traffic = parts.traffic;
    this.#saved = parts.saved;
    this.#responses = parts.responses;
    this.#log = parts.log;
    this.#waker = parts.waker;
  }

  /** Prometheus text; the counters carry on across hibernation (see `FleetMetrics`). */
  metrics(): string {
    // Saved now, so what a scrape saw is what the next life of the object starts from.
    this.#saved.flush();
    return this.#metrics.text();
  }

  listNodes(): NodeSummary[] {
    return this.#registry.summaries().map((node) => {
      const last = this.#waker.last(node.name);
      return last === undefined || node.wake === undefined ? node : { ...node, wake: { ...node.wake, last } };
    });
  }

  /** Sends the magic packet for an offline node through a peer on its network; answers once it is sent. */
  async wakeNode(name: string): Promise<Outcome<WakeAttempt>> {
    try {
      return { ok: true, result: await this.#waker.wake(name) };
    } catch (error) {
      return failed(toApiError(error));
    }
  }

  stats(): FleetStats {
    const now = Date.now();
    const nodes = this.#registry.summaries();
    return {
      at: new Date(now).toISOString(),
      nodes_online: nodes.filter((node) => node.online).length,
      nodes_total: nodes.length,
      in_flight: this.#dispatcher.running,
      queue_depth: this.#dispatcher.waiting,
      bucket_seconds: this.#traffic.bucketSeconds,
      series: this.#traffic.series(now),
    };
  }

  async createKey(request: CreateKeyRequest): Promise<CreatedKey> {
    const { secret, record } = await this.#access.createKey(request, new Date());
    return { key: secret, record };
  }

  listKeys(): KeyRecord[] {
    this.#ledger.flush();
    return this.#access.keys();
  }

  updateKey(id: string, update: UpdateKeyRequest): KeyRecord | null {
    return this.#access.updateKey(id, update) ?? null;
  }

  revokeKey(id: string): KeyRecord | null {
    return this.#access.revokeKey(id, new Date()) ?? null;
  }

  async createNodeToken(request: CreateNodeTokenRequest): Promise<CreatedNodeToken> {
    const { secret, record } = await this.#access.createNodeToken(request, new Date());
    return { token: secret, record };
  }

  listNodeTokens(): NodeTokenRecord[] {
    return this.#access.nodeTokens();
  }

  /** Revokes a node token and disconnects, at once, every node that joined with it. */
  async revokeNodeToken(id: string): Promise<NodeTokenRecord | null> {
    const record = this.#access.revokeNodeToken(id, new Date());
    if (record === undefined) return null;
    await this.#links.disconnectToken(id);
    return record;
  }

  /** A key's stored responses against its share; null for an unknown key. */
  storedResponses(keyId: string): StoredResponsesUsage | null {
    return this.#access.key(keyId) === undefined ? null : this.#responses.usageOf(keyId);
  }

  /** Deletes every response a key stored; what it keeps after (nothing), or null for an unknown key. */
  clearStoredResponses(keyId: string): StoredResponsesUsage | null {
    if (this.#access.key(keyId) === undefined) return null;
    this.#responses.clear(keyId);
    return this.#responses.usageOf(keyId);
  }

  usage(query: UsageQuery): UsageRow[] {
    const names = new Map(this.#access.keys().map((key) => [key.id, key.name]));
    names.set(ROOT_CALLER_ID, ROOT_CALLER_NAME);
    return this.#ledger.query(query, names);
  }

  requests(query: RequestQuery): RequestPage {
    return this.#log.query(query);
  }
}
