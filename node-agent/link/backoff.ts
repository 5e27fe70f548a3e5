export interface BackoffOptions {
  /** Defaults to 250 ms. */
  initialMs?: number;
  /** Defaults to 10 s. */
  maxMs?: number;
}

/**
 * Exponential backoff with jitter: the delay before reconnect attempt `attempt` (0-based).
 * Each delay is drawn from the upper half of the doubling step, so a gateway restart is not met
 * by every node of the fleet at the same instant, while no node waits much longer than the cap.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = options.initialMs ?? 250;
  const max = options.maxMs ?? 10_000;
  const step = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.round(step / 2 + random() * (step / 2));
}
