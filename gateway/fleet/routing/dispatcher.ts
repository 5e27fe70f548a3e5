import { ApiError, invalidRequest, modelNotFound, noCapacity } from "../../../shared/protocol/api-error.ts";
import { draftModelOf, missingFeature } from "../../../shared/protocol/generation-features.ts";
import { toWire, type WireError } from "../../../shared/protocol/frames.ts";
import type { EmbeddingsResult, GatewayInfo } from "../../../shared/protocol/generation-events.ts";
import type { TokenCount } from "../../../shared/protocol/token-count.ts";
import type { CallAnswer, Lease, SettledRequest } from "../../node/node-contract.ts";
import { FINAL_USAGE_WAIT_MS } from "../../node/relay.ts";
import type { FleetConfig } from "../fleet-config.ts";
import type { CallOperation, GenerationOperation, Outcome } from "../fleet-contract.ts";
import type { FleetNode } from "../nodes/fleet-node.ts";
import { newJob, RESULT_SCHEMAS, type CallResults, type GenerationJob, type Job } from "./job.ts";
import type { NodeRegistry } from "../nodes/node-registry.ts";
import { noRoom } from "./placement.ts";
import { PromptAffinity } from "./prompt-affinity.ts";
import { chooseLoadTarget, chooseNode } from "./routing.ts";
import { requestOf, Settlement, type Ending, type SettleObserver } from "./settlement.ts";
import type { RequestOrigin } from "../access/caller.ts";
import { boundedNodeError, recordMeasuredSpeed, recordProvenSlots } from "./node-claims.ts";
import { boundedPromptTokens, boundedUsage } from "./usage-bounds.ts";
import { WaitQueue } from "./wait-queue.ts";

/** Retry-After when only offline nodes hold a model: an agent's reconnect backoff tops out at 10 s. */
const OFFLINE_RETRY_AFTER_S = 5;

const SETTLED_IDS_KEPT = 4_096;

/**
 * Waking sleeping nodes (`NodeWaker`), as routing uses it: a request for a model that only
 * offline, wakeable nodes hold waits for one of them instead of failing.
 */
export interface Wakes {
  readonly timeoutMs: number;
  /** Starts (or joins) waking an offline holder of `model`; false when none can be woken. */
  wakeFor(model: string): boolean;
  pendingFor(model: string): boolean;
  /** Why each offline holder of `model` is not awake (none: nobody tried, nothing stops it). */
  failuresFor(model: string): WakeFailure[];
}

/**
 * Why a sleeping node is not serving: its name and the reason in a sentence; `code` when a wake
 * could have worked and did not (`no_wake_peer`, `wake_failed`, `wake_timeout`), null when the
 * node may not be woken at all.
 */
export interface WakeFailure {
  message: string;
  code: string | null;
}

/** A waiting request outlives the wake it waits for, so the wake's own failure is what it reports. */
const WAKE_GRACE_MS = 5_000;

/** Agents answering 503 (their own queue is full, say) are worth another node's try. */
const RETRYABLE_STATUS = 503;

/**
 * Requests in the fleet: placing each on a node (or in the `WaitQueue`, or failing it), moving it
 * when its node fails it before any text, and hearing how it ended (`Settlement`). A generation's
 * tokens never pass here: once placed, the Worker reads it from the node's object, which reports
 * its end once (`settle`). A request costs the Fleet `admit` and `settle`, however long its answer.
 */
export class Dispatcher {
  readonly #registry: NodeRegistry;
  readonly #config: FleetConfig;
  readonly #settlement: Settlement;
  readonly #visibleTo: (caller: string | null) => (model: string) => boolean;
  /** Requests holding a node, by request id. */
  readonly #running = new Map<string, Job>();
  readonly #queue: WaitQueue;
  /** Generations not yet settled, by request id (waiting, on a node, or between two nodes). */
  readonly #generations = new Map<string, GenerationJob>();
  readonly #affinity = new PromptAffinity();
  readonly #settledIds = new Set<string>();
  #wakes: Wakes | null = null;

  /** `visibleTo` says which model ids a caller may see: a 404 lists only those. */
  constructor(
    registry: NodeRegistry,
    config: FleetConfig,
    onSettled: SettleObserver = () => {},
    visibleTo: (caller: string | null) => (model: string) => boolean = () => () => true,
  ) {
    this.#visibleTo = visibleTo;
    this.#registry = registry;
    this.#config = config;
    this.#settlement = new Settlement(onSettled);
    this.#queue = new WaitQueue(config, (job, error) => this.#fail(job, error));
  }

  get waiting(): number {
    return this.#queue.length;
  }

  get running(): number {
    return this.#running.size;
  }

  /** Places a generation; resolves with its lease on a node, or with why it cannot run. `id` is the Worker's. */
  admit(id: string, operation: GenerationOperation, caller: string | null = null, origin: RequestOrigin | null = null): Promise<Outcome<Lease>> {
    if (this.#generations.has(id)) return Promise.resolve({ ok: false, error: toWire(new ApiError(409, "That request id is in use.", { code: "duplicate_request" })) });
    return new Promise((grant) => {
      const job: GenerationJob = { ...newJob(operation, null, caller, origin), id, operation, kind: "generation", grant, cancelTimer: null };
      this.#generations.set(id, job);
      this.#place(job);
    });
  }

  /**
   * The node (connection `conn`) failed the generation before any text: it moves to another node,
   * at most `maxRetries` times, or ends with the node's error.
   */
  retry(id: string, conn: string, error: WireError): Promise<Outcome<Lease>> {
    const job = this.#generations.get(id);
    if (job === undefined || job.grant !== null || (job.node !== null && job.node.id !== conn)) {
      return Promise.resolve({ ok: false, error: toWire(new ApiError(409, "That request is not waiting to move.", { code: "not_retryable" })) });
    }
    this.#detach(job);
    return new Promise((grant) => {
      job.grant = grant;
      if (job.retries >= this.#config.maxRetries) {
        this.#finish(job, error);
      } else {
        job.excluded.add(conn);
        job.retries += 1;
        this.#place(job);
      }
      this.capacityChanged();
    });
  }

  /**
   * A generation's attempt ended for good (its node object, or the Worker, says how): its one
   * settlement. A request this Fleet does not know (it was evicted while the request ran) still
   * counts, from what the settlement says of it.
   */
  settle(id: string, attempt: number, ending: Ending, request: SettledRequest): void {
    const job = this.#generations.get(id);
    if (job === undefined) {
      if (!this.#settledIds.has(id)) this.#settlement.settledRequest(id, request, ending);
      this.#rememberSettled(id);
      return;
    }
    // An attempt that was moved on is not settled by its old node.
    if (job.attempt !== attempt || job.grant !== null) return;
    if (job.cancelTimer !== null) clearTimeout(job.cancelTimer);
    this.#generations.delete(id);
    this.#rememberSettled(id);
    const node = job.node;
    if (node !== null && ending.status === 200) {
      // Before its slot is given back: the count it ran at includes this one.
      recordProvenSlots(node, job.model);
      recordMeasuredSpeed(node, job.model, ending.completionTokens ?? 0, ending.firstTokenAt ?? null, ending.endedAt ?? Date.now());
    }
    this.#detach(job);
    this.#settlement.settled(job, ending);
    this.capacityChanged();
  }

  /** Settled generations, the last few thousand, so a late second report of one is not counted again. */
  #rememberSettled(id: string): void {
    this.#settledIds.add(id);
    if (this.#settledIds.size > SETTLED_IDS_KEPT) {
      const [oldest] = this.#settledIds;
      if (oldest !== undefined) this.#settledIds.delete(oldest);
    }
  }

  /**
   * The client went away. A waiting request ends here; one on a node frees its slot at once and
   * its node is told to stop (`stopOn`), and it settles when the node object reports what it spent.
   */
  cancel(id: string, stopOn: (node: FleetNode, id: string) => void): void {
    const job = this.#generations.get(id);
    if (job === undefined || job.cancelTimer !== null) return;
    const node = job.node;
    if (node === null || job.grant !== null) {
      this.#generations.delete(id);
      this.#settlement.settled(job, { status: 499 });
      this.#queue.remove(job, Date.now());
      job.grant?.({ ok: false, error: toWire(new ApiError(499, "The client went away.", { code: "client_closed_request" })) });
      job.grant = null;
      return;
    }
    this.#detach(job);
    stopOn(node, id);
    // Should its node object never report (it was gone), the request still settles, without tokens.
    const attempt = job.attempt;
    job.cancelTimer = setTimeout(() => {
      job.cancelTimer = null;
      this.settle(id, attempt, { status: 499 }, requestOf(job));
    }, FINAL_USAGE_WAIT_MS + 2_000);
    this.capacityChanged();
  }

  call<Call extends CallOperation>(
    operation: Call,
    pinned: FleetNode | null = null,
    caller: string | null = null,
    origin: RequestOrigin | null = null,
  ): Promise<Outcome<CallResults[Call["op"]]>> {
    return new Promise((resolve) => {
      const settle = (outcome: Outcome<CallResults[Call["op"]]>) => resolve(outcome);
      this.#place({ ...newJob(operation, pinned, caller, origin), operation, kind: "call", settle });
    });
  }

  /** Lets requests wait for sleeping nodes that can be woken. */
  wakeWith(wakes: Wakes): void {
    this.#wakes = wakes;
  }

  // ---- routing -------------------------------------------------------------------------------

  /** Live nodes that hold the job's model (and its draft model, if it names one) and have not failed it. */
  #holders(job: Job): FleetNode[] {
    if (job.pinned !== null) return this.#registry.get(job.pinned.id) === job.pinned ? [job.pinned] : [];
    const draft = draftModelOf(job.operation);
    return this.#registry
      .online()
      .filter(
        (node) =>
          node.model(job.model) !== undefined &&
          (draft === undefined || node.model(draft) !== undefined) &&
          !node.unloading.has(job.model) &&
          !job.excluded.has(node.id) &&
          missingFeature(job.operation, node.info.generation_features) === undefined,
      );
  }

  /**
   * The one decision every caller that picks a node makes: dispatch the job to a node now, queue
   * it for a slot (or, `timeoutMs`, for a sleeping node being woken), or fail it (nobody can serve
   * it, or it fits nowhere). `mayWake`: a job arriving may start a wake; one already waiting only
   * waits on while the wake is under way.
   */
  #decide(job: Job, mayWake: boolean): { dispatch: FleetNode } | { queue: true; timeoutMs?: number } | { fail: ApiError } {
    const holders = this.#holders(job);
    if (holders.length === 0) {
      // Pinned calls and moved requests name their node: waking another would not help them.
      const wakes = job.pinned === null && job.retries === 0 ? this.#wakes : null;
      if (wakes !== null && (mayWake ? wakes.wakeFor(job.model) : wakes.pendingFor(job.model))) {
        return { queue: true, timeoutMs: wakes.timeoutMs + WAKE_GRACE_MS };
      }
      return { fail: this.#nobodyCanServe(job) };
    }
    const target = this.#choose(job, holders);
    if (target !== null) return { dispatch: target };
    if (holders.some((node) => node.isLoaded(job.model))) return { queue: true };
    return { fail: noRoom(job.model, holders) };
  }

  /** A job that arrived (or moves): placed, queued or failed. */
  #place(job: Job): void {
    const now = Date.now();
    const decision = this.#decide(job, true);
    if ("dispatch" in decision) this.#dispatch(job, decision.dispatch, now);
    else if ("queue" in decision) this.#queue.add(job, now, decision.timeoutMs);
    else this.#fail(job, decision.fail);
  }

  #choose(job: Job, holders: FleetNode[]): FleetNode | null {
    if (job.pinned !== null) return job.pinned;
    const warm = this.#affinity.nodeFor(job.prefixKeys);
    const candidates = holders.map((node) => ({ ...node.candidate(job.model, draftModelOf(job.operation)), cachesPrompt: node.name === warm }));
    const chosen = job.operation.op === "load" ? chooseLoadTarget(candidates) : chooseNode(candidates);
    return chosen === null ? null : (holders.find((node) => node.id === chosen.id) ?? null);
  }

  #nobodyCanServe(job: Job): ApiError {
    const everyModel = new Set<string>();
    const visible = this.#visibleTo(job.caller);
    let heldSomewhere = false;
    for (const node of this.#registry.online()) {
      for (const model of node.status.models) if (visible(model.id)) everyModel.add(model.id);
      if (node.model(job.model) !== undefined) heldSomewhere = true;
    }
    // Held, but only by agents too old for what the request asks: waiting will not help.
    const missing = this.#registry
      .online()
      .filter((node) => node.model(job.model) !== undefined)
      .map((node) => missingFeature(job.operation, node.info.generation_features));
    const [first] = missing;
    if (first !== undefined && missing.every((need) => need !== undefined)) {
      return invalidRequest(`${first.param} is not supported by the agents serving "${job.model}"; update lmgate-agent on their nodes.`, first.param);
    }
    // A draft runs beside its model, on the same node; one no node holds is unknown, as in direct mode.
    const draft = draftModelOf(job.operation);
    if (draft !== undefined && heldSomewhere && !this.#registry.online().some((node) => node.model(draft) !== undefined)) {
      return new ApiError(404, `Draft model "${draft}" not found. Name a model that a node holds as draft_model.`, { param: "draft_model", code: "model_not_found" });
    }
    if (draft !== undefined && heldSomewhere && !this.#registry.online().some((node) => node.model(job.model) !== undefined && node.model(draft) !== undefined)) {
      return new ApiError(400, `No node holds both "${job.model}" and its draft_model "${draft}"; a draft model runs beside its model, on the same node.`, {
        param: "draft_model",
        code: "draft_model_not_beside_model",
      });
    }
    if (job.retries > 0) {
      return noCapacity(`Cannot serve the request: the node serving it failed and no other node that holds "${job.model}" is available.`, 2);
    }
    if (job.pinned !== null || heldSomewhere) {
      return noCapacity(`Cannot serve the request: no node that holds "${job.model}" is reachable right now.`, 2);
    }
    // A home machine that is asleep or reconnecting still has the model: "try again" is the truth, not "no such model".
    const offline = this.#registry.offlineHolders(job.model);
    if (offline.length > 0) {
      const failures = this.#wakes?.failuresFor(job.model) ?? [];
      const why = failures.map((failure) => ` ${failure.message}`).join("");
      const code = failures.find((failure) => failure.code !== null)?.code ?? "no_capacity";
      return noCapacity(`Cannot serve the request: no node that holds "${job.model}" is online (offline: ${offline.join(", ")}).${why}`, OFFLINE_RETRY_AFTER_S, code);
    }
    return modelNotFound(job.model, [...everyModel].sort());
  }

  /** Slots freed or nodes came or went: start whatever waiting requests fit now, oldest first. */
  capacityChanged(): void {
    if (this.#queue.length === 0) return;
    const now = Date.now();
    for (const job of this.#queue.takeAll()) {
      const decision = this.#decide(job, false);
      if ("dispatch" in decision) {
        this.#dispatch(job, decision.dispatch, now);
      } else if ("queue" in decision) {
        this.#queue.keep(job);
      } else {
        this.#queue.leave(job, now);
        this.#fail(job, decision.fail);
      }
    }
  }

  #holdsSlot(job: Job): boolean {
    return job.operation.op === "chat" || job.operation.op === "completion" || job.operation.op === "embeddings";
  }

  #dispatch(job: Job, node: FleetNode, now: number): void {
    this.#queue.leave(job, now);
    job.node = node;
    job.lastNode = node.name;
    job.attempt += 1;
    if (this.#holdsSlot(job)) node.acquire(job.model, now);
    this.#affinity.remember(job.prefixKeys, node.name);
    this.#running.set(job.id, job);
    if (job.kind === "generation") {
      const grant = job.grant;
      job.grant = null;
      grant?.({
        ok: true,
        result: {
          id: job.id,
          attempt: job.attempt,
          node: node.name,
          conn: node.id,
          operation: job.operation,
          window: this.#config.window,
          stream: "stream" in job.operation.body && job.operation.body.stream === true,
          receivedAt: job.receivedAt,
          queueMs: job.queueMs,
          retries: job.retries,
          model: node.model(job.model),
          caller: job.caller,
          origin: job.origin,
        },
      });
      return;
    }
    const attempt = job.attempt;
    node.link
      .call(node.id, job.id, job.operation)
      .catch((): CallAnswer => ({ lost: true }))
      .then((answer) => {
        // An answer for an attempt already moved or ended (its node was lost meanwhile) is dropped.
        if (job.node !== node || job.attempt !== attempt) return;
        if ("lost" in answer) this.#moveOrFail(job, node);
        else if (answer.ok) this.#onResult(job, node, answer.result);
        else this.#onError(job, node, answer.error);
        this.capacityChanged();
      });
  }

  /** Takes the job off its node; returns the node it was on. */
  #detach(job: Job): FleetNode | null {
    const node = job.node;
    if (node !== null && this.#holdsSlot(job)) node.release(job.model);
    job.node = null;
    this.#running.delete(job.id);
    return node;
  }

  // ---- answers from nodes --------------------------------------------------------------------

  #onResult(job: Extract<Job, { kind: "call" }>, node: FleetNode, result: unknown): void {
    this.#detach(job);
    const parsed = RESULT_SCHEMAS[job.operation.op].safeParse(result);
    if (!parsed.success) {
      this.#fail(job, new ApiError(502, `Node "${node.name}" answered ${job.operation.op} with the wrong kind of result.`, { code: "bad_node_response" }));
    } else if (job.operation.op === "embeddings") {
      const reported = parsed.data as EmbeddingsResult;
      const { prompt_tokens } = boundedUsage(job.operation, undefined, { ...reported.usage, completion_tokens: 0 });
      const embeddings = { ...reported, usage: { prompt_tokens, total_tokens: prompt_tokens } };
      this.#settlement.settled(job, { status: 200, promptTokens: prompt_tokens });
      job.settle({ ok: true, result: { ...embeddings, gateway: this.#gatewayInfo(job, node) } });
    } else if (job.operation.op === "count_tokens") {
      this.#settlement.settled(job, { status: 200 });
      job.settle({ ok: true, result: { prompt_tokens: boundedPromptTokens(job.operation, (parsed.data as TokenCount).prompt_tokens) } });
    } else {
      this.#settlement.settled(job, { status: 200 });
      job.settle({ ok: true, result: parsed.data });
    }
  }

  #onError(job: Extract<Job, { kind: "call" }>, node: FleetNode, claimed: WireError): void {
    const error = boundedNodeError(claimed);
    this.#detach(job);
    if (error.status === RETRYABLE_STATUS && this.#mayMove(job)) this.#move(job, node);
    else this.#finish(job, error);
  }

  /**
   * The node's connection is gone. Its calls move to another node, invisibly, or fail; its
   * generations only give back their slots: their node object ends each (the Worker moves one
   * that sent no text yet, with `retry`).
   */
  nodeLost(node: FleetNode): void {
    for (const job of [...this.#running.values()].filter((running) => running.node === node)) {
      if (job.kind === "generation") this.#detach(job);
      else this.#moveOrFail(job, node);
    }
    this.capacityChanged();
  }

  /** The one retry rule: a job that its node failed before any answer moves on while it may, else ends. */
  #mayMove(job: Job): boolean {
    return job.pinned === null && job.retries < this.#config.maxRetries;
  }

  #move(job: Job, node: FleetNode): void {
    job.excluded.add(node.id);
    job.retries += 1;
    this.#place(job);
  }

  #moveOrFail(job: Extract<Job, { kind: "call" }>, node: FleetNode): void {
    this.#detach(job);
    if (this.#mayMove(job)) this.#move(job, node);
    else this.#fail(job, new ApiError(502, `The node "${node.name}" disconnected before answering.`, { code: "node_disconnected", type: "server_error" }));
  }

  // ---- endings -------------------------------------------------------------------------------

  #fail(job: Job, error: ApiError): void {
    this.#finish(job, toWire(error));
  }

  #finish(job: Job, error: WireError): void {
    this.#settlement.settled(job, { status: error.status, failed: true, errorCode: error.body.error.code });
    if (job.kind === "generation") {
      this.#generations.delete(job.id);
      job.grant?.({ ok: false, error });
      job.grant = null;
    } else job.settle({ ok: false, error });
  }

  /**
   * `overhead_ms` of a call: the request's time in the fleet minus its wait for a slot. Embeddings
   * report no engine time, so theirs includes the node's work.
   */
  #gatewayInfo(job: Job, node: FleetNode): GatewayInfo {
    const total = Date.now() - job.receivedAt;
    return { node: node.name, queue_ms: Math.round(job.queueMs), overhead_ms: Math.max(0, Math.round(total - job.queueMs)), retries: job.retries };
  }
}
