import { isDone } from "../../../shared/generation-contract.ts";
import { CANCEL_USAGE_WAIT_MS, type Operation } from "../../../shared/protocol.ts";
import type { GenerationEvent, GenerationResult, Usage } from "../../../shared/schemas/generation.ts";
import type { RequestOrigin } from "../access/caller.ts";
import type { FleetNode } from "../nodes/fleet-node.ts";
import type { GenerationJob, Job } from "./job.ts";
import { boundedUsage } from "./usage-bounds.ts";

/** What the Fleet learns when a request ends, whichever way it ends: for accounting, charts and metrics. */
export interface SettledJob {
  /** The request id (a generation's is its handle's). */
  readonly id: string;
  readonly op: Operation["op"];
  readonly model: string;
  /** Whose request it was (an API key id), as given to `generate`/`call`. */
  readonly caller: string | null;
  /** The route it came through and its trace, when the Worker said. */
  readonly origin: RequestOrigin | null;
  /** The node it was last sent to; null when it reached none. */
  readonly node: string | null;
  /** When it arrived in the fleet (`Date.now()`). */
  readonly receivedAt: number;
  /** The HTTP status it ended with: 200, the error's status, or 499 when the client went away first. */
  readonly status: number;
  /** The error's code (e.g. `model_not_found`) when it failed. */
  readonly errorCode: string | null;
  readonly promptTokens: number;
  /** Of the prompt tokens, those the node's cache already held. */
  readonly cachedTokens: number;
  readonly completionTokens: number;
  /** Time spent waiting for a slot. */
  readonly queueMs: number;
  /** Times it moved to another node after its node failed it. */
  readonly retries: number;
  /** The node's own time to first token, as its engine measured it. */
  readonly ttftMs: number | null;
  /** From arrival in the fleet to the first token relayed: queueing, routing and both hops on top of the node's. */
  readonly firstTokenMs: number | null;
  /** From arrival in the fleet to the end. */
  readonly durationMs: number;
  /** Decode speed the node measured; null when it measured none. */
  readonly tokensPerSecond: number | null;
  readonly failed: boolean;
}

/**
 * The model a settled request is filed under in usage and metrics. A name no node holds is the
 * caller's to choose, up to a body's size: it never becomes a row or a series of its own.
 */
export const recordedModel = (job: SettledJob): string => (job.errorCode === "model_not_found" ? "unknown" : job.model);

/** Prompt tokens the node found in its cache, as the usage or (older agents) the stats say; never more than the prompt. */
export const cachedTokensOf = (usage: Usage, result: GenerationResult | null): number =>
  Math.min(usage.prompt_tokens, usage.prompt_tokens_details?.cached_tokens ?? result?.stats.cached_prompt_tokens ?? 0);

/** How a request ended, as `settled` is told it; the rest of a `SettledJob` comes from the job. */
export interface Ending {
  status: number;
  failed?: boolean;
  errorCode?: string | null;
  promptTokens?: number;
  cachedTokens?: number;
  completionTokens?: number;
  ttftMs?: number;
  tokensPerSecond?: number;
  /** When the request ended for its client (`Date.now()`), if not now. */
  endedAt?: number;
}

/** A generation cancelled on its node, waiting for the node's final `done` with what it spent. */
interface Cancelled {
  readonly job: GenerationJob;
  readonly node: FleetNode;
  readonly at: number;
  readonly timer: ReturnType<typeof setTimeout>;
}

export type SettleObserver = (job: SettledJob) => void;

/**
 * How long a cancelled generation's node has to report the tokens it spent: the agent's own wait
 * for its engine, plus the trip. Past it, or when the node goes, the request counts without tokens.
 */
const FINAL_USAGE_WAIT_MS = CANCEL_USAGE_WAIT_MS + 3_000;

/**
 * How requests end for the Fleet's books: each job settles once, handed to the observer (the
 * Fleet's accounting). A generation cancelled on its node settles only when the node reports
 * the tokens it spent, or without them when the wait runs out or the node goes.
 */
export class Settlement {
  readonly #onSettled: SettleObserver;
  /** Generations cancelled on a node, by request id, until their usage arrives. */
  readonly #cancelled = new Map<string, Cancelled>();

  constructor(onSettled: SettleObserver) {
    this.#onSettled = onSettled;
  }

  /** The job ended (each job ends once): the Fleet hears how, for accounting, charts and metrics. */
  settled(job: Job, ending: Ending): void {
    const firstTokenAt = job.kind === "generation" ? job.firstTokenAt : null;
    this.#onSettled({
      id: job.id,
      op: job.operation.op,
      model: job.model,
      caller: job.caller,
      origin: job.origin,
      node: job.lastNode,
      receivedAt: job.receivedAt,
      status: ending.status,
      errorCode: ending.errorCode ?? null,
      promptTokens: ending.promptTokens ?? 0,
      cachedTokens: ending.cachedTokens ?? 0,
      completionTokens: ending.completionTokens ?? 0,
      queueMs: job.queueMs,
      retries: job.retries,
      ttftMs: ending.ttftMs ?? null,
      firstTokenMs: firstTokenAt === null ? null : firstTokenAt - job.receivedAt,
      durationMs: (ending.endedAt ?? Date.now()) - job.receivedAt,
      tokensPerSecond: ending.tokensPerSecond ?? null,
      failed: ending.failed ?? false,
    });
  }

  /** `job` was cancelled on `node`: it settles when the node reports what it spent. */
  awaitUsage(job: GenerationJob, node: FleetNode): void {
    const timer = setTimeout(() => this.#settleCancelled(job.id, null), FINAL_USAGE_WAIT_MS);
    this.#cancelled.set(job.id, { job, node, at: Date.now(), timer });
  }

  /** Events of a request no longer running: a cancelled generation's final `done` says what it spent. */
  finalUsage(node: FleetNode, id: string, events: GenerationEvent[]): void {
    if (this.#cancelled.get(id)?.node !== node) return;
    const done = events.find(isDone);
    if (done !== undefined) this.#settleCancelled(id, done.result);
  }

  /** The node is gone: what was cancelled on it counts without tokens. */
  nodeLost(node: FleetNode): void {
    for (const [id, cancelled] of this.#cancelled) {
      if (cancelled.node === node) this.#settleCancelled(id, null);
    }
  }

  #settleCancelled(id: string, result: GenerationResult | null): void {
    const cancelled = this.#cancelled.get(id);
    if (cancelled === undefined) return;
    clearTimeout(cancelled.timer);
    this.#cancelled.delete(id);
    const usage = result === null ? null : boundedUsage(cancelled.job.operation, cancelled.node.model(cancelled.job.model), result.usage);
    this.settled(cancelled.job, {
      status: 499,
      endedAt: cancelled.at,
      ...(usage === null ? {} : { promptTokens: usage.prompt_tokens, cachedTokens: cachedTokensOf(usage, result), completionTokens: usage.completion_tokens }),
    });
  }
}
