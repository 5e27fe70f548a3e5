/**
 * Counts the work in progress (HTTP requests in direct mode, gateway requests in gateway mode) so
 * a shutdown can stop taking new work and wait for what runs to finish.
 */
export class Drain {
  #active = 0;
  #draining = false;
  readonly #idleWaiters = new Set<() => void>();

  /** True once `close()` was called: new work should be refused. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Pieces of work begun and not yet ended. */
  get active(): number {
    return this.#active;
  }

  /** Counts one piece of work until the returned function is called (calling it again does nothing). */
  begin(): () => void {
    this.#active += 1;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.#active -= 1;
      if (this.#active === 0) for (const wake of this.#idleWaiters) wake();
    };
  }

  /**
   * Refuses new work from now on. Resolves to true once nothing runs any more, or to false when
   * `timeoutMs` passes first.
   */
  close(timeoutMs: number): Promise<boolean> {
    this.#draining = true;
    if (this.#active === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const finish = (idle: boolean) => {
        clearTimeout(timer);
        this.#idleWaiters.delete(wake);
        resolve(idle);
      };
      const wake = () => finish(true);
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.#idleWaiters.add(wake);
    });
  }
}
