/** Bytes per second over the last few seconds, so a stall shows as a falling speed rather than an average since the start. */
export class SpeedWindow {
  readonly #windowMs: number;
  readonly #samples: { at: number; bytes: number }[] = [];

  constructor(windowMs = 5_000) {
    this.#windowMs = windowMs;
  }

  record(bytes: number, at = performance.now()): void {
    this.#samples.push({ at, bytes });
    while (this.#samples.length > 2 && (this.#samples[1]?.at ?? at) < at - this.#windowMs) this.#samples.shift();
  }

  /** Undefined until two samples span some time. */
  bytesPerSecond(now = performance.now()): number | undefined {
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    if (!first || !last || last.at === first.at) return undefined;
    // A stall since the last sample counts: the window ends now, not at the last byte.
    return Math.max(0, last.bytes - first.bytes) / ((Math.max(now, last.at) - first.at) / 1000);
  }
}
