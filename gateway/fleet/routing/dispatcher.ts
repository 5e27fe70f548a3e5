import { ApiError, invalidRequest, modelNotFound, noCapacity } from "../../../shared/errors.ts";
import { missingFeature } from "../../../shared/generation-features.ts";
import { toWire, type ToAgentFrame, type WireError } from "../../../shared/protocol.ts";
import type { EmbeddingsResult, GatewayInfo, GenerationEvent, GenerationResult } from "../../../shared/schemas/generation.ts";
import type { TokenCount } from "../../../shared/schemas/token-count.ts";
import type { FleetConfig } from "../config.ts";
import { encodeLines, type CallOperation, type GenerationHandle, type GenerationOperation, type Outcome } from "../contract.ts";
import type { FleetNode } from "../nodes/fleet-node.ts";
import { newJob, RESULT_SCHEMAS, type CallResult, type CallResults, type GenerationJob, type Job } from "./job.ts";
import type { NodeRegistry } from "../nodes/node-registry.ts";
import { noRoom } from "./placement.ts";
import { PromptAffinity } from "./prompt-affinity.ts";
import { RelayStream } from "./relay-stream.ts";
import { chooseLoadTarget, chooseNode } from "./routing.ts";
import { Settlement, type SettleObserver } from "./settlement.ts";
import { boundedPromptTokens, boundedUsage } from "./usage-bounds.ts";
import { endedByUnload, throughDone } from "../../../shared/generation-contract.ts";
import { WaitQueue } from "./wait-queue.ts";

/** Retry-After when only offline nodes hold a model: an agent's reconnect backoff tops out at 10 s. */
const OFFLINE_RETRY_AFTER_S = 5;

/**
 * Waking sleeping nodes (`NodeWaker`), as routing uses it: a request for a model that only
 * offline, wakeable nodes hold waits for one of them instead of failing.
 */
export interface Wakes {
  readonly timeoutMs: number;
  /** Starts (or joins) waking an offline holder of `model`; false when none can be woken. */
  wakeFor(model: string, now: number): boolean;
  pendingFor(model: string): boolean;
  failureFor(model: string): string | undefined;
}

/** A waiting request outlives the wake it waits for, so the wake's own failure is what it reports. */
const WAKE_GRACE_MS = 5_000;

/** Agents answering 503 (their own queue is full, say) are worth another node's try. */
const RETRYABLE_STATUS = 503;

/**
 * Requests in the fleet: routing each to a node (or into the `WaitQueue`, or to an error),
 * relaying the node's frames, flow control, cancellation and failover; how each ends goes to
 * the `Settlement`. The Fleet's `NodeSockets` feed it the nodes' frames.
 */
export class Dispatcher {
  readonly #registry: NodeRegistry;
  readonly #config: FleetConfig;
  readonly #dropNode: (node: FleetNode) => void;
  readonly #settlement: Settlement;
  readonly #visibleTo: (caller: string | null) => (model: string) => boolean;
  /** Requests sent to a node, by request id. */
  readonly #running = new Map<string, Job>();
  readonly #queue: WaitQueue;
  /** Generations whose stream is still open, by request id (running or waiting). */
  readonly #generations = new Map<string, GenerationJob>();
  readonly #affinity = new PromptAffinity();
  #wakes: Wakes | null = null;

  /**
   * `dropNode` closes a node whose socket failed a send and forgets it, then calls `nodeLost`.
   * `visibleTo` says which model ids a caller may see: a 404 lists only those.
   */
  constructor(
    registry: NodeRegistry,
    config: FleetConfig,
    dropNode: (node: FleetNode) => void,
    onSettled: SettleObserver = () => {},
    visibleTo: (caller: string | null) => (model: string) => boolean = () => () => true,
  ) {
    this.#visibleTo = visibleTo;
    this.#registry = registry;
    this.#config = config;
    this.#dropNode = dropNode;
    this.#settlement = new Settlement(onSettled);
    this.#queue = new WaitQueue(config, (job, error) => this.#fail(job, error));
  }

  get waiting(): number {
    return this.#queue.length;
  }

  get running(): number {
    return this.#running.size;
  }

  /** `id` is the caller's when it must know the request before it can settle (its token reservation). */
  generate(operation: GenerationOperation, caller: string | null = null, id: string = crypto.randomUUID()): GenerationHandle {
    let job: GenerationJob | undefined;
    const stream = new RelayStream({
      onConsumed: (attempt) => job && this.#consumed(job, attempt),
      onCancel: () => job && this.#cancel(job),
    });
    job = { ...newJob(operation, null, caller), id, kind: "generation", stream, startSent: false, deltaSent: false, firstTokenAt: null, unacked: 0 };
    this.#generations.set(job.id, job);
    this.#admit(job);
    return { id: job.id, events: stream.readable };
  }

  /**
   * The client went away. Said explicitly by the Worker: cancelling an RPC stream reaches this
   * side only when the next chunk is written, which may be never if the node is paused for credit.
   */
  cancel(id: string): void {
    const job = this.#generations.get(id);
    if (job !== undefined) this.#cancel(job);
  }

  call<Call extends CallOperation>(operation: Call, pinned: FleetNode | null = null, caller: string | null = null): Promise<Outcome<CallResults[Call["op"]]>> {
    return new Promise((resolve) => {
      const settle = (outcome: Outcome<CallResults[Call["op"]]>) => resolve(outcome);
      this.#admit({ ...newJob(operation, pinned, caller), operation, kind: "call", settle });
    });
  }

  /** Lets requests wait for sleeping nodes that can be woken. */
  wakeWith(wakes: Wakes): void {
    this.#wakes = wakes;
  }

  // ---- routing -------------------------------------------------------------------------------

  /** Live nodes that hold the job's model and have not failed it. */
  #holders(job: Job, now: number): FleetNode[] {
    if (job.pinned !== null) return this.#registry.get(job.pinned.id) === job.pinned ? [job.pinned] : [];
    return this.#registry
      .online()
      .filter(
        (node) =>
          node.model(job.model) !== undefined &&
          !job.excluded.has(node.id) &&
          this.#registry.isAlive(node, now) &&
          missingFeature(job.operation, node.info.generation_features) === undefined,
      );
  }

  /** Routes the job now, queues it, or fails it. */
  #admit(job: Job): void {
    const now = Date.now();
    const holders = this.#holders(job, now);
    if (holders.length === 0) {
      // Pinned calls and failed-over requests name their node: waking another would not help them.
      if (job.pinned === null && job.retries === 0 && this.#wakes?.wakeFor(job.model, now) === true) {
        // Waits for the node's hello; keeps the queue's own bound on how many may wait.
        this.#queue.add(job, now, this.#wakes.timeoutMs + WAKE_GRACE_MS);
        return;
      }
      this.#fail(job, this.#nobodyCanServe(job));
      return;
    }
    const target = this.#choose(job, holders);
    if (target !== null) this.#dispatch(job, target, now);
    else if (holders.some((node) => node.isLoaded(job.model))) this.#queue.add(job, now);
    else this.#fail(job, noRoom(job.model, holders));
  }

  #choose(job: Job, holders: FleetNode[]): FleetNode | null {
    if (job.pinned !== null) return job.pinned;
    const warm = this.#affinity.nodeFor(job.prefixKeys);
    const candidates = holders.map((node) => ({ ...node.candidate(job.model), cachesPrompt: node.name === warm }));
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
    if (job.retries > 0) {
      return noCapacity(`Cannot serve the request: the node serving it failed and no other node that holds "${job.model}" is available.`, 2);
    }
    if (job.pinned !== null || heldSomewhere) {
      return noCapacity(`Cannot serve the request: no node that holds "${job.model}" is reachable right now.`, 2);
    }
    // A home machine that is asleep or reconnecting still has the model: "try again" is the truth, not "no such model".
    const offline = this.#registry.offlineHolders(job.model);
    if (offline.length > 0) {
      const wakeFailure = this.#wakes?.failureFor(job.model);
      const why = wakeFailure === undefined ? "" : `; waking failed: ${wakeFailure}`;
      return noCapacity(`Cannot serve the request: no node that holds "${job.model}" is online (offline: ${offline.join(", ")})${why}.`, OFFLINE_RETRY_AFTER_S);
    }
    return modelNotFound(job.model, [...everyModel].sort());
  }

  /** Slots freed or nodes came or went: start whatever waiting requests fit now, oldest first. */
  capacityChanged(): void {
    if (this.#queue.length === 0) return;
    const now = Date.now();
    for (const job of this.#queue.takeAll()) {
      const holders = this.#holders(job, now);
      const target = holders.length === 0 ? null : this.#choose(job, holders);
      if (holders.length === 0 && this.#wakes?.pendingFor(job.model) === true) {
        this.#queue.keep(job);
      } else if (holders.length === 0) {
        this.#queue.leave(job, now);
        this.#fail(job, this.#nobodyCanServe(job));
      } else if (target !== null) {
        this.#dispatch(job, target, now);
      } else if (holders.some((node) => node.isLoaded(job.model))) {
        this.#queue.keep(job);
      } else {
        this.#queue.leave(job, now);
        this.#fail(job, noRoom(job.model, holders));
      }
    }
  }

  #holdsSlot(job: Job): boolean {
    return job.operation.op === "chat" || job.operation.op === "completion" || job.operation.op === "embeddings";
  }

  #dispatch(job: Job, node: FleetNode, now: number): void {
    this.#queue.leave(job, now);
    job.node = node;
    job.attempt += 1;
    if (job.kind === "generation") job.unacked = 0;
    if (this.#holdsSlot(job)) node.acquire(job.model, now);
    this.#affinity.remember(job.prefixKeys, node.name);
    this.#running.set(job.id, job);
    const frame: ToAgentFrame = {
      type: "request",
      id: job.id,
      operation: job.operation,
      ...(job.kind === "generation" ? { window: this.#config.window, stream: "stream" in job.operation.body && job.operation.body.stream === true } : {}),
    };
    // A socket that cannot take the frame is dead: failing the node moves this job elsewhere.
    if (!node.send(frame)) this.#dropNode(node);
  }

  /** Takes the job off its node; returns the node it was on. */
  #detach(job: Job): FleetNode | null {
    const node = job.node;
    if (node !== null && this.#holdsSlot(job)) node.release(job.model);
    job.node = null;
    this.#running.delete(job.id);
    return node;
  }

  // ---- frames from nodes ---------------------------------------------------------------------

  #jobOn(node: FleetNode, id: string): Job | undefined {
    const job = this.#running.get(id);
    // Frames of a cancelled request, or of an attempt that was moved elsewhere, are dropped.
    return job !== undefined && job.node === node ? job : undefined;
  }

  onEvents(node: FleetNode, id: string, events: GenerationEvent[]): void {
    const job = this.#jobOn(node, id);
    if (job === undefined) {
      this.#settlement.finalUsage(node, id, events);
      return;
    }
    if (job.kind !== "generation") {
      // Never leave the caller waiting on an answer that will not come in the shape it needs.
      this.#detach(job);
      this.#fail(job, new ApiError(502, `Node "${node.name}" answered ${job.operation.op} with generation events.`, { code: "bad_node_response" }));
      this.capacityChanged();
      return;
    }
    const lines: Array<{ event: GenerationEvent }> = [];
    let done = false;
    for (const event of throughDone(events)) {
      if (event.type === "start") {
        // A retried request starts again on its new node; the client saw the first start only.
        if (job.startSent) continue;
        job.startSent = true;
        lines.push({ event: event.prompt_tokens === undefined ? event : { ...event, prompt_tokens: boundedPromptTokens(job.operation, event.prompt_tokens) } });
      } else if (event.type === "delta") {
        job.deltaSent = true;
        job.firstTokenAt ??= Date.now();
        lines.push({ event });
      } else {
        const usage = boundedUsage(job.operation, node.model(job.model), event.result.usage);
        lines.push({ event: { type: "done", result: { ...event.result, usage, gateway: this.#gatewayInfo(job, node, event.result) } } });
        done = true;
        const { stats } = event.result;
        // Cut by an unload: the client gets an error (see the API app), and it counts as one, tokens included.
        const cut = endedByUnload(event.result);
        this.#settlement.settled(job, {
          status: cut ? 503 : 200,
          ...(cut ? { failed: true, errorCode: "model_unloaded" } : {}),
          promptTokens: usage.prompt_tokens,
          completionTokens: usage.completion_tokens,
          ttftMs: stats.time_to_first_token * 1000,
          ...(stats.tokens_per_second > 0 ? { tokensPerSecond: stats.tokens_per_second } : {}),
        });
      }
    }
    if (lines.length > 0) job.stream.push(encodeLines(lines), job.attempt);
    else this.#consumed(job, job.attempt);
    if (done) {
      this.#detach(job);
      this.#generations.delete(job.id);
      job.stream.end();
      this.capacityChanged();
    } else if (job.stream.backlog > 2 * this.#config.window) {
      throw new FlowControlViolation(`node "${node.name}" ignored the flow-control window`);
    }
  }

  onResult(node: FleetNode, id: string, result: CallResult): void {
    const job = this.#jobOn(node, id);
    if (job === undefined || job.kind !== "call") return;
    this.#detach(job);
    const parsed = RESULT_SCHEMAS[job.operation.op].safeParse(result);
    if (!parsed.success) {
      this.#fail(job, new ApiError(502, `Node "${node.name}" answered ${job.operation.op} with the wrong kind of result.`, { code: "bad_node_response" }));
    } else if (job.operation.op === "embeddings") {
      const reported = parsed.data as EmbeddingsResult;
      const { prompt_tokens } = boundedUsage(job.operation, undefined, { ...reported.usage, completion_tokens: 0 });
      const embeddings = { ...reported, usage: { prompt_tokens, total_tokens: prompt_tokens } };
      this.#settlement.settled(job, { status: 200, promptTokens: prompt_tokens });
      job.settle({ ok: true, result: { ...embeddings, gateway: this.#gatewayInfo(job, node, null) } });
    } else if (job.operation.op === "count_tokens") {
      this.#settlement.settled(job, { status: 200 });
      job.settle({ ok: true, result: { prompt_tokens: boundedPromptTokens(job.operation, (parsed.data as TokenCount).prompt_tokens) } });
    } else {
      this.#settlement.settled(job, { status: 200 });
      job.settle({ ok: true, result: parsed.data });
    }
    this.capacityChanged();
  }

  onError(node: FleetNode, id: string, error: WireError): void {
    const job = this.#jobOn(node, id);
    if (job === undefined) return;
    this.#detach(job);
    const clean = job.kind === "call" || !job.deltaSent;
    if (error.status === RETRYABLE_STATUS && clean && job.pinned === null && job.retries < this.#config.maxRetries) {
      job.excluded.add(node.id);
      job.retries += 1;
      this.#admit(job);
    } else {
      this.#finish(job, error);
    }
    this.capacityChanged();
  }

  /**
   * The node's socket is gone. Its requests that have not sent text yet move to another node,
   * invisibly; the others end with an error event — never a hang, never a stream that looks complete.
   */
  nodeLost(node: FleetNode): void {
    this.#settlement.nodeLost(node);
    const affected = [...this.#running.values()].filter((job) => job.node === node);
    for (const job of affected) {
      this.#detach(job);
      const clean = job.kind === "call" || !job.deltaSent;
      if (clean && job.pinned === null && job.retries < this.#config.maxRetries) {
        job.excluded.add(node.id);
        job.retries += 1;
        this.#admit(job);
      } else {
        const message = clean
          ? `The node "${node.name}" disconnected before answering.`
          : `The node "${node.name}" disconnected in the middle of the generation; the output is incomplete.`;
        this.#fail(job, new ApiError(502, message, { code: "node_disconnected", type: "server_error" }));
      }
    }
    this.capacityChanged();
  }

  // ---- the client's side ---------------------------------------------------------------------

  #consumed(job: GenerationJob, attempt: number): void {
    if (attempt !== job.attempt || job.node === null) return;
    job.unacked += 1;
    // Credit goes back in batches: one ack frame per quarter window, not one per frame.
    if (job.unacked >= Math.max(1, Math.floor(this.#config.window / 4))) {
      job.node.send({ type: "ack", id: job.id, frames: job.unacked });
      job.unacked = 0;
    }
  }

  #cancel(job: GenerationJob): void {
    if (!this.#generations.has(job.id)) return;
    this.#generations.delete(job.id);
    job.stream.end();
    const node = job.node;
    if (node !== null) {
      // Settled when the node reports what the generation spent: a stream cancelled near its
      // end must count against the caller's token budget, not pass as free.
      this.#settlement.awaitUsage(job, node);
      node.send({ type: "cancel", id: job.id });
      this.#detach(job);
      this.capacityChanged();
      return;
    }
    this.#settlement.settled(job, { status: 499 });
    this.#queue.remove(job, Date.now());
  }

  // ---- endings -------------------------------------------------------------------------------

  #fail(job: Job, error: ApiError): void {
    this.#finish(job, toWire(error));
  }

  #finish(job: Job, error: WireError): void {
    this.#settlement.settled(job, { status: error.status, failed: true, errorCode: error.body.error.code });
    if (job.kind === "generation") {
      this.#generations.delete(job.id);
      job.stream.end(encodeLines([{ error }]));
    }
    else job.settle({ ok: false, error });
  }

  /**
   * `overhead_ms`: the request's time in the fleet minus its wait for a slot and minus the node's
   * own generation time — routing, the WebSocket hops, and the node's time before it started
   * (a JIT load counts). Embeddings report no engine time, so theirs includes the node's work.
   */
  #gatewayInfo(job: Job, node: FleetNode, result: GenerationResult | null): GatewayInfo {
    const total = Date.now() - job.receivedAt;
    const engine = result === null ? 0 : result.stats.generation_time * 1000;
    return {
      node: node.name,
      queue_ms: Math.round(job.queueMs),
      overhead_ms: Math.max(0, Math.round(total - job.queueMs - engine)),
      retries: job.retries,
    };
  }
}

/** Thrown when a node breaks the protocol in a way that only closing its socket can answer. */
export class FlowControlViolation extends Error {
  override name = "FlowControlViolation";
}

