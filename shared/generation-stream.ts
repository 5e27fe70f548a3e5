import { ApiError, toApiError } from "./errors.ts";
import type { GenerationEvent, GenerationResult } from "./schemas/generation.ts";
import { sseResponse } from "./sse.ts";

/** Starts a generation with the request's signal (and, for streams, the stream's own cancel). */
export type RunGeneration = (signal: AbortSignal) => AsyncIterable<GenerationEvent>;

/** How one API family writes a generation as server-sent events. */
export interface StreamEncoder {
  frames(event: GenerationEvent): Uint8Array[] | Promise<Uint8Array[]>;
  /** The generation failed after the 200 went out: the error travels as an event and the stream ends. */
  failure(error: ApiError): Uint8Array[];
}

/** Runs a generation to its end, for an answer sent in one piece. */
export async function collectGeneration(request: Request, run: RunGeneration): Promise<{ text: string; result: GenerationResult }> {
  let text = "";
  for await (const event of run(request.signal)) {
    if (event.type === "delta") text += event.text;
    if (event.type === "done") return { text, result: event.result };
  }
  throw new ApiError(502, "The backend ended the generation without a result.", { code: "incomplete_generation" });
}

/**
 * Answers a generation as an event stream. The first event is awaited before the response
 * starts, so a failure to admit the request (unknown model, no capacity, prompt too long) still
 * gets its proper status instead of a 200 stream that carries an error.
 */
export async function streamGeneration(request: Request, run: RunGeneration, encoder: StreamEncoder): Promise<Response> {
  const abort = new AbortController();
  const events = run(AbortSignal.any([abort.signal, request.signal]))[Symbol.asyncIterator]();
  const first = await events.next();
  let pending: GenerationEvent | undefined = first.done ? undefined : first.value;
  let finished = false;

  return sseResponse(
    async () => {
      if (finished) return null;
      try {
        const event = pending ?? (await nextEvent(events));
        pending = undefined;
        if (event === null) {
          finished = true;
          return encoder.failure(new ApiError(502, "The backend ended the stream without a result.", { code: "incomplete_generation" }));
        }
        if (event.type === "done") finished = true;
        return await encoder.frames(event);
      } catch (error) {
        finished = true;
        return encoder.failure(toApiError(error));
      }
    },
    () => abort.abort(new ApiError(499, "The client closed the connection.", { code: "client_closed" })),
  );
}

async function nextEvent(events: AsyncIterator<GenerationEvent>): Promise<GenerationEvent | null> {
  const next = await events.next();
  return next.done ? null : next.value;
}
