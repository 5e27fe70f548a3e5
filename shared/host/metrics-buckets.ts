/**
 * Histogram buckets the gateway's metrics (`lmgate_gateway_*`) and the agent's (`lmgate_agent_*`)
 * both use, so one dashboard query fits either.
 */

/** Time to first token and request duration. */
export const SECONDS_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** Decode speed of one generation. */
export const TOKENS_PER_SECOND_BUCKETS: readonly number[] = [1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 350, 500, 1000, 2000, 5000];
