import { toApiError, type ApiError } from "../protocol/api-error.ts";

const encoder = new TextEncoder();
const SPACE = encoder.encode(" ");

/**
 * A JSON answer that takes a while (a non-streamed generation), sent as 200 at once with a space
 * every `pulseMs` until the body is ready: JSON allows whitespace before a value, and writing is
 * how a server behind a proxy (workerd under `wrangler dev`, where `request.signal` never fires)
 * learns that its client has gone, so `onCancel` can stop the work. `content-encoding: identity`
 * keeps Cloudflare's compression of JSON (and wrangler's copy of it) off this body: a compressor
 * holds single spaces back, and the client's absence would go unnoticed. A failure after this
 * point can no longer change the status: it is sent as the error body.
 */
export function heldJsonResponse(
  body: Promise<unknown>,
  pulseMs: number,
  errorBody: (error: ApiError) => unknown,
  onCancel: () => void,
): Response {
  let timer: ReturnType<typeof setInterval> | undefined;
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      const enqueue = (bytes: Uint8Array) => {
        try {
          controller.enqueue(bytes);
        } catch {
          // the client went away meanwhile: cancel() stops the work
        }
      };
      timer = setInterval(() => enqueue(SPACE), pulseMs);
      void body
        .then(
          (value) => JSON.stringify(value),
          (error: unknown) => JSON.stringify(errorBody(toApiError(error))),
        )
        .then((text) => {
          clearInterval(timer);
          enqueue(encoder.encode(text));
          try {
            controller.close();
          } catch {
            // already cancelled
          }
        });
    },
    cancel() {
      clearInterval(timer);
      onCancel();
    },
  });
  return new Response(stream, { headers: { "content-type": "application/json", "content-encoding": "identity" } });
}
