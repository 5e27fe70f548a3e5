import { ApiError, cutByUnload } from "./api-error.ts";
import type { GenerationEvent, GenerationResult } from "./generation-events.ts";

/**
 * The generation-stream contract: the rules every producer and consumer of a chat or completion
 * follows, from the engine through the agent's runner, the Fleet and the Worker to the API app.
 *
 * - A generation is a stream of `GenerationEvent`s: `start`, `delta`s, then exactly one `done`
 *   carrying the result (usage, stats). A failure is thrown, never an event.
 * - The request ends at `done`. A consumer stops pulling once it has `done` (it may close the
 *   source, it never waits for the iteration to finish), so a producer releases what the request
 *   holds (a slot, a model lease, its end in the metrics) as `done` goes by (`atDone`): code after
 *   its last `yield` may run late or never.
 * - A stream that ends without `done` is incomplete: its text may stop anywhere, so it is an error
 *   (`incompleteGeneration`), never a finished answer.
 * - A `done` whose generation was cut by its model's unload still counts its tokens, but its text
 *   is incomplete: it ends the request as an error (`doneFailure`), never as a finished answer.
 */

export type DoneEvent = Extract<GenerationEvent, { type: "done" }>;

export const isDone = (event: GenerationEvent): event is DoneEvent => event.type === "done";

/** True for the result of a generation its model's unload (or a shutdown past its timeout) cut short. */
export const endedByUnload = (result: GenerationResult): boolean => result.stats.stop_reason === "modelUnloaded";

/**
 * The error a request whose generation ended with `result` ends as, or undefined when it finished:
 * one cut short by its model's unload is a 503 `model_unloaded`. The API's answer, the gateway's
 * books and the agent's metrics all read the end of a generation here.
 */
export function doneFailure(result: GenerationResult, model: string): ApiError | undefined {
  return endedByUnload(result) ? cutByUnload(model) : undefined;
}

/**
 * The error of a generation that ended without `done`. `by` names whoever ended it; `status` is 500
 * where that was this process's own engine, 502 (the default) where it was a backend further away.
 */
export function incompleteGeneration(by = "The backend", status: 500 | 502 = 502): ApiError {
  return new ApiError(status, `${by} ended the generation without a result.`, { code: "incomplete_generation" });
}

/** Makes the error for a source that ended before its `done`. */
export type Incomplete = () => Error;

/**
 * The next event, for consumers that pull by hand (and stop at `done`): a source that ends
 * here, before its `done`, throws `incomplete()`.
 */
export async function nextEvent(events: AsyncIterator<GenerationEvent>, incomplete: Incomplete = incompleteGeneration): Promise<GenerationEvent> {
  const next = await events.next();
  if (next.done) throw incomplete();
  return next.value;
}

/**
 * The generation as the contract has it, for `for await` and `yield*`: `events` up to and
 * including their `done`, after which the source is closed, never pulled again. A source that
 * ends before its `done` throws `incomplete()`.
 */
export async function* untilDone(events: AsyncIterable<GenerationEvent>, incomplete: Incomplete = incompleteGeneration): AsyncGenerator<GenerationEvent> {
  for await (const event of events) {
    yield event;
    if (isDone(event)) return;
  }
  throw incomplete();
}

/**
 * For producers: passes `events` through and calls `release` as their `done` goes by, before it is
 * handed on, since the consumer may never pull again. Ending any other way (an error, a consumer
 * that leaves early) is the producer's own `finally`.
 */
export async function* atDone(events: AsyncIterable<GenerationEvent>, release: (done: DoneEvent) => void): AsyncGenerator<GenerationEvent> {
  for await (const event of events) {
    if (isDone(event)) release(event);
    yield event;
  }
}

/** The events of one batch (an `events` frame) up to and including the first `done`: what follows it is not part of the generation. */
export function throughDone(events: readonly GenerationEvent[]): readonly GenerationEvent[] {
  const done = events.findIndex(isDone);
  return done === -1 ? events : events.slice(0, done + 1);
}
