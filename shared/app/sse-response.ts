const encoder = new TextEncoder();

export const sseData = (value: unknown): Uint8Array => encoder.encode(`data: ${JSON.stringify(value)}\n\n`);

/** A comment line: clients skip it; it keeps a connection that waits from looking idle. */
export const sseComment = (text: string): Uint8Array => encoder.encode(`: ${text}\n\n`);

export const SSE_DONE = encoder.encode("data: [DONE]\n\n");

/**
 * Serves a pull-driven event stream: each pull asks the producer for the next frames, so a slow
 * client slows generation instead of growing a buffer, and a client that goes away cancels it.
 */
export function sseResponse(pull: () => Promise<Uint8Array[] | null>, onCancel: () => void): Response {
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let frames = await pull();
      // A pull that enqueues nothing is not called again: ask until there is something to send.
      while (frames !== null && frames.length === 0) frames = await pull();
      if (frames === null) {
        controller.close();
        return;
      }
      for (const frame of frames) controller.enqueue(frame);
    },
    cancel: onCancel,
  });
  return new Response(body, {
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
    },
  });
}

/** A named event (`event:` line first), as Anthropic's and the Responses API's clients expect. */
export const sseEvent = (name: string, value: unknown): Uint8Array => encoder.encode(`event: ${name}\ndata: ${JSON.stringify(value)}\n\n`);
