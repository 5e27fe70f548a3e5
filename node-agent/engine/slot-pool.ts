import { noCapacity } from "../../shared/errors.ts";
import { requestCancelled } from "../../shared/errors.ts";

/** A held slot; `release()` is idempotent so it can sit in every `finally`. */
export interface SlotLease {
  readonly index: number;
  release(): void;
}

export interface SlotPoolOptions {
  size: number;
  /** Requests allowed to wait for a slot; one more is refused with a 503. */
  maxQueue: number;
  /** Named in the 503 message, e.g. `model "tiny-chat-f32"`. */
  label: string;
  /** Called when the number of busy slots changes. */
  onChange?: () => void;
}

/** Seconds a refused caller is told to wait: slots of a loaded model free up within moments. */
const RETRY_AFTER_SECONDS = 1;

type Waiter = { grant: (index: number) => void; fail: (error: Error) => void };

/** N interchangeable slots (context sequences) with a bounded first-come-first-served queue. */
export class SlotPool {
  readonly size: number;
  readonly #maxQueue: number;
  readonly #label: string;
  readonly #onChange: () => void;
  readonly #free: number[];
  readonly #waiters: Waiter[] = [];
  #closedWith: Error | null = null;

  constructor(options: SlotPoolOptions) {
    this.size = options.size;
    this.#maxQueue = options.maxQueue;
    this.#label = options.label;
    this.#onChange = options.onChange ?? (() => {});
    this.#free = Array.from({ length: options.size }, (_, index) => options.size - 1 - index);
  }

  get busy(): number {
    return this.size - this.#free.length;
  }

  get waiting(): number {
    return this.#waiters.length;
  }

  /** Resolves with a slot; rejects with a 503 when the queue is full, or when `signal` aborts first. */
  acquire(signal: AbortSignal): Promise<SlotLease> {
    if (this.#closedWith) return Promise.reject(this.#closedWith);
    if (signal.aborted) return Promise.reject(requestCancelled());
    const index = this.#free.pop();
    if (index !== undefined) {
      this.#onChange();
      return Promise.resolve(this.#lease(index));
    }
    if (this.#waiters.length >= this.#maxQueue) {
      return Promise.reject(
        noCapacity(
          `All ${this.size} slots of ${this.#label} are busy and ${this.#waiters.length} requests are already waiting. Retry shortly.`,
          RETRY_AFTER_SECONDS,
        ),
      );
    }
    return new Promise<SlotLease>((resolve, reject) => {
      const onAbort = () => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(requestCancelled());
      };
      const waiter: Waiter = {
        grant: (granted) => {
          signal.removeEventListener("abort", onAbort);
          resolve(this.#lease(granted));
        },
        fail: (error) => {
          signal.removeEventListener("abort", onAbort);
          reject(error);
        },
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Refuses waiting and future requests with `error`; held slots stay held until released. */
  close(error: Error): void {
    this.#closedWith ??= error;
    for (const waiter of this.#waiters.splice(0)) waiter.fail(error);
  }

  #lease(index: number): SlotLease {
    let released = false;
    return {
      index,
      release: () => {
        if (released) return;
        released = true;
        const next = this.#closedWith ? undefined : this.#waiters.shift();
        if (next) return next.grant(index);
        this.#free.push(index);
        this.#onChange();
      },
    };
  }
}
