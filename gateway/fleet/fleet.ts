import { DurableObject } from "cloudflare:workers";
import type { StoredResponse } from "../../shared/openai-responses/store.ts";
import type { CreateKeyRequest, UpdateKeyRequest, UsageQuery } from "../../shared/schemas/admin.ts";
import type { DeleteRequest, DownloadRequest } from "../../shared/schemas/downloads.ts";
import type { ChatRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "../../shared/schemas/requests.ts";
import { AccessControl } from "./access/access-control.ts";
import { AccessStore } from "./access/access-store.ts";
import type { Caller } from "./access/caller.ts";
import { RateWindow } from "./access/rate-window.ts";
import { TokenBudget } from "./access/token-budget.ts";
import { UsageLedger } from "./access/usage-ledger.ts";
import { fleetConfig } from "./config.ts";
import { FleetMetrics } from "./metrics/fleet-metrics.ts";
import { ResponseTable } from "./state/response-table.ts";
import type { GatewayVars } from "../vars.ts";
import { AdminCalls } from "./calls/admin-calls.ts";
import { ApiCalls } from "./calls/api-calls.ts";
import type { FleetApi, GenerationOperation, Serving } from "./contract.ts";
import { Dispatcher } from "./routing/dispatcher.ts";
import type { FleetNode } from "./nodes/fleet-node.ts";
import { NodeRegistry } from "./nodes/node-registry.ts";
import { NodeSockets } from "./nodes/node-sockets.ts";
import { NodeWaker } from "./nodes/node-waker.ts";
import { SavedState } from "./state/saved-state.ts";
import { recordedModel, type SettledJob } from "./routing/settlement.ts";
import { TrafficStats } from "./metrics/traffic-stats.ts";

/**
 * One fleet: the WebSockets of its nodes, the registry of what each node holds, and every request
 * in flight. The Worker reaches it by RPC (the API's calls, `ApiCalls`; the admin's, `AdminCalls`),
 * and agents' WebSocket upgrades arrive through `fetch` (`NodeSockets`). This class only puts the
 * parts together and hands each entry point of the Durable Object to its part.
 */
export class Fleet extends DurableObject<GatewayVars> implements Serving<FleetApi> {
  readonly #api: ApiCalls;
  readonly #admin: AdminCalls;
  readonly #sockets: NodeSockets;
  readonly #budget = new TokenBudget();
  readonly #traffic = new TrafficStats();
  readonly #metrics: FleetMetrics;
  readonly #saved: SavedState;
  readonly #ledger: UsageLedger;

  constructor(ctx: DurableObjectState, env: GatewayVars) {
    super(ctx, env);
    const config = fleetConfig(env);
    const registry = new NodeRegistry(ctx, config.heartbeatTimeoutMs);
    const dispatcher = new Dispatcher(
      registry,
      config,
      (node) => this.#sockets.drop(node, 1011, "send failed"),
      (job) => this.#account(job),
      (callerId) => this.#api.scopeOf(callerId),
    );
    const metrics = new FleetMetrics(() => {
      const nodes = registry.alive(Date.now());
      return { nodesConnected: nodes.length, slots: nodes.flatMap(slotsOf), queueDepth: dispatcher.waiting, inFlight: dispatcher.running };
    });
    const access = new AccessStore(ctx.storage.sql);
    const waker = new NodeWaker({
      registry,
      sendWake: (peer, target) => dispatcher.call({ op: "wake", body: target }, peer),
      timeoutMs: config.wakeTimeoutMs,
      onSettled: () => dispatcher.capacityChanged(),
    });
    dispatcher.wakeWith(waker);
    const ledger = new UsageLedger(ctx.storage.sql, { flushAfterMs: 1_000, onFlush: (lastUsed) => access.touchKeys(lastUsed) });
    const saved = new SavedState(ctx.storage.sql, { metrics, traffic: this.#traffic }, { flushAfterMs: 1_000 });
    this.#metrics = metrics;
    this.#ledger = ledger;
    this.#saved = saved;
    this.#sockets = new NodeSockets(ctx, {
      config,
      registry,
      dispatcher,
      access,
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
      control: new AccessControl(access, ledger, new RateWindow(ctx.storage.sql)),
      ledger,
      budget: this.#budget,
      responses: new ResponseTable(ctx.storage.sql),
      onRefused: (code) => {
        metrics.refused(code);
        saved.changed();
      },
    });
    this.#admin = new AdminCalls({ registry, dispatcher, sockets: this.#sockets, access, ledger, metrics, traffic: this.#traffic, saved, waker });
  }

  // ---- RPC from the Worker: the API (`FleetApi`) -------------------------------------------------

  listModels(caller: Caller) {
    return this.#api.listModels(caller);
  }

  generate(operation: GenerationOperation, caller: Caller) {
    return this.#api.generate(operation, caller);
  }

  cancel(id: string) {
    this.#api.cancel(id);
  }

  embeddings(body: EmbeddingsRequest, caller: Caller) {
    return this.#api.embeddings(body, caller);
  }

  loadModel(body: LoadRequest, caller: Caller) {
    return this.#api.loadModel(body, caller);
  }

  countTokens(body: ChatRequest, caller: Caller) {
    return this.#api.countTokens(body, caller);
  }

  unloadModel(body: UnloadRequest, caller: Caller) {
    return this.#api.unloadModel(body, caller);
  }

  saveResponse(caller: Caller, record: StoredResponse) {
    return this.#api.saveResponse(caller, record);
  }

  storedResponse(caller: Caller, id: string) {
    return this.#api.storedResponse(caller, id);
  }

  deleteResponse(caller: Caller, id: string) {
    return this.#api.deleteResponse(caller, id);
  }

  listModelsV1(caller: Caller) {
    return this.#api.listModelsV1(caller);
  }

  downloadModel(body: DownloadRequest, caller: Caller) {
    return this.#api.downloadModel(body, caller);
  }

  downloadStatus(jobId: string, caller: Caller) {
    return this.#api.downloadStatus(jobId, caller);
  }

  cancelDownload(jobId: string, caller: Caller) {
    return this.#api.cancelDownload(jobId, caller);
  }

  deleteModel(body: DeleteRequest, caller: Caller) {
    return this.#api.deleteModel(body, caller);
  }

  // ---- RPC from the admin API and /metrics ------------------------------------------------------

  metrics() {
    return this.#admin.metrics();
  }

  listNodes() {
    return this.#admin.listNodes();
  }

  stats() {
    return this.#admin.stats();
  }

  wakeNode(name: string) {
    return this.#admin.wakeNode(name);
  }

  createKey(request: CreateKeyRequest) {
    return this.#admin.createKey(request);
  }

  listKeys() {
    return this.#admin.listKeys();
  }

  updateKey(id: string, update: UpdateKeyRequest) {
    return this.#admin.updateKey(id, update);
  }

  revokeKey(id: string) {
    return this.#admin.revokeKey(id);
  }

  createNodeToken(node: string) {
    return this.#admin.createNodeToken(node);
  }

  listNodeTokens() {
    return this.#admin.listNodeTokens();
  }

  revokeNodeToken(id: string) {
    return this.#admin.revokeNodeToken(id);
  }

  usage(query: UsageQuery) {
    return this.#admin.usage(query);
  }

  // ---- agent sockets ---------------------------------------------------------------------------

  override fetch(request: Request): Promise<Response> {
    return this.#sockets.accept(request);
  }

  override webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): void {
    this.#sockets.message(ws, message);
  }

  override webSocketClose(ws: WebSocket): void {
    this.#sockets.lost(ws);
  }

  override webSocketError(ws: WebSocket): void {
    this.#sockets.lost(ws);
  }

  override alarm(): Promise<void> {
    return this.#sockets.sweep();
  }

  // ---- settling --------------------------------------------------------------------------------

  /** Every request, however it ended, counted once: the key's budget and usage, the dashboard, the metrics. */
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
}

/** A node's slots for the metrics: each loaded model's, busy and in all. */
const slotsOf = (node: FleetNode) =>
  [...node.loadedModels()].map((model) => ({ node: node.name, model, busy: node.busy(model), total: node.info.slots_per_model }));
