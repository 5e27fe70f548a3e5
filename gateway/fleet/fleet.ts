import { DurableObject } from "cloudflare:workers";
import type { StoredTurn } from "../../shared/openai-responses/store.ts";
import type { CreateKeyRequest, CreateNodeTokenRequest, UpdateKeyRequest, UsageQuery } from "../../shared/gateway-admin/admin-schemas.ts";
import type { RequestQuery } from "../../shared/gateway-admin/request-log-schemas.ts";
import type { DeleteRequest, DownloadRequest } from "../../shared/protocol/download-schemas.ts";
import type { ChatRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "../../shared/protocol/request-schemas.ts";
import { AccessControl } from "./access/access-control.ts";
import { AccessStore } from "./access/access-store.ts";
import { FailedAttempts } from "./access/failed-attempts.ts";
import { PendingDials } from "./nodes/pending-dials.ts";
import { ROOT_CALLER_ID, ROOT_CALLER_NAME, type Caller } from "./access/caller.ts";
import { RateWindow } from "./access/rate-window.ts";
import { TokenBudget } from "./access/token-budget.ts";
import { UsageLedger } from "./access/usage-ledger.ts";
import { fleetConfig } from "./fleet-config.ts";
import { FleetMetrics } from "./metrics/fleet-metrics.ts";
import { ResponseTable } from "./state/response-table.ts";
import { nodeOf, type GatewayBindings } from "../env.ts";
import type { GoodbyeReason, WireError } from "../../shared/protocol/frames.ts";
import type { StatusDelta } from "../node/status-deltas.ts";
import type { SettledRequest } from "../node/node-contract.ts";
import { AdminCalls } from "./calls/admin-calls.ts";
import { ApiCalls, type Refusal } from "./calls/api-calls.ts";
import { KeyViews } from "./calls/key-view.ts";
import type { FleetAdminApi, FleetApi, FleetNodeApi, GenerationOperation, Serving } from "./fleet-contract.ts";
import { Dispatcher } from "./routing/dispatcher.ts";
import type { FleetNode, HelloFrame } from "./nodes/fleet-node.ts";
import { NodeLinks } from "./nodes/node-links.ts";
import { NodeRegistry } from "./nodes/node-registry.ts";
import { RequestLog } from "./state/request-log.ts";
import { refusedRecord, settledRecord } from "./state/request-records.ts";
import { NodeWaker } from "./nodes/node-waker.ts";
import { SavedState } from "./state/saved-state.ts";
import { recordedModel, type Ending, type SettledJob } from "./routing/settlement.ts";
import { TrafficStats } from "./metrics/traffic-stats.ts";

/** Usage, counters and traffic are written this long after a change, one write for all changes in between. */
const FLUSH_AFTER_MS = 1_000;

/**
 * One fleet's control plane: keys, limits and budgets, the registry of what each node holds,
 * placement, the queue, and the books. It decides; it relays nothing: each node's socket and
 * generations are its node object's (`NodeObject`). The Worker reaches it by RPC (the API's calls,
 * `ApiCalls`; the admin's, `AdminCalls`), the node objects too (`NodeLinks`, and `settle`). This
 * class only puts the parts together and hands each entry point of the Durable Object to its part.
 */
export class Fleet extends DurableObject<GatewayBindings> implements Serving<FleetApi>, Serving<FleetAdminApi>, Serving<FleetNodeApi> {
  readonly #api: ApiCalls;
  readonly #admin: AdminCalls;
  readonly #links: NodeLinks;
  readonly #budget = new TokenBudget();
  readonly #traffic = new TrafficStats();
  readonly #metrics: FleetMetrics;
  readonly #saved: SavedState;
  readonly #ledger: UsageLedger;
  readonly #attempts: FailedAttempts;
  readonly #log: RequestLog;
  readonly #access: AccessStore;

  constructor(ctx: DurableObjectState, env: GatewayBindings) {
    super(ctx, env);
    const config = fleetConfig(env);
    const registry = new NodeRegistry(ctx.storage.sql, (name) => nodeOf(env, name));
    const dispatcher = new Dispatcher(
      registry,
      config,
      (job) => this.#account(job),
      (callerId) => this.#api.scopeOf(callerId),
    );
    const metrics = new FleetMetrics(() => {
      const nodes = registry.alive();
      return { nodesConnected: nodes.length, slots: nodes.flatMap(slotsOf), queueDepth: dispatcher.waiting, inFlight: dispatcher.running };
    });
    const access = new AccessStore(ctx.storage.sql);
    const attempts = new FailedAttempts(ctx.storage.sql);
    const responses = new ResponseTable(ctx.storage.sql, config.storedBytesPerKey);
    this.#attempts = attempts;
    const ledger = new UsageLedger(ctx.storage.sql, { flushAfterMs: FLUSH_AFTER_MS, onFlush: (lastUsed) => access.touchKeys(lastUsed) });
    const saved = new SavedState(ctx.storage.sql, { metrics, traffic: this.#traffic }, { flushAfterMs: FLUSH_AFTER_MS });
    const log = new RequestLog(ctx.storage.sql, { maxRows: config.requestLogMaxRows, maxAgeMs: config.requestLogMaxAgeMs, flushAfterMs: FLUSH_AFTER_MS });
    const window = new RateWindow(ctx.storage.sql);
    this.#log = log;
    this.#access = access;
    const waker = new NodeWaker({
      registry,
      sendWake: (peer, target) => dispatcher.call({ op: "wake", body: target }, peer),
      timeoutMs: config.wakeTimeoutMs,
      onSettled: () => dispatcher.capacityChanged(),
    });
    dispatcher.wakeWith(waker);
    this.#metrics = metrics;
    this.#ledger = ledger;
    this.#saved = saved;
    this.#links = new NodeLinks({
      registry,
      dispatcher,
      access,
      attempts,
      // A socket without hello is closed by its node object's sweep at most this long after it was accepted.
      dials: new PendingDials(config.helloTimeoutMs + Math.max(1_000, config.heartbeatTimeoutMs)),
      waker,
      onReconnect: (name) => {
        metrics.nodeReconnected(name);
        saved.changed();
      },
    });
    this.#api = new ApiCalls({
      registry,
      dispatcher,
      access,
      control: new AccessControl(access, ledger, window, attempts),
      ledger,
      budget: this.#budget,
      responses,
      keyViews: new KeyViews({ access, ledger, window, log, registry }),
      onRefused: (refusal) => this.#refused(refusal),
    });
    this.#admin = new AdminCalls({ registry, dispatcher, links: this.#links, access, ledger, metrics, traffic: this.#traffic, saved, responses, log, waker });
    // Not awaited before calls: a request placed on a lost node meanwhile fails over, as before.
    ctx.waitUntil(this.#links.forgetLost());
  }

  // ---- RPC from the Worker: the API (`FleetApi`) -------------------------------------------------

  listModels(caller: Caller) {
    this.#called("listModels");
    return this.#api.listModels(caller);
  }

  admit(id: string, operation: GenerationOperation, caller: Caller) {
    this.#called("admit");
    return this.#api.admit(id, operation, caller);
  }

  retry(id: string, conn: string, error: WireError) {
    this.#called("retry");
    return this.#api.retry(id, conn, error);
  }

  settle(id: string, attempt: number, ending: Ending, request: SettledRequest) {
    this.#called("settle");
    this.#api.settle(id, attempt, ending, request);
  }

  cancel(id: string) {
    this.#called("cancel");
    this.#api.cancel(id);
  }

  embeddings(body: EmbeddingsRequest, caller: Caller) {
    this.#called("embeddings");
    return this.#api.embeddings(body, caller);
  }

  loadModel(body: LoadRequest, caller: Caller) {
    this.#called("loadModel");
    return this.#api.loadModel(body, caller);
  }

  countTokens(body: ChatRequest, caller: Caller) {
    this.#called("countTokens");
    return this.#api.countTokens(body, caller);
  }

  unloadModel(body: UnloadRequest, caller: Caller) {
    this.#called("unloadModel");
    return this.#api.unloadModel(body, caller);
  }

  saveResponse(caller: Caller, turn: StoredTurn) {
    this.#called("saveResponse");
    return this.#api.saveResponse(caller, turn);
  }

  storedResponse(caller: Caller, id: string) {
    this.#called("storedResponse");
    return this.#api.storedResponse(caller, id);
  }

  responseRoom(caller: Caller, bytes: number) {
    return this.#api.responseRoom(caller, bytes);
  }

  deleteResponse(caller: Caller, id: string) {
    this.#called("deleteResponse");
    return this.#api.deleteResponse(caller, id);
  }

  listModelsV1(caller: Caller) {
    this.#called("listModelsV1");
    return this.#api.listModelsV1(caller);
  }

  downloadModel(body: DownloadRequest, caller: Caller) {
    this.#called("downloadModel");
    return this.#api.downloadModel(body, caller);
  }

  downloadStatus(jobId: string, caller: Caller) {
    this.#called("downloadStatus");
    return this.#api.downloadStatus(jobId, caller);
  }

  cancelDownload(jobId: string, caller: Caller) {
    this.#called("cancelDownload");
    return this.#api.cancelDownload(jobId, caller);
  }

  deleteModel(body: DeleteRequest, caller: Caller) {
    this.#called("deleteModel");
    return this.#api.deleteModel(body, caller);
  }

  authenticate(caller: Caller) {
    return this.#api.authenticate(caller);
  }

  keyInfo(caller: Caller) {
    this.#called("keyInfo");
    return this.#api.keyInfo(caller);
  }

  // ---- RPC from the admin API and /metrics ------------------------------------------------------

  metrics() {
    this.#called("metrics");
    return this.#admin.metrics();
  }

  listNodes() {
    this.#called("listNodes");
    return this.#admin.listNodes();
  }

  stats() {
    this.#called("stats");
    return this.#admin.stats();
  }

  wakeNode(name: string) {
    return this.#admin.wakeNode(name);
  }

  createKey(request: CreateKeyRequest) {
    this.#called("createKey");
    return this.#admin.createKey(request);
  }

  listKeys() {
    this.#called("listKeys");
    return this.#admin.listKeys();
  }

  updateKey(id: string, update: UpdateKeyRequest) {
    this.#called("updateKey");
    return this.#admin.updateKey(id, update);
  }

  revokeKey(id: string) {
    this.#called("revokeKey");
    return this.#admin.revokeKey(id);
  }

  createNodeToken(request: CreateNodeTokenRequest) {
    this.#called("createNodeToken");
    return this.#admin.createNodeToken(request);
  }

  listNodeTokens() {
    this.#called("listNodeTokens");
    return this.#admin.listNodeTokens();
  }

  revokeNodeToken(id: string) {
    this.#called("revokeNodeToken");
    return this.#admin.revokeNodeToken(id);
  }

  storedResponses(keyId: string) {
    return this.#admin.storedResponses(keyId);
  }

  clearStoredResponses(keyId: string) {
    return this.#admin.clearStoredResponses(keyId);
  }

  usage(query: UsageQuery) {
    this.#called("usage");
    return this.#admin.usage(query);
  }

  /** A wrong admin or metrics token from `address` (the Worker checks those; API keys and node tokens are counted here): seconds it must wait, or null. */
  failedAttempt(address: string) {
    this.#called("failedAttempt");
    return this.#attempts.fail(address, Date.now());
  }

  requests(query: RequestQuery) {
    this.#called("requests");
    return this.#admin.requests(query);
  }

  // ---- RPC from the node objects (`FleetNodeApi`) and the agents' upgrades -----------------------

  admitNode(tokenHash: string, name: string, address: string) {
    this.#called("admitNode");
    return this.#links.admit(tokenHash, name, address);
  }

  nodeJoined(conn: string, hello: HelloFrame, tokenId: string | undefined, dial: string | undefined) {
    this.#called("nodeJoined");
    this.#links.joined(conn, hello, tokenId, dial);
  }

  dialEnded(dial: string) {
    this.#called("dialEnded");
    this.#links.dialEnded(dial);
  }

  nodeStatus(conn: string, delta: StatusDelta) {
    this.#called("nodeStatus");
    this.#links.status(conn, delta);
  }

  nodeGoodbye(conn: string, reason: GoodbyeReason) {
    this.#called("nodeGoodbye");
    this.#links.goodbye(conn, reason);
  }

  nodeLeft(conn: string) {
    this.#called("nodeLeft");
    this.#links.left(conn);
  }

  /** Every entry point counts, so the Fleet's work per request is measured, not assumed. */
  #called(call: string): void {
    this.#metrics.fleetCalled(call);
    this.#saved.changed();
  }

  // ---- settling --------------------------------------------------------------------------------

  /** A request turned away before routing: counted in the metrics and kept in the request log. */
  #refused(refusal: Refusal): void {
    this.#metrics.refused(refusal.error.code ?? String(refusal.error.status));
    this.#saved.changed();
    this.#log.record(refusedRecord(refusal, this.#keyName(refusal.keyId), new Date()));
  }

  #keyName(keyId: string | null): string | null {
    if (keyId === null) return null;
    return keyId === ROOT_CALLER_ID ? ROOT_CALLER_NAME : (this.#access.key(keyId)?.name ?? null);
  }

  /** Every request, however it ended, counted once: the key's budget and usage, the request log, the dashboard, the metrics. */
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
      this.#log.record(settledRecord(job, this.#keyName(job.caller)));
    }
    // A settlement arrives as its own call (from a node object), which ends before the batched
    // writes: the call is kept open until they are due, so the object is not evicted before them.
    this.ctx.waitUntil(new Promise((resolve) => setTimeout(resolve, FLUSH_AFTER_MS)));
  }
}

/** A node's slots for the metrics: each loaded model's, busy and in all. */
const slotsOf = (node: FleetNode) =>
  [...node.loadedModels()].map((model) => ({ node: node.name, model, busy: node.busy(model), total: node.info.slots_per_model }));
