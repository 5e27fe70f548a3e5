import type { Context, Env } from "hono";
import type { InferenceBackend } from "./inference-backend.ts";
import { errorBodyFor } from "./error-response.ts";
import { ApiError, toApiError } from "../protocol/api-error.ts";
import { doneFailure, isDone, nextEvent } from "../protocol/generation-contract.ts";
import { heldJsonResponse } from "./held-json.ts";
import type { GenerationEvent, GenerationResult } from "../protocol/generation-events.ts";
import { sseComment, sseResponse } from "./sse-response.ts";

/** Starts a generation with the request's signal (and, for streams, the stream's own cancel). */
export type RunGeneration = (signal: AbortSignal) => AsyncIterable<GenerationEvent>;

/** What every family's generation routes are given by the app. */
export interface GenerationRouteOptions<E extends Env> {
  backend: (c: Context<E>) => InferenceBackend;
  /** See `answerGeneration`. */
  pulseMs?: number;
  /** See `streamGeneration`: for this request, how long a stream waits silently for its first event. */
  keepAliveMs?: (c: Context<E>) => number | undefined;
}

/** How one API family writes a generation as server-sent events. */
export interface StreamEncoder {
  frames(event: GenerationEvent): Uint8Array[] | Promise<Uint8Array[]>;
  /** The generation failed after the 200 went out: the error travels as an event and the stream ends. */
  failure(error: ApiError): Uint8Array[];
}

/** Makes an answer's body from a finished generation: its text and its result. */
export type BodyOf<T = unknown> = (text: string, result: GenerationResult) => T;

/** How a generation is answered: as one JSON body, or as a stream of events. */
export type GenerationEncoding = { json: BodyOf } | { stream: StreamEncoder };

/**
 * Answers a generation in its encoding, with the host's timing: `pulseMs` for a JSON body (see
 * `jsonGeneration`), `keepAliveMs` for a stream (see `streamGeneration`).
 */
export function answerGeneration<E extends Env>(
  c: Context<E>,
  run: RunGeneration,
  encoding: GenerationEncoding,
  { pulseMs, keepAliveMs }: Pick<GenerationRouteOptions<E>, "pulseMs" | "keepAliveMs">,
): Promise<Response> {
  return "stream" in encoding ? streamGeneration(c.req.raw, run, encoding.stream, keepAliveMs?.(c)) : jsonGeneration(c, run, encoding.json, pulseMs);
}

/**
 * How long a non-streamed answer may take after its first token before it is held open (see
 * `heldJsonResponse`): a short answer, or a failure soon after the first token, keeps its own status.
 */
const HOLD_AFTER_MS = 500;

/**
 * Answers a generation with one JSON body, made by `toBody` from its text and result.
 * `pulseMs` is for hosts that learn of a client that left only by writing to it: a generation
 * still running `HOLD_AFTER_MS` after its first token answers 200 and is watched from then on.
 */
async function jsonGeneration(
  c: Context,
  run: RunGeneration,
  toBody: BodyOf,
  pulseMs: number | undefined,
): Promise<Response> {
  const abort = new AbortController();
  const events = throwDoneFailure(run(AbortSignal.any([abort.signal, c.req.raw.signal])));
  let text = "";
  /** The body once the result is in; or TEXT_STARTED at the first text, when `untilText`. */
  const read = async (untilText: boolean): Promise<unknown> => {
    for (;;) {
      const event = await nextEvent(events);
      if (event.type === "delta") text += event.text;
      if (isDone(event)) return await toBody(text, event.result);
      if (event.type === "delta" && untilText) return TEXT_STARTED;
    }
  };
  if (pulseMs === undefined) return Response.json(await read(false));
  // Until text comes, a failure keeps its own status (failover, capacity).
  const early = await read(true);
  if (early !== TEXT_STARTED) return Response.json(early);
  const rest = read(false);
  const settledSoon = await Promise.race([
    rest.then(
      () => true,
      () => true,
    ),
    new Promise<false>((resolve) => setTimeout(() => resolve(false), HOLD_AFTER_MS)),
  ]);
  if (settledSoon) return Response.json(await rest);
  return heldJsonResponse(rest, pulseMs, (error) => errorBodyFor(c.req.matchedRoutes, error), () => cancel(abort, events));
}

const TEXT_STARTED = Symbol("text started");

/**
 * Answers a generation as an event stream. The first event is awaited before the response
 * starts, so a failure to admit the request (unknown model, no capacity, prompt too long) still
 * gets its proper status instead of a 200 stream that carries an error. With `keepAliveMs`, for
 * hosts where the first event may be long in coming (a gateway's queue, a node being woken): once
 * it has not come within that, the 200 goes out with a comment line, and another follows every
 * `keepAliveMs` until it comes, so clients and proxies do not give up on a silent connection (SDKs
 * skip comments); a failure from then on is the family's error event.
 */
async function streamGeneration(request: Request, run: RunGeneration, encoder: StreamEncoder, keepAliveMs: number | undefined): Promise<Response> {
  const abort = new AbortController();
  const events = throwDoneFailure(run(AbortSignal.any([abort.signal, request.signal])));
  const firstEvent = events.next();
  // Awaited later, or never when the client leaves during the wait: its failure is then nobody's.
  firstEvent.catch(() => undefined);
  const first = keepAliveMs === undefined ? await firstEvent : await within(firstEvent, keepAliveMs);
  /** The first event, while the client is kept waiting for it with comments. */
  let waiting = first === STILL_WAITING ? firstEvent : null;
  let pending: GenerationEvent | undefined = first === STILL_WAITING || first.done ? undefined : first.value;
  /** At `done` or a failure: nothing more is pulled (the request ends at `done`, see protocol/generation-contract.ts). */
  let finished = false;

  return sseResponse(
    async () => {
      if (finished) return null;
      try {
        if (waiting !== null && keepAliveMs !== undefined) {
          const came = await within(waiting, keepAliveMs);
          if (came === STILL_WAITING) return [KEEP_ALIVE];
          waiting = null;
          pending = came.done ? undefined : came.value;
        }
        const event = pending ?? (await nextEvent(events));
        pending = undefined;
        if (isDone(event)) finished = true;
        return await encoder.frames(event);
      } catch (error) {
        finished = true;
        return encoder.failure(toApiError(error));
      }
    },
    () => cancel(abort, events),
  );
}

const KEEP_ALIVE = sseComment("waiting for a node to take this request");
const STILL_WAITING = Symbol("still waiting");

/** What `promise` resolves to if it does within `ms`, else STILL_WAITING (it goes on). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | typeof STILL_WAITING> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([promise, new Promise<typeof STILL_WAITING>((resolve) => (timer = setTimeout(() => resolve(STILL_WAITING), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A generation whose `done` is a failure (its model's unload cut it short) ends as that error: its
 * text is incomplete, and a clean finish would pass it off as the whole answer.
 */
async function* throwDoneFailure(events: AsyncIterable<GenerationEvent>): AsyncGenerator<GenerationEvent> {
  let model = "";
  for await (const event of events) {
    if (event.type === "start") model = event.model;
    const failure = isDone(event) ? doneFailure(event.result, model) : undefined;
    if (failure) throw failure;
    yield event;
  }
}

/** The client left: the generation is aborted and still ends with what it spent. */
function cancel(abort: AbortController, events: AsyncIterator<GenerationEvent>): void {
  abort.abort(new ApiError(499, "The client closed the connection.", { code: "client_closed" }));
  // Pulled to its end: a generator suspended at a `yield` would never run its cleanup (metrics,
  // the slot), and the aborted generation still ends with what it spent.
  void drain(events);
}

async function drain(events: AsyncIterator<GenerationEvent>): Promise<void> {
  try {
    while (!(await events.next()).done);
  } catch {
    // an aborted generation may end by throwing
  }
}
