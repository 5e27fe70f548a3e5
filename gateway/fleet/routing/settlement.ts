import type { Operation } from "../../../shared/protocol/frames.ts";
import type { SettledRequest } from "../../node/node-contract.ts";
import type { GenerationResult, Usage } from "../../../shared/protocol/generation-events.ts";
import type { RequestOrigin } from "../access/caller.ts";
import type { Job } from "./job.ts";

/** What the settlement says of a job the Fleet still has. */
export const requestOf = (job: Job): SettledRequest => ({
  op: job.operation.op,
  model: job.model,
  caller: job.caller,
  receivedAt: job.receivedAt,
  origin: job.origin,
  node: job.lastNode,
  queueMs: job.queueMs,
  retries: job.retries,
});

/** Prompt tokens the node found in its cache, as the usage or (older agents) the stats say; never more than the prompt. */
export const cachedTokensOf = (usage: Usage, result: GenerationResult | null): number =>
  Math.min(usage.prompt_tokens, usage.prompt_tokens_details?.cached_tokens ?? result?.stats.cached_prompt_tokens ?? 0);

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
  /** When its first text went to the client (`Date.now()`), for the gateway's time to first token. */
  firstTokenAt?: number | null;
}

export type SettleObserver = (job: SettledJob) => void;

/**
 * How requests end for the Fleet's books: each job settles once, handed to the observer (the
 * Fleet's accounting). A generation's end is reported by its node object (a cancelled one once
 * the node said what it spent), or by the Worker when that object was gone.
 */
export class Settlement {
  readonly #onSettled: SettleObserver;

  constructor(onSettled: SettleObserver) {
    this.#onSettled = onSettled;
  }

  /** The job ended (each job ends once): the Fleet hears how, for accounting, charts and metrics. */
  settled(job: Job, ending: Ending): void {
    this.settledRequest(job.id, requestOf(job), ending);
  }

  /** A request the Fleet knows only from its settlement (it was evicted while the request ran). */
  settledRequest(id: string, job: SettledRequest, ending: Ending): void {
    const firstTokenAt = ending.firstTokenAt ?? null;
    this.#onSettled({
      id,
      op: job.op,
      model: job.model,
      caller: job.caller,
      origin: job.origin,
      node: job.node,
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
}
