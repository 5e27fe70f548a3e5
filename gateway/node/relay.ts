import { ApiError } from "../../shared/protocol/api-error.ts";
import { doneFailure, isDone, throughDone } from "../../shared/protocol/generation-contract.ts";
import { CANCEL_USAGE_WAIT_MS, toWire, type ToAgentFrame, type WireError } from "../../shared/protocol/frames.ts";
import type { GatewayInfo, GenerationEvent, GenerationResult } from "../../shared/protocol/generation-events.ts";
import { cachedTokensOf, type Ending } from "../fleet/routing/settlement.ts";
import { boundedNodeError } from "../fleet/routing/node-claims.ts";
import { boundedPromptTokens, boundedUsage } from "../fleet/routing/usage-bounds.ts";
import { encodeLines, type Lease, type RelayLine } from "./node-contract.ts";
import { RelayStream } from "./relay-stream.ts";

/** Agents answering 503 (their own queue is full, say) are worth another node's try. */
const RETRYABLE_STATUS = 503;

/**
 * How long a cancelled generation's node has to report the tokens it spent: the agent's own wait
 * for its engine, plus the trip. Past it, or when the node goes, the request counts without tokens.
 */
export const FINAL_USAGE_WAIT_MS = CANCEL_USAGE_WAIT_MS + 3_000;

export interface RelayHooks {
  /** Sends a frame to the node; false when its socket cannot take it. */
  send(frame: ToAgentFrame): boolean;
  /** The attempt ended for good: the Fleet's books hear it once (resolved once they have). */
  settle(ending: Ending): Promise<void>;
  /** The relay is over (ended and, if cancelled, settled): forget it. */
  finished(): void;
}

/** Thrown when a node breaks the protocol in a way that only closing its socket can answer. */
export class FlowControlViolation extends Error {
  override name = "FlowControlViolation";
}

/**
 * One attempt of one generation on this node: the node's events, bounded and completed with the
 * gateway's info, become lines of the Worker's byte stream; credit goes back as the Worker reads;
 * a cancel reaches the node and waits for what it spent. Its end is settled once.
 */
export class Relay {
  readonly lease: Lease;
  readonly #stream: RelayStream;
  readonly #hooks: RelayHooks;
  #unacked = 0;
  #deltaSent = false;
  #firstTokenAt: number | null = null;
  #ended = false;
  /** Set once cancelled: waiting for the node's final `done`. */
  #cancel: { at: number; timer: ReturnType<typeof setTimeout> } | null = null;

  constructor(lease: Lease, hooks: RelayHooks) {
    this.lease = lease;
    this.#hooks = hooks;
    this.#stream = new RelayStream({ onConsumed: () => this.#consumed(), onCancel: () => this.cancel() });
  }

  get readable(): ReadableStream<Uint8Array> {
    return this.#stream.readable;
  }

  /** Asks the node to run it; false when the socket is gone (the relay has then ended). */
  start(): boolean {
    const { id, operation, window, stream, origin } = this.lease;
    if (this.#hooks.send({ type: "request", id, operation, window, stream, ...(origin?.traceparent ? { traceparent: origin.traceparent } : {}) })) return true;
    this.lost();
    return false;
  }

  onEvents(events: GenerationEvent[]): void {
    if (this.#cancel !== null) {
      const done = events.find(isDone);
      if (done !== undefined) this.#settleCancelled(done.result);
      return;
    }
    if (this.#ended) return;
    const lines: Array<{ event: GenerationEvent }> = [];
    let done: GenerationResult | null = null;
    for (const event of throughDone(events)) {
      if (event.type === "start") {
        lines.push({ event: event.prompt_tokens === undefined ? event : { ...event, prompt_tokens: boundedPromptTokens(this.lease.operation, event.prompt_tokens) } });
      } else if (event.type === "delta") {
        this.#deltaSent = true;
        this.#firstTokenAt ??= Date.now();
        lines.push({ event });
      } else {
        const usage = boundedUsage(this.lease.operation, this.lease.model, event.result.usage);
        done = { ...event.result, usage, gateway: this.#gatewayInfo(event.result) };
        lines.push({ event: { type: "done", result: done } });
      }
    }
    if (done === null) {
      if (lines.length > 0) this.#stream.push(encodeLines(lines), this.lease.attempt);
      else this.#consumed();
    }
    if (done !== null) {
      const { stats, usage } = done;
      // Cut by an unload: the client gets an error (see the API app), and it counts as one, tokens included.
      const failure = doneFailure(done, this.lease.operation.body.model);
      this.#ended = true;
      // The last frame waits for the Fleet's books: a client that saw `done` finds its usage counted.
      const settled = this.#settle({
        status: failure?.status ?? 200,
        ...(failure ? { failed: true, errorCode: failure.code } : {}),
        promptTokens: usage.prompt_tokens,
        cachedTokens: cachedTokensOf(usage, done),
        completionTokens: usage.completion_tokens,
        ttftMs: stats.time_to_first_token * 1000,
        ...(stats.tokens_per_second > 0 ? { tokensPerSecond: stats.tokens_per_second } : {}),
      });
      void settled.finally(() => {
        this.#stream.push(encodeLines(lines));
        this.#stream.end();
        this.#hooks.finished();
      });
    } else if (this.#stream.backlog > 2 * this.lease.window) {
      throw new FlowControlViolation("the node ignored the flow-control window");
    }
  }

  /** The node failed it: a 503 before any text is the Worker's to move elsewhere; anything else ends it. */
  onError(claimed: WireError): void {
    if (this.#ended) return;
    const error = boundedNodeError(claimed);
    if (error.status === RETRYABLE_STATUS && !this.#deltaSent) this.#end({ error, retryable: true }, null);
    else this.#end({ error }, { status: error.status, failed: true, errorCode: error.body.error.code });
  }

  /** The node's connection is gone (or this object lost it): moved elsewhere before any text, an error after. */
  lost(): void {
    if (this.#cancel !== null) {
      this.#settleCancelled(null);
      return;
    }
    if (this.#ended) return;
    const name = this.lease.node;
    const message = this.#deltaSent
      ? `The node "${name}" disconnected in the middle of the generation; the output is incomplete.`
      : `The node "${name}" disconnected before answering.`;
    const error = toWire(new ApiError(502, message, { code: "node_disconnected", type: "server_error" }));
    if (this.#deltaSent) this.#end({ error }, { status: 502, failed: true, errorCode: "node_disconnected" });
    else this.#end({ error, retryable: true }, null);
  }

  /**
   * The client went away. Settled when the node reports what the generation spent: a stream
   * cancelled near its end must count against the caller's token budget, not pass as free.
   */
  cancel(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#stream.end();
    this.#cancel = { at: Date.now(), timer: setTimeout(() => this.#settleCancelled(null), FINAL_USAGE_WAIT_MS) };
    this.#hooks.send({ type: "cancel", id: this.lease.id });
  }

  #settleCancelled(result: GenerationResult | null): void {
    const cancel = this.#cancel;
    if (cancel === null) return;
    clearTimeout(cancel.timer);
    this.#cancel = null;
    const usage = result === null ? null : boundedUsage(this.lease.operation, this.lease.model, result.usage);
    void this.#settle({
      status: 499,
      endedAt: cancel.at,
      ...(usage === null || result === null ? {} : { promptTokens: usage.prompt_tokens, cachedTokens: cachedTokensOf(usage, result), completionTokens: usage.completion_tokens }),
    });
    this.#hooks.finished();
  }

  /**
   * Ends the Worker's stream with its last line, once the request is settled; unsettled when the
   * Worker moves the request on (`ending` null).
   */
  #end(last: RelayLine, ending: Ending | null): void {
    this.#ended = true;
    const settled = ending === null ? Promise.resolve() : this.#settle(ending);
    void settled.finally(() => {
      this.#stream.end(encodeLines([last]));
      this.#hooks.finished();
    });
  }

  #settle(ending: Ending): Promise<void> {
    return this.#hooks.settle({ ...ending, firstTokenAt: this.#firstTokenAt });
  }

  #consumed(): void {
    if (this.#ended) return;
    this.#unacked += 1;
    // Credit goes back in batches: one ack frame per quarter window, not one per frame.
    if (this.#unacked >= Math.max(1, Math.floor(this.lease.window / 4))) {
      this.#hooks.send({ type: "ack", id: this.lease.id, frames: this.#unacked });
      this.#unacked = 0;
    }
  }

  /**
   * `overhead_ms`: the request's time in the gateway minus its wait for a slot and minus the node's
   * own generation time: routing, the hops, and the node's time before it started (a JIT load counts).
   */
  #gatewayInfo(result: GenerationResult): GatewayInfo {
    const total = Date.now() - this.lease.receivedAt;
    const engine = result.stats.generation_time * 1000;
    return {
      node: this.lease.node,
      queue_ms: Math.round(this.lease.queueMs),
      overhead_ms: Math.max(0, Math.round(total - this.lease.queueMs - engine)),
      retries: this.lease.retries,
    };
  }
}
