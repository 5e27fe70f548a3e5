import type { GatewayVars } from "./vars.ts";

/** The Fleet's timings and bounds; each can be set as a plain var (tests shorten them). */
export interface FleetConfig {
  /** How often agents send a heartbeat ping (told to them in `welcome`). Defaults to 5 s. */
  heartbeatIntervalMs: number;
  /** A node silent for this long leaves routing and its socket is closed. Defaults to 15 s. */
  heartbeatTimeoutMs: number;
  /** Longest wait for a free slot before answering 503. Defaults to 30 s. */
  queueTimeoutMs: number;
  /** Requests waiting for a slot, fleet-wide, before new ones get 503 at once. Defaults to 64. */
  maxQueue: number;
  /** A socket that has not said hello by then is closed. Defaults to 10 s. */
  helloTimeoutMs: number;
  /** `events` frames a node may send per request before the gateway acknowledges them. Defaults to 32. */
  window: number;
  /** Times one request is moved to another node after its node failed it. Defaults to 3. */
  maxRetries: number;
}

function positiveInt(value: string | undefined, fallback: number): number {
  if (value === undefined || value.trim() === "") return fallback;
  const parsed = Number(value);
  return Number.isInteger(parsed) && parsed > 0 ? parsed : fallback;
}

export function fleetConfig(env: GatewayVars): FleetConfig {
  const heartbeatIntervalMs = positiveInt(env.LMGATE_HEARTBEAT_INTERVAL_MS, 5_000);
  return {
    heartbeatIntervalMs,
    // Never shorter than two intervals, or one late ping would drop a healthy node.
    heartbeatTimeoutMs: Math.max(positiveInt(env.LMGATE_HEARTBEAT_TIMEOUT_MS, 15_000), 2 * heartbeatIntervalMs),
    queueTimeoutMs: positiveInt(env.LMGATE_QUEUE_TIMEOUT_MS, 30_000),
    maxQueue: positiveInt(env.LMGATE_MAX_QUEUE, 64),
    helloTimeoutMs: 10_000,
    window: 32,
    maxRetries: 3,
  };
}
