import type { InferenceBackend } from "../../shared/app/inference-backend.ts";
import { ApiError, toApiError } from "../../shared/protocol/api-error.ts";
import { incompleteGeneration, isDone, nextEvent } from "../../shared/protocol/generation-contract.ts";
import { CANCEL_USAGE_WAIT_MS, toWire, type ToAgentFrame, type ToGatewayFrame, type WakeInterface, type WakeResult } from "../../shared/protocol/frames.ts";
import type { GenerationEvent, GenerationResult, TokenLogprob } from "../../shared/protocol/generation-events.ts";
import type { ChatRequest } from "../../shared/protocol/request-schemas.ts";
import type { TokenCount } from "../../shared/protocol/token-count.ts";
import type { ModelAdmin } from "../../shared/model-management/model-admin-backend.ts";
import type { RequestTracer } from "../tracing/request-tracer.ts";

/** The connection a runner answers on. */
export interface FrameChannel {
  /** Sends a frame; does nothing once the connection is gone. */
  send(frame: ToGatewayFrame): void;
  /** Bytes queued in the socket but not yet written to the network. */
  readonly bufferedAmount: number;
}

export interface RequestRunnerOptions {
  source: InferenceBackend & { readonly modelAdmin?: ModelAdmin };
  channel: FrameChannel;
  /** Later deltas are batched for up to this long. Defaults to 16 ms. */
  coalesceMs?: number;
  /** A batch this long (in characters) goes at once. Defaults to 16 Ki. */
  maxBatchChars?: number;
  /** Above this many bytes queued in the socket, pull no more events. Defaults to 1 MiB. */
  highWaterBytes?: number;
  logger?: { warn(message: string): void };
  /** Hears how each request ended, for its spans. */
  tracer?: RequestTracer | null;
  /** Sends a magic packet for another node; absent unless the owner lets this node wake others. */
  wakePeer?: (target: WakeInterface) => Promise<WakeResult>;
}

type RequestFrame = Extract<ToAgentFrame, { type: "request" }>;

/** How a request ended, for its spans. */
interface Ending {
  status: number;
  errorCode?: string | null;
  result?: GenerationResult;
}

interface Running {
  readonly controller: AbortController;
  /** `events` frames the gateway may have unacknowledged (its flow-control window). */
  readonly window: number;
  outstanding: number;
  /** Called when an ack arrives, to resume a paused stream. */
  wake: (() => void) | null;
  /** Cancelled by the gateway (its client went away), which still wants the tokens it cost. */
  cancelledByGateway: boolean;
}

/** The engine is this process's own: a generation it ends without `done` is an internal error. */
const engineEndedEarly = () => incompleteGeneration("The engine", 500);

/** While the socket's buffer stays high there is no event to wait for: look again this often. */
const BUFFER_POLL_MS = 10;

/**
 * Runs the gateway's requests against the local engine, one AbortController per request id
 * (aborted by a `cancel` frame or when the link drops), and sends the answers back: results,
 * errors as `error` frames, and generation events coalesced — the first delta of a streamed
 * request at once (time to first token is what users feel), later ones merged into batches; a
 * non-streamed request's client sees nothing before the end, so a short one goes in one frame.
 * It pulls the next event only while the gateway has granted credit and the socket is draining,
 * so nothing piles up here.
 * A generation the gateway cancels still sends its final `done` (stop reason `userStopped`): the
 * tokens it spent count against the caller's budget, or a stream cancelled near its end is free.
 */
export class RequestRunner {
  readonly #source: RequestRunnerOptions["source"];
  readonly #channel: FrameChannel;
  readonly #coalesceMs: number;
  readonly #maxBatchChars: number;
  readonly #highWaterBytes: number;
  readonly #logger: RequestRunnerOptions["logger"];
  readonly #tracer: RequestTracer | null;
  readonly #wakePeer: RequestRunnerOptions["wakePeer"];
  readonly #running = new Map<string, Running>();

  constructor(options: RequestRunnerOptions) {
    this.#source = options.source;
    this.#channel = options.channel;
    this.#coalesceMs = options.coalesceMs ?? 16;
    this.#maxBatchChars = options.maxBatchChars ?? 16 * 1024;
    this.#highWaterBytes = options.highWaterBytes ?? 1024 * 1024;
    this.#logger = options.logger;
    this.#tracer = options.tracer ?? null;
    this.#wakePeer = options.wakePeer;
  }

  /** Requests running now. */
  get size(): number {
    return this.#running.size;
  }

  handle(frame: Extract<ToAgentFrame, { type: "request" | "cancel" | "ack" }>): void {
    if (frame.type === "request") this.#start(frame);
    else if (frame.type === "cancel") {
      const run = this.#running.get(frame.id);
      if (run === undefined) return;
      run.cancelledByGateway = true;
      run.controller.abort(cancelled("the client went away"));
    }
    else {
      const run = this.#running.get(frame.id);
      if (run === undefined) return;
      run.outstanding = Math.max(0, run.outstanding - frame.frames);
      run.wake?.();
    }
  }

  /** The link dropped: nobody is waiting for these answers any more. */
  abortAll(reason: string): void {
    for (const run of this.#running.values()) run.controller.abort(cancelled(reason));
  }

  #start(frame: RequestFrame): void {
    if (this.#running.has(frame.id)) return;
    const run: Running = {
      controller: new AbortController(),
      window: frame.window ?? Number.POSITIVE_INFINITY,
      outstanding: 0,
      wake: null,
      cancelledByGateway: false,
    };
    this.#running.set(frame.id, run);
    const receivedAt = Date.now();
    void this.#execute(frame, run)
      .then((ending) => this.#traced(frame, receivedAt, ending))
      .finally(() => this.#running.delete(frame.id));
  }

  #traced(frame: RequestFrame, receivedAt: number, ending: Ending): void {
    const { operation } = frame;
    const model = operation.op === "cancel_download" || operation.op === "wake" ? "" : operation.op === "unload" ? (operation.body.instance_id ?? operation.body.model ?? "") : operation.body.model;
    this.#tracer?.finished({ traceparent: frame.traceparent, id: frame.id, op: operation.op, model, receivedAt, endedAt: Date.now(), ...ending });
  }

  /** Runs the request and answers it; says how it ended. */
  async #execute(frame: RequestFrame, run: Running): Promise<Ending> {
    const { id, operation } = frame;
    const signal = run.controller.signal;
    try {
      switch (operation.op) {
        case "chat": {
          const result = await this.#stream(id, run, this.#source.chat(operation.body, signal), streamed(frame, operation.body));
          return { status: 200, result };
        }
        case "completion": {
          const result = await this.#stream(id, run, this.#source.completion(operation.body, signal), streamed(frame, operation.body));
          return { status: 200, result };
        }
        case "embeddings":
          this.#reply(run, { type: "result", id, result: await this.#source.embeddings(operation.body, signal) });
          break;
        case "load":
          this.#reply(run, { type: "result", id, result: await this.#source.loadModel(operation.body) });
          break;
        case "unload":
          this.#reply(run, { type: "result", id, result: await this.#source.unloadModel(operation.body) });
          break;
        case "download":
          this.#reply(run, { type: "result", id, result: await this.#modelAdmin().download(operation.body) });
          break;
        case "cancel_download":
          this.#reply(run, { type: "result", id, result: await this.#modelAdmin().cancelDownload(operation.body.job_id) });
          break;
        case "delete":
          this.#reply(run, { type: "result", id, result: await this.#modelAdmin().deleteModel(operation.body) });
          break;
        case "count_tokens":
          this.#reply(run, { type: "result", id, result: await this.#countTokens(operation.body) });
          break;
        case "wake":
          if (this.#wakePeer === undefined) throw new ApiError(403, "This node does not wake other nodes (start it with --wake-peers).", { code: "wake_not_allowed" });
          this.#reply(run, { type: "result", id, result: await this.#wakePeer(operation.body) });
          break;
      }
      return { status: signal.aborted ? 499 : 200 };
    } catch (error) {
      if (signal.aborted) return { status: 499 };
      const apiError = toApiError(error);
      if (!(error instanceof ApiError)) {
        this.#logger?.warn(`request ${operation.op} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      }
      this.#channel.send({ type: "error", id, ...toWire(apiError) });
      return { status: apiError.status, errorCode: apiError.code };
    }
  }

  #modelAdmin(): ModelAdmin {
    if (this.#source.modelAdmin === undefined) throw new ApiError(501, "This agent does not manage models.", { code: "not_supported" });
    return this.#source.modelAdmin;
  }

  async #countTokens(request: ChatRequest): Promise<TokenCount> {
    const counted = await this.#source.countTokens?.(request);
    if (counted == null) throw new ApiError(501, "This agent does not count tokens.", { code: "not_supported" });
    return counted;
  }

  /** Answers unless the request was cancelled meanwhile. */
  #reply(run: Running, frame: ToGatewayFrame): void {
    if (!run.controller.signal.aborted) this.#channel.send(frame);
  }

  /** `streamed`: the client reads the text as it comes, so the first delta leaves at once. */
  /** Returns the generation's result (its `done`). */
  async #stream(id: string, run: Running, events: AsyncIterable<GenerationEvent>, streamed: boolean): Promise<GenerationResult> {
    const signal = run.controller.signal;
    const iterator = events[Symbol.asyncIterator]();
    let batch: GenerationEvent[] = [];
    /** Deltas of one choice joined until the next flush; a delta of another choice flushes them into the batch. */
    let text = "";
    let index: number | undefined;
    let logprobs: TokenLogprob[] | undefined;
    let firstDeltaSent = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let flushWhenWritable = false;
    /** The pull an abort interrupted: its answer may be the `done` a cancel still reports. */
    let pulling: Promise<GenerationEvent> | undefined;

    const batchText = () => {
      if (text !== "" || logprobs !== undefined) {
        batch.push({ type: "delta", text, ...(index !== undefined ? { index } : {}), ...(logprobs ? { logprobs } : {}) });
      }
      text = "";
      logprobs = undefined;
    };
    const flush = () => {
      clearTimeout(timer);
      timer = undefined;
      flushWhenWritable = false;
      batchText();
      if (batch.length === 0 || signal.aborted) return;
      this.#channel.send({ type: "events", id, events: batch });
      run.outstanding += 1;
      batch = [];
    };
    const flushIfWritable = () => {
      if (this.#writable(run)) flush();
      else flushWhenWritable = true;
    };

    try {
      for (;;) {
        // Backpressure: no credit or a full socket buffer means no pulling from the engine.
        if (!this.#writable(run)) await this.#whenWritable(run);
        if (flushWhenWritable) flush();
        pulling = nextEvent(iterator, engineEndedEarly);
        const event = await untilAborted(pulling, signal);
        pulling = undefined;
        if (event.type === "start") {
          // The first delta usually follows within moments and takes `start` along (one frame
          // fewer per request); a long prompt evaluation still gets it out after `coalesceMs`.
          batch.push(event);
          timer ??= setTimeout(flushIfWritable, this.#coalesceMs);
        } else if (event.type === "delta") {
          if (event.index !== index) batchText();
          index = event.index;
          text += event.text;
          if (event.logprobs) (logprobs ??= []).push(...event.logprobs);
          if (streamed && !firstDeltaSent) {
            firstDeltaSent = true;
            flush();
          } else if (text.length >= this.#maxBatchChars) flushIfWritable();
          else timer ??= setTimeout(flushIfWritable, this.#coalesceMs);
        } else {
          // `done`: the request ends here, and the engine is not pulled again.
          batchText();
          batch.push(event);
          flush();
          return event.result;
        }
      }
    } catch (error) {
      if (run.cancelledByGateway) await this.#sendFinalUsage(id, iterator, pulling);
      throw error;
    } finally {
      clearTimeout(timer);
      // Lets the engine clean up: after `done`, and when we leave early (cancel, link lost, an
      // error), where it stops the generation.
      void Promise.resolve(iterator.return?.()).catch(() => undefined);
    }
  }

  /** Skips the text the client will not read, up to the engine's `done`, and sends that alone. */
  async #sendFinalUsage(
    id: string,
    iterator: AsyncIterator<GenerationEvent>,
    pulling: Promise<GenerationEvent> | undefined,
  ): Promise<void> {
    const deadline = AbortSignal.timeout(CANCEL_USAGE_WAIT_MS);
    try {
      for (;;) {
        const event = await untilAborted(pulling ?? nextEvent(iterator, engineEndedEarly), deadline);
        pulling = undefined;
        if (isDone(event)) {
          this.#channel.send({ type: "events", id, events: [event] });
          return;
        }
      }
    } catch {
      // An engine that fails, ends without `done` or overruns the wait has nothing to report; the
      // gateway counts the request without tokens when no `done` comes.
    }
  }

  #writable(run: Running): boolean {
    return run.outstanding < run.window && this.#channel.bufferedAmount < this.#highWaterBytes;
  }

  #whenWritable(run: Running): Promise<void> {
    const signal = run.controller.signal;
    return new Promise<void>((resolve, reject) => {
      let poll: ReturnType<typeof setTimeout> | undefined;
      const finish = (error?: unknown) => {
        clearTimeout(poll);
        run.wake = null;
        signal.removeEventListener("abort", onAbort);
        if (error === undefined) resolve();
        else reject(error);
      };
      const check = () => {
        if (this.#writable(run)) finish();
        else if (run.outstanding < run.window) poll = setTimeout(check, BUFFER_POLL_MS);
      };
      const onAbort = () => finish(signal.reason);
      if (signal.aborted) return finish(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      run.wake = () => {
        clearTimeout(poll);
        check();
      };
      check();
    });
  }
}

/** Whether the client reads the text as it comes. An older gateway's frame does not say; its body does. */
const streamed = (frame: RequestFrame, body: { stream?: boolean | null | undefined }) => frame.stream ?? body.stream === true;

const cancelled = (why: string) => new ApiError(499, `Cancelled: ${why}.`, { code: "cancelled" });

/** Stops waiting on an engine that does not react to its abort signal promptly. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
