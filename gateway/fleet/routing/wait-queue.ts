import { noCapacity, type ApiError } from "../../../shared/protocol/api-error.ts";
import type { FleetConfig } from "../fleet-config.ts";
import type { Job } from "./job.ts";

/**
 * Requests waiting for a free slot, oldest first, bounded in number (`maxQueue`) and in time
 * (`queueTimeoutMs`): one the queue cannot take, or that waits too long, is failed through
 * `fail`. Which waiting requests can start is the dispatcher's to say (`takeAll`, `keep`).
 */
export class WaitQueue {
  readonly #config: Pick<FleetConfig, "maxQueue" | "queueTimeoutMs">;
  readonly #fail: (job: Job, error: ApiError) => void;
  #waiting: Job[] = [];
  /** Since when each job waits, and its timeout; kept while `takeAll` has it out for another try. */
  readonly #waits = new Map<Job, { since: number; timeout: ReturnType<typeof setTimeout> }>();

  constructor(config: Pick<FleetConfig, "maxQueue" | "queueTimeoutMs">, fail: (job: Job, error: ApiError) => void) {
    this.#config = config;
    this.#fail = fail;
  }

  get length(): number {
    return this.#waiting.length;
  }

  /**
   * Queues the job until a slot frees up, or fails it at once when the queue is full. `timeoutMs`
   * is longer for a job that waits for a node being woken.
   */
  add(job: Job, now: number, timeoutMs = this.#config.queueTimeoutMs): void {
    if (this.#waiting.length >= this.#config.maxQueue) {
      this.#fail(job, noCapacity(`Every slot for "${job.model}" is busy and ${this.#waiting.length} requests are already waiting.`, 2));
      return;
    }
    const timeout = setTimeout(() => {
      this.#waiting = this.#waiting.filter((waiting) => waiting !== job);
      this.leave(job, Date.now());
      const seconds = Math.round(timeoutMs / 100) / 10;
      this.#fail(job, noCapacity(`No slot for "${job.model}" became free within ${seconds} s.`, 2));
    }, timeoutMs);
    this.#waits.set(job, { since: now, timeout });
    this.#waiting.push(job);
  }

  /** Takes a waiting job out (its client went away); a job that is not waiting is left as it is. */
  remove(job: Job, now: number): void {
    this.#waiting = this.#waiting.filter((waiting) => waiting !== job);
    this.leave(job, now);
  }

  /** Empties the queue for another try, oldest first; the jobs that must wait on are `keep`-ed. */
  takeAll(): Job[] {
    const waiting = this.#waiting;
    this.#waiting = [];
    return waiting;
  }

  /** Puts back a job `takeAll` took: it waits on, its timeout still running. */
  keep(job: Job): void {
    this.#waiting.push(job);
  }

  /** The job stops waiting, to run or to fail: its timeout stops and its time waiting is counted. */
  leave(job: Job, now: number): void {
    const wait = this.#waits.get(job);
    if (wait === undefined) return;
    clearTimeout(wait.timeout);
    this.#waits.delete(job);
    job.queueMs += now - wait.since;
  }
}
