export interface MeasuredSpeed {
  tokens_per_second: number;
  time_to_first_token: number;
}

/** Weight of the newest measurement: recent enough to follow load changes, smooth enough to route by. */
const SMOOTHING = 0.3;

/** Recent generation speed per model, as exponential moving averages. Kept across unloads: it is what a reload will give. */
export class SpeedTracker {
  readonly #speeds = new Map<string, MeasuredSpeed>();

  record(model: string, measured: MeasuredSpeed): void {
    const previous = this.#speeds.get(model);
    const blend = (key: keyof MeasuredSpeed) =>
      previous ? previous[key] + SMOOTHING * (measured[key] - previous[key]) : measured[key];
    this.#speeds.set(model, { tokens_per_second: blend("tokens_per_second"), time_to_first_token: blend("time_to_first_token") });
  }

  snapshot(): Record<string, MeasuredSpeed> {
    return Object.fromEntries(this.#speeds);
  }
}
