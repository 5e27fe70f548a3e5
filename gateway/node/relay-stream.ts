/**
 * The byte stream one generation flows through, from the node object to the Worker. It is
 * pull-driven: a frame leaves only when the reader asks for more, and each frame handed over
 * is reported (`onConsumed`) so the node is granted credit for the next ones. Nothing here
 * grows without bound: the node may not run more than its window ahead of the reader.
 */
export interface RelayStreamHooks {
  /** A frame from the given attempt reached the reader. */
  onConsumed(attempt: number): void;
  /** The reader went away (the client disconnected). */
  onCancel(): void;
}

interface Item {
  bytes: Uint8Array;
  /** Which dispatch of the request produced it; undefined for lines the gateway wrote itself. */
  attempt: number | undefined;
}

export class RelayStream {
  readonly readable: ReadableStream<Uint8Array>;
  #queue: Item[] = [];
  #wake: (() => void) | null = null;
  #ended = false;
  #cancelled = false;

  constructor(hooks: RelayStreamHooks) {
    this.readable = new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          while (this.#queue.length === 0 && !this.#ended) {
            await new Promise<void>((resolve) => (this.#wake = resolve));
          }
          const item = this.#queue.shift();
          if (item !== undefined) {
            controller.enqueue(item.bytes);
            if (item.attempt !== undefined) hooks.onConsumed(item.attempt);
          }
          if (this.#queue.length === 0 && this.#ended) controller.close();
        },
        cancel: () => {
          if (this.#ended) return;
          this.#cancelled = true;
          this.#ended = true;
          this.#queue = [];
          hooks.onCancel();
        },
      },
      { highWaterMark: 0 },
    );
  }

  /** Frames waiting for the reader. */
  get backlog(): number {
    return this.#queue.length;
  }

  get cancelled(): boolean {
    return this.#cancelled;
  }

  push(bytes: Uint8Array, attempt?: number): void {
    if (this.#ended) return;
    this.#queue.push({ bytes, attempt });
    this.#wakeReader();
  }

  /** Ends the stream after what is queued, with an optional last line. */
  end(last?: Uint8Array): void {
    if (this.#ended) return;
    if (last !== undefined) this.#queue.push({ bytes: last, attempt: undefined });
    this.#ended = true;
    this.#wakeReader();
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}
