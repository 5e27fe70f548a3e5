import { noCapacity } from "../../shared/protocol/api-error.ts";
import { requestCancelled } from "../../shared/protocol/api-error.ts";

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

/**
 * How much of a request's work slot `index` already holds (e.g. cached prompt tokens); 0 when
 * nothing there is worth taking the slot for.
 */
export type SlotReuse = (index: number) => number;

type Waiter = { reuse: SlotReuse | undefined; grant: (index: number) => void; fail: (error: Error) => void };

/**
 * N slots (context sequences) with a bounded first-come-first-served queue. A request takes the
 * free slot that holds most of its work, else the least recently used one, so that what other
 * recent requests left behind (a conversation's cached prompt) survives for their next turn.
 */
export class SlotPool {
  readonly size: number;
  readonly #maxQueue: number;
  readonly #label: string;
  readonly #onChange: () => void;
  readonly #free: Set<number>;
  /** Per slot, when it was last released (a counter; -1 = never used). */
  readonly #lastUsed: number[];
  #releases = 0;
  readonly #waiters: Waiter[] = [];
  #closedWith: Error | null = null;

  constructor(options: SlotPoolOptions) {
    this.size = options.size;
    this.#maxQueue = options.maxQueue;
    this.#label = options.label;
    this.#onChange = options.onChange ?? (() => {});
    this.#free = new Set(Array.from({ length: options.size }, (_, index) => index));
    this.#lastUsed = Array.from({ length: options.size }, () => -1);
  }

  get busy(): number {
    return this.size - this.#free.size;
  }

  get waiting(): number {
    return this.#waiters.length;
  }

  /**
   * Resolves with a slot, chosen by `reuse` among the free ones; rejects with a 503 when the queue
   * is full, or when `signal` aborts first.
   */
  acquire(signal: AbortSignal, reuse?: SlotReuse): Promise<SlotLease> {
    if (this.#closedWith) return Promise.reject(this.#closedWith);
    if (signal.aborted) return Promise.reject(requestCancelled());
    const index = this.#take(reuse);
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
        reuse,
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

  /** A free slot now (chosen as `acquire` chooses), or undefined when none is free or the pool is closed; never queues. */
  tryAcquire(reuse?: SlotReuse): SlotLease | undefined {
    if (this.#closedWith || this.#waiters.length > 0) return undefined;
    const index = this.#take(reuse);
    if (index === undefined) return undefined;
    this.#onChange();
    return this.#lease(index);
  }

  /** Refuses waiting and future requests with `error`; held slots stay held until released. */
  close(error: Error): void {
    this.#closedWith ??= error;
    for (const waiter of this.#waiters.splice(0)) waiter.fail(error);
  }

  /** Removes and returns the free slot holding most of the work, else the least recently used one. */
  #take(reuse: SlotReuse | undefined): number | undefined {
    let best: number | undefined;
    let bestReuse = 0;
    for (const index of this.#free) {
      const held = reuse?.(index) ?? 0;
      const better =
        best === undefined || held > bestReuse || (held === bestReuse && (this.#lastUsed[index] as number) < (this.#lastUsed[best] as number));
      if (better) {
        best = index;
        bestReuse = held;
      }
    }
    if (best !== undefined) this.#free.delete(best);
    return best;
  }

  #lease(index: number): SlotLease {
    let released = false;
    return {
      index,
      release: () => {
        if (released) return;
        released = true;
        this.#lastUsed[index] = this.#releases++;
        this.#free.add(index);
        const next = this.#closedWith ? undefined : this.#waiters.shift();
        if (next) return next.grant(this.#take(next.reuse) as number);
        this.#onChange();
      },
    };
  }
}
