import { MAX_BATCH_FRAMES, type EventsFrame, type ToGatewayFrame } from "../../shared/protocol/frames.ts";

/**
 * One WebSocket message per flush for all running generations (protocol 2): `events` frames
 * ready in the same turn of the event loop leave together as one `batch`, so many streams cost
 * the gateway one message each flush rather than one per stream. Nothing waits for a timer: the
 * batch leaves at the end of the turn, so a stream's first token is not held back. Any other
 * frame sends what is batched first, so frames keep their order.
 */
export class FrameBatcher {
  readonly #send: (frame: ToGatewayFrame) => void;
  #pending: EventsFrame[] = [];

  constructor(send: (frame: ToGatewayFrame) => void) {
    this.#send = send;
  }

  send(frame: ToGatewayFrame): void {
    if (frame.type !== "events") {
      this.flush();
      this.#send(frame);
      return;
    }
    this.#pending.push(frame);
    if (this.#pending.length === 1) setImmediate(() => this.flush());
    else if (this.#pending.length >= MAX_BATCH_FRAMES) this.flush();
  }

  flush(): void {
    const frames = this.#pending;
    if (frames.length === 0) return;
    this.#pending = [];
    const [only] = frames;
    this.#send(frames.length === 1 && only !== undefined ? only : { type: "batch", frames });
  }
}
