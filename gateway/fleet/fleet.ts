import { DurableObject } from "cloudflare:workers";
import { ApiError } from "../../shared/errors.ts";
import { CLOSE_CODES, HEARTBEAT_PING, HEARTBEAT_PONG, parseFrame, PROTOCOL_VERSION, toWire, ToGatewayFrame } from "../../shared/protocol.ts";
import type {
  CreatedKey,
  CreatedNodeToken,
  CreateKeyRequest,
  FleetStats,
  KeyRecord,
  NodeSummary,
  NodeTokenRecord,
  UpdateKeyRequest,
  UsageQuery,
  UsageRow,
} from "../../shared/schemas/admin.ts";
import type { StoredResponse } from "../../shared/openai-responses/store.ts";
import type { EmbeddingsResult } from "../../shared/schemas/generation.ts";
import type { LoadResult, ModelObject, UnloadResult } from "../../shared/schemas/models.ts";
import type { ChatRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "../../shared/schemas/requests.ts";
import type { TokenCount } from "../../shared/schemas/token-count.ts";
import type { KeyAction } from "../../shared/schemas/admin.ts";
import type { DeleteRequest, DeleteResult, DownloadJob, DownloadRequest } from "../../shared/schemas/downloads.ts";
import type { V1Model } from "../../shared/schemas/v1-models.ts";
import { AccessControl, type Grant } from "../access/access-control.ts";
import { AccessStore } from "../access/access-store.ts";
import { RateWindow } from "../access/rate-window.ts";
import { NODE_TOKEN_HASH_HEADER, ROOT_CALLER_ID, ROOT_NODE_TOKEN, type Caller } from "../access/caller.ts";
import { ModelScope } from "../access/model-scope.ts";
import { TokenBudget } from "../access/token-budget.ts";
import { UsageLedger } from "../access/usage-ledger.ts";
import { fleetConfig, type FleetConfig } from "../config.ts";
import { ResponseTable } from "../responses/response-table.ts";
import type { GatewayVars } from "../vars.ts";
import { FleetMetrics } from "../metrics/fleet-metrics.ts";
import { Dispatcher, FlowControlViolation, recordedModel, send, type SettledJob } from "./dispatcher.ts";
import {
  encodeLines,
  failed,
  type FleetApi,
  type GenerationHandle,
  type GenerationOperation,
  type Outcome,
  type Serving,
} from "./contract.ts";
import type { FleetNode, HelloFrame } from "./fleet-node.ts";
import { fleetModels } from "./model-catalog.ts";
import { nameRefusal, socketLimit, tokenTag } from "./node-admission.ts";
import { deleteTarget, downloadTarget, findDownload, fleetV1Models, namedNode } from "./model-management.ts";
import { attachmentOf, closeQuietly, NodeRegistry } from "./node-registry.ts";
import { SavedState } from "./saved-state.ts";
import { TrafficStats } from "./traffic-stats.ts";

/**
 * One fleet: the WebSockets of its nodes (hibernation API, so an idle fleet costs nothing), the
 * registry of what each node holds, and every request in flight. The Worker reaches it by RPC,
 * and agents' WebSocket upgrades arrive through `fetch`.
 */
export class Fleet extends DurableObject<GatewayVars> implements Serving<FleetApi> {
  readonly #config: FleetConfig;
  readonly #registry: NodeRegistry;
  readonly #dispatcher: Dispatcher;
  readonly #access: AccessStore;
  readonly #ledger: UsageLedger;
  readonly #control: AccessControl;
  readonly #saved: SavedState;
  readonly #responses: ResponseTable;
  readonly #budget = new TokenBudget();
  readonly #traffic = new TrafficStats();
  readonly #metrics = new FleetMetrics(() => {
    const nodes = this.#registry.alive(Date.now());
    return { nodesConnected: nodes.length, slots: nodes.flatMap(slotsOf), queueDepth: this.#dispatcher.waiting, inFlight: this.#dispatcher.running };
  });

  constructor(ctx: DurableObjectState, env: GatewayVars) {
    super(ctx, env);
    this.#config = fleetConfig(env);
    // Heartbeats are answered by the runtime itself: a ping never wakes a hibernated fleet.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(HEARTBEAT_PING, HEARTBEAT_PONG));
    this.#registry = new NodeRegistry(ctx, this.#config.heartbeatTimeoutMs);
    this.#dispatcher = new Dispatcher(
      this.#registry,
      this.#config,
      (node) => this.#drop(node, 1011, "send failed"),
      (job) => this.#account(job),
      (callerId) => this.#scopeOf(callerId),
    );
    this.#access = new AccessStore(ctx.storage.sql);
    this.#ledger = new UsageLedger(ctx.storage.sql, { flushAfterMs: 1_000, onFlush: (lastUsed) => this.#access.touchKeys(lastUsed) });
    this.#control = new AccessControl(this.#access, this.#ledger, new RateWindow(ctx.storage.sql));
    this.#saved = new SavedState(ctx.storage.sql, { metrics: this.#metrics, traffic: this.#traffic }, { flushAfterMs: 1_000 });
    this.#responses = new ResponseTable(ctx.storage.sql);
  }

  // ---- RPC from the Worker ---------------------------------------------------------------------

  // Every API call authorizes its caller here, in the same hop as routing: a revocation, a
  // scope change or a spent budget holds from the very next request.

  listModels(caller: Caller): Outcome<ModelObject[]> {
    return this.#outcome(() => {
      // A listing is a request like any other: it counts against requests per minute.
      const grant = this.#admit(caller, null);
      const models = fleetModels(this.#registry.alive(Date.now()));
      return grant === null ? models : models.filter((model) => grant.scope.allows(model.id));
    });
  }

  /** NDJSON lines of `FleetLine`: the events of the generation, or the error that ends it. */
  generate(operation: GenerationOperation, caller: Caller): GenerationHandle {
    const id = crypto.randomUUID();
    let grant: Grant | null;
    let capped: GenerationOperation;
    try {
      grant = this.#admit(caller, operation.body.model);
      capped = grant === null ? operation : this.#withinBudget(id, grant, operation);
    } catch (error) {
      const refusal = error instanceof ApiError ? this.#refused(error) : new ApiError(500, "Authorization failed.");
      return { id, events: new Blob([encodeLines([{ error: toWire(refusal) }])]).stream() };
    }
    return this.#dispatcher.generate(capped, grant?.key.id ?? ROOT_CALLER_ID, id);
  }

  /** The client of a generation went away: stop it on its node and free the slot. */
  cancel(id: string): void {
    this.#dispatcher.cancel(id);
  }

  async embeddings(body: EmbeddingsRequest, caller: Caller): Promise<Outcome<EmbeddingsResult>> {
    const callerId = this.#admitCall(caller, body.model);
    if (typeof callerId !== "string") return callerId;
    return this.#dispatcher.call({ op: "embeddings", body }, null, callerId);
  }

  async loadModel(body: LoadRequest, caller: Caller): Promise<Outcome<LoadResult>> {
    const callerId = this.#admitCall(caller, body.model, "load");
    if (typeof callerId !== "string") return callerId;
    const pinned = this.#outcome(() => (body.node === undefined ? null : namedNode(this.#registry.alive(Date.now()), body.node)));
    if (!pinned.ok) return pinned;
    return this.#dispatcher.call({ op: "load", body }, pinned.result, callerId);
  }

  /**
   * The prompt's exact count from a node that holds the model and takes `count_tokens` (one with
   * it loaded first: no load just to count). Null when every holder is an older agent.
   */
  async countTokens(body: ChatRequest, caller: Caller): Promise<Outcome<TokenCount | null>> {
    const callerId = this.#admitCall(caller, body.model);
    if (typeof callerId !== "string") return callerId;
    const counters = this.#registry.alive(Date.now()).filter((node) => node.status.counts_tokens === true && node.model(body.model) !== undefined);
    const node = counters.find((candidate) => candidate.model(body.model)?.state === "loaded") ?? counters[0];
    if (node === undefined) {
      // Nobody holds it (a 404 in the dispatcher's words), or only agents too old to count.
      if (this.#registry.online().some((holder) => holder.model(body.model) !== undefined)) return { ok: true, result: null };
      return this.#dispatcher.call({ op: "count_tokens", body }, null, callerId);
    }
    return this.#dispatcher.call({ op: "count_tokens", body }, node, callerId);
  }

  /** Unloads the model from every node that has it loaded. */
  async unloadModel(body: UnloadRequest, caller: Caller): Promise<Outcome<UnloadResult>> {
    const model = body.instance_id ?? body.model ?? "";
    const callerId = this.#admitCall(caller, model, "load");
    if (typeof callerId !== "string") return callerId;
    const [first, ...others] = this.#registry.online().filter((node) => node.model(model)?.state === "loaded" && (body.node === undefined || node.name === body.node));
    if (first === undefined) {
      // Let a node that holds it answer in its own words ("not loaded"), or say nobody holds it.
      return this.#dispatcher.call({ op: "unload", body }, null, callerId);
    }
    const unloadOn = (node: FleetNode) => this.#dispatcher.call({ op: "unload", body }, node);
    const [firstOutcome, ...otherOutcomes] = await Promise.all([unloadOn(first), ...others.map(unloadOn)]);
    return [firstOutcome, ...otherOutcomes].find((outcome) => outcome.ok) ?? firstOutcome;
  }

  // Stored responses (/v1/responses, /api/v1/chat): each key reads, continues and deletes only its own.

  saveResponse(caller: Caller, record: StoredResponse): Outcome<null> {
    return this.#asOwner(caller, (owner) => (this.#responses.save(owner, record), null));
  }

  storedResponse(caller: Caller, id: string): Outcome<StoredResponse | null> {
    return this.#asOwner(caller, (owner) => this.#responses.get(owner, id));
  }

  deleteResponse(caller: Caller, id: string): Outcome<boolean> {
    return this.#asOwner(caller, (owner) => this.#responses.delete(owner, id));
  }

  /** LM Studio's v1 listing of the whole fleet, within the caller's model scope. */
  listModelsV1(caller: Caller): Outcome<V1Model[]> {
    return this.#outcome(() => {
      const grant = this.#admit(caller, null);
      const models = fleetV1Models(this.#registry.alive(Date.now()));
      return grant === null ? models : models.filter((model) => grant.scope.allows(model.key));
    });
  }

  // Management calls count against the key's request rate but not in its usage: they use no model.
  async downloadModel(body: DownloadRequest, caller: Caller): Promise<Outcome<DownloadJob>> {
    const target = this.#outcome(() => {
      this.#admit(caller, null, "download");
      return downloadTarget(this.#registry.alive(Date.now()), body.node);
    });
    if (!target.ok) return target;
    const outcome = await this.#dispatcher.call({ op: "download", body }, target.result);
    return outcome.ok ? { ok: true, result: { ...outcome.result, node: target.result.name } } : outcome;
  }

  downloadStatus(jobId: string, caller: Caller): Outcome<DownloadJob> {
    return this.#outcome(() => {
      this.#admit(caller, null, "download");
      return findDownload(this.#registry.alive(Date.now()), jobId).job;
    });
  }

  async cancelDownload(jobId: string, caller: Caller): Promise<Outcome<DownloadJob>> {
    const found = this.#outcome(() => {
      this.#admit(caller, null, "download");
      return findDownload(this.#registry.alive(Date.now()), jobId).node;
    });
    if (!found.ok) return found;
    const node = found.result;
    const outcome = await this.#dispatcher.call({ op: "cancel_download", body: { job_id: jobId } }, node);
    return outcome.ok ? { ok: true, result: { ...outcome.result, node: node.name } } : outcome;
  }

  async deleteModel(body: DeleteRequest, caller: Caller): Promise<Outcome<DeleteResult>> {
    const target = this.#outcome(() => {
      this.#admit(caller, body.model, "delete");
      return deleteTarget(this.#registry.alive(Date.now()), body.model, body.node);
    });
    if (!target.ok) return target;
    const outcome = await this.#dispatcher.call({ op: "delete", body }, target.result);
    return outcome.ok ? { ok: true, result: { ...outcome.result, node: target.result.name } } : outcome;
  }

  // ---- RPC from the admin API and /metrics ------------------------------------------------------

  /** Prometheus text; the counters carry on across hibernation (see `FleetMetrics`). */
  metrics(): string {
    // Saved now, so what a scrape saw is what the next life of the object starts from.
    this.#saved.flush();
    return this.#metrics.text();
  }

  listNodes(): NodeSummary[] {
    return this.#registry.summaries(Date.now());
  }

  stats(): FleetStats {
    const now = Date.now();
    const nodes = this.#registry.summaries(now);
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

  async createNodeToken(node: string): Promise<CreatedNodeToken> {
    const { secret, record } = await this.#access.createNodeToken(node, new Date());
    return { token: secret, record };
  }

  listNodeTokens(): NodeTokenRecord[] {
    return this.#access.nodeTokens();
  }

  /** Revokes a node token and disconnects, at once, every node that joined with it. */
  revokeNodeToken(id: string): NodeTokenRecord | null {
    const record = this.#access.revokeNodeToken(id, new Date());
    if (record === undefined) return null;
    for (const ws of this.ctx.getWebSockets()) {
      const attachment = attachmentOf(ws);
      if (attachment?.token === id) this.#reject(ws, attachment.conn, CLOSE_CODES.revoked, "node token revoked");
    }
    return record;
  }

  usage(query: UsageQuery): UsageRow[] {
    const names = new Map(this.#access.keys().map((key) => [key.id, key.name]));
    names.set(ROOT_CALLER_ID, "LMGATE_API_KEY");
    return this.#ledger.query(query, names);
  }

  // ---- agent sockets ---------------------------------------------------------------------------

  /** The agent's upgrade, already authenticated by the Worker. */
  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new ApiError(426, "Expected a WebSocket upgrade.", { code: "upgrade_required" }).toResponse();
    }
    const tokenHash = request.headers.get(NODE_TOKEN_HASH_HEADER);
    let tokenId: string | undefined;
    if (tokenHash !== ROOT_NODE_TOKEN) {
      const token = tokenHash === null ? undefined : this.#access.useNodeToken(tokenHash, new Date());
      if (token === undefined || token.revoked_at !== null) {
        const message = token === undefined ? "Invalid node token." : "This node token has been revoked.";
        return new ApiError(401, message, { code: "invalid_token" }).toResponse();
      }
      tokenId = token.id;
    }
    const tag = tokenTag(tokenId);
    const tooMany = socketLimit(tokenId, this.ctx.getWebSockets(tag).filter((ws) => ws.readyState === WebSocket.OPEN).length);
    if (tooMany !== null) return tooMany.toResponse();
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server, [tag]);
    this.#registry.accept(server, crypto.randomUUID(), Date.now(), tokenId);
    await this.#ensureSweep();
    return new Response(null, { status: 101, webSocket: client });
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    const conn = this.#registry.connOf(ws);
    if (conn === undefined) {
      closeQuietly(ws, CLOSE_CODES.badFrame, "unknown connection");
      return;
    }
    const frame = parseFrame(ToGatewayFrame, message);
    if (frame === null) {
      const version = helloVersion(message);
      if (version !== null && version !== PROTOCOL_VERSION) {
        this.#reject(ws, conn, CLOSE_CODES.unsupportedProtocol, `protocol ${version} is not supported; this gateway speaks protocol ${PROTOCOL_VERSION}`);
      } else {
        this.#reject(ws, conn, CLOSE_CODES.badFrame, "invalid frame");
      }
      return;
    }
    const node = this.#registry.get(conn);
    try {
      if (node === undefined) {
        if (frame.type !== "hello") this.#reject(ws, conn, CLOSE_CODES.badFrame, "the first frame must be hello");
        else this.#hello(ws, conn, frame);
        return;
      }
      switch (frame.type) {
        case "hello":
          this.#reject(ws, conn, CLOSE_CODES.badFrame, "hello was already received");
          return;
        case "status":
          this.#registry.updateStatus(node, frame.status);
          this.#dispatcher.capacityChanged();
          return;
        case "events":
          this.#dispatcher.onEvents(node, frame.id, frame.events);
          return;
        case "result":
          this.#dispatcher.onResult(node, frame.id, frame.result);
          return;
        case "error": {
          const { type: _, id, ...error } = frame;
          this.#dispatcher.onError(node, id, error);
          return;
        }
      }
    } catch (error) {
      // One node's misbehaviour ends that node's connection, never the fleet.
      const reason = error instanceof FlowControlViolation ? error.message : "frame could not be handled";
      if (!(error instanceof FlowControlViolation)) console.error(`Fleet webSocketMessage: ${node?.name ?? conn}:`, error);
      this.#reject(ws, conn, CLOSE_CODES.badFrame, reason);
    }
  }

  override webSocketClose(ws: WebSocket): void {
    this.#lose(ws);
  }

  override webSocketError(ws: WebSocket): void {
    this.#lose(ws);
  }

  /** The heartbeat sweep: closes sockets that stopped pinging or never said hello. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    for (const ws of this.ctx.getWebSockets()) {
      const attachment = attachmentOf(ws);
      if (attachment === null) continue;
      const node = this.#registry.get(attachment.conn);
      if (node !== undefined) {
        if (!this.#registry.isAlive(node, now)) this.#drop(node, CLOSE_CODES.heartbeatTimeout, "heartbeat timeout");
      } else if (now - attachment.acceptedAt > this.#config.helloTimeoutMs) {
        this.#reject(ws, attachment.conn, CLOSE_CODES.helloTimeout, "no hello received");
      }
    }
    if (this.ctx.getWebSockets().length > 0) await this.ctx.storage.setAlarm(Date.now() + this.#sweepIntervalMs());
  }

  // ---- internals -------------------------------------------------------------------------------

  /** The caller's grant; null for the deployment's own key, which has no scopes or limits. */
  #grant(caller: Caller): Grant | null {
    return caller.kind === "root" ? null : this.#control.authenticate(caller.hash, new Date());
  }

  /** Which model ids the caller (a key id, as requests are accounted) may see. */
  #scopeOf(callerId: string | null): (model: string) => boolean {
    const key = callerId === null || callerId === ROOT_CALLER_ID ? undefined : this.#access.key(callerId);
    if (key === undefined) return () => true;
    const scope = new ModelScope(key.models);
    return (model) => scope.allows(model);
  }

  /**
   * Authorizes one request for `model` (null: no particular model) and, for model management, the
   * `action`; counts it against the key's limits. Null for the deployment's own key.
   */
  #admit(caller: Caller, model: string | null, action?: KeyAction): Grant | null {
    const grant = this.#grant(caller);
    if (grant === null) return null;
    if (action !== undefined) this.#control.checkAction(grant, action);
    if (model !== null) this.#control.checkModel(grant, model);
    this.#control.admit(grant, new Date());
    return grant;
  }

  /**
   * A generation of a key with tokens per day may produce only what the key has left: its
   * `max_tokens` (or, unset, the model's context) is capped to that and held until it settles.
   */
  #withinBudget(id: string, grant: Grant, operation: GenerationOperation): GenerationOperation {
    const { key } = grant;
    if (key.tokens_per_day === null) return operation;
    const asked = (operation.op === "chat" ? operation.body.max_completion_tokens : undefined) ?? operation.body.max_tokens;
    // Each of n choices may produce max_tokens: the hold is for all of them, shared out evenly.
    const choices = operation.body.n ?? 1;
    const wanted = (asked !== undefined && asked >= 0 ? asked : this.#contextOf(operation.body.model)) * choices;
    const now = new Date();
    const allowed = Math.max(1, Math.floor(this.#budget.hold(id, key, this.#ledger.tokensOn(key.id, now), wanted, now) / choices));
    if (allowed === asked) return operation;
    return operation.op === "chat"
      ? { op: "chat", body: { ...operation.body, max_tokens: allowed, max_completion_tokens: allowed } }
      : { op: "completion", body: { ...operation.body, max_tokens: allowed } };
  }

  /** The most a generation of `model` can produce: the largest context a node holds it with. */
  #contextOf(model: string): number {
    const contexts = this.#registry.online().map((node) => node.model(model)).map((held) => held?.loaded_context_length ?? held?.max_context_length ?? 0);
    return Math.max(0, ...contexts);
  }

  /** Runs `action` as the key the caller holds (revoked and expired keys are refused). */
  #asOwner<T>(caller: Caller, action: (owner: string) => T): Outcome<T> {
    let owner: string;
    try {
      owner = this.#grant(caller)?.key.id ?? ROOT_CALLER_ID;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      return failed(this.#refused(error));
    }
    return { ok: true, result: action(owner) };
  }

  #admitCall(caller: Caller, model: string, action?: KeyAction): string | Outcome<never> {
    try {
      return this.#admit(caller, model, action)?.key.id ?? ROOT_CALLER_ID;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      return failed(this.#refused(error));
    }
  }

  /** Runs a check or lookup; its `ApiError` becomes the call's outcome. */
  #outcome<T>(run: () => T): Outcome<T> {
    try {
      return { ok: true, result: run() };
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      return failed(this.#refused(error));
    }
  }

  /** A caller turned away before routing (bad key, model out of scope, over a limit): counted, then answered. */
  #refused(error: ApiError): ApiError {
    this.#metrics.refused(error.code ?? String(error.status));
    this.#saved.changed();
    return error;
  }

  #account(job: SettledJob): void {
    this.#budget.release(job.id);
    const now = new Date();
    if (job.op === "chat" || job.op === "completion") {
      this.#traffic.record(now.getTime(), { completionTokens: job.completionTokens, ttftMs: job.ttftMs, failed: job.failed });
    }
    this.#metrics.observe({ ...job, model: recordedModel(job) });
    this.#saved.changed();
    if (job.caller !== null) {
      this.#ledger.record(job.caller, recordedModel(job), { promptTokens: job.promptTokens, completionTokens: job.completionTokens, failed: job.failed }, now);
    }
  }

  #hello(ws: WebSocket, conn: string, hello: HelloFrame): void {
    if (hello.protocol !== PROTOCOL_VERSION) {
      this.#reject(ws, conn, CLOSE_CODES.unsupportedProtocol, `protocol ${hello.protocol} is not supported; this gateway speaks protocol ${PROTOCOL_VERSION}`);
      return;
    }
    // Checked before anything else, so an impostor never displaces the node it names.
    const tokenId = attachmentOf(ws)?.token;
    const refusal = nameRefusal(tokenId === undefined ? undefined : this.#access.nodeToken(tokenId)?.node, hello.node.name);
    if (refusal !== null) {
      this.#reject(ws, conn, CLOSE_CODES.nameNotAllowed, refusal);
      return;
    }
    if (this.#registry.knows(hello.node.name)) {
      this.#metrics.nodeReconnected(hello.node.name);
      this.#saved.changed();
    }
    // A node that reconnects before its old socket was noticed dead replaces it.
    const previous = this.#registry.byName(hello.node.name);
    if (previous !== undefined) this.#drop(previous, CLOSE_CODES.replaced, "replaced by a newer connection of this node");
    const node = this.#registry.register(ws, conn, hello, Date.now());
    send(ws, { type: "welcome", node_id: node.id, heartbeat_interval_ms: this.#config.heartbeatIntervalMs });
    this.#dispatcher.capacityChanged();
  }

  /** Closes a socket that broke the protocol; only that connection is affected. */
  #reject(ws: WebSocket, conn: string, code: number, reason: string): void {
    closeQuietly(ws, code, reason);
    const node = this.#registry.remove(conn, Date.now());
    if (node !== undefined) this.#dispatcher.nodeLost(node);
  }

  #drop(node: FleetNode, code: number, reason: string): void {
    this.#reject(node.ws, node.id, code, reason);
  }

  #lose(ws: WebSocket): void {
    const conn = this.#registry.connOf(ws);
    if (conn === undefined) return;
    const node = this.#registry.remove(conn, Date.now());
    if (node !== undefined) this.#dispatcher.nodeLost(node);
  }

  /**
   * Each sweep wakes the object (a billed request), so it runs once per heartbeat timeout: routing
   * already skips silent nodes the moment their timeout passes; the sweep closes their sockets.
   */
  #sweepIntervalMs(): number {
    return Math.max(1_000, this.#config.heartbeatTimeoutMs);
  }

  async #ensureSweep(): Promise<void> {
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now() + this.#sweepIntervalMs());
  }
}

/** A node's slots for the metrics: each loaded model's, busy and in all. */
const slotsOf = (node: FleetNode) =>
  [...node.loadedModels()].map((model) => ({ node: node.name, model, busy: node.busy(model), total: node.info.slots_per_model }));

/** The protocol version of something that looks like a hello, even one of another version's shape. */
function helloVersion(message: string | ArrayBuffer): number | null {
  try {
    const value: unknown = JSON.parse(typeof message === "string" ? message : new TextDecoder().decode(message));
    if (typeof value === "object" && value !== null && "type" in value && value.type === "hello" && "protocol" in value) {
      return typeof value.protocol === "number" ? value.protocol : null;
    }
  } catch {
    // not JSON at all
  }
  return null;
}

