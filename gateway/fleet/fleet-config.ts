import { positiveInt, type GatewayVars } from "../vars.ts";
import { DEFAULT_STORED_BYTES_PER_KEY } from "./state/response-quota.ts";

/** The Fleet's timings and bounds when no var sets them (wrangler.toml's comments list the vars). */
export const FLEET_DEFAULTS = {
  heartbeatIntervalMs: 5_000,
  heartbeatTimeoutMs: 15_000,
  queueTimeoutMs: 30_000,
  maxQueue: 64,
  helloTimeoutMs: 10_000,
  window: 32,
  maxRetries: 3,
  requestLogMaxRows: 10_000,
  requestLogMaxAgeDays: 7,
  wakeTimeoutMs: 120_000,
} as const;

const DAY_MS = 86_400_000;

/** The Fleet's timings and bounds; the first four and the request log's bounds can be set as plain vars (tests shorten them). */
export interface FleetConfig {
  /** How often agents send a heartbeat ping (told to them in `welcome`). */
  heartbeatIntervalMs: number;
  /** A node silent for this long leaves routing and its socket is closed. */
  heartbeatTimeoutMs: number;
  /** Longest wait for a free slot before answering 503. */
  queueTimeoutMs: number;
  /** Requests waiting for a slot, fleet-wide, before new ones get 503 at once. */
  maxQueue: number;
  /** A socket that has not said hello by then is closed. */
  helloTimeoutMs: number;
  /** `events` frames a node may send per request before the gateway acknowledges them. */
  window: number;
  /** Times one request is moved to another node after its node failed it. */
  maxRetries: number;
  /** Bytes of stored responses one API key may keep (state/response-quota.ts). */
  storedBytesPerKey: number;
  /** The request log keeps at most this many rows, none older than `requestLogMaxAgeMs`. */
  requestLogMaxRows: number;
  requestLogMaxAgeMs: number;
  /** How long a request waits for a node that is being woken (Wake-on-LAN) to come back. */
  wakeTimeoutMs: number;
}

export function fleetConfig(env: GatewayVars): FleetConfig {
  const heartbeatIntervalMs = positiveInt(env.LMGATE_HEARTBEAT_INTERVAL_MS, FLEET_DEFAULTS.heartbeatIntervalMs);
  return {
    heartbeatIntervalMs,
    // Never shorter than two intervals, or one late ping would drop a healthy node.
    heartbeatTimeoutMs: Math.max(positiveInt(env.LMGATE_HEARTBEAT_TIMEOUT_MS, FLEET_DEFAULTS.heartbeatTimeoutMs), 2 * heartbeatIntervalMs),
    queueTimeoutMs: positiveInt(env.LMGATE_QUEUE_TIMEOUT_MS, FLEET_DEFAULTS.queueTimeoutMs),
    maxQueue: positiveInt(env.LMGATE_MAX_QUEUE, FLEET_DEFAULTS.maxQueue),
    helloTimeoutMs: FLEET_DEFAULTS.helloTimeoutMs,
    window: FLEET_DEFAULTS.window,
    maxRetries: FLEET_DEFAULTS.maxRetries,
    storedBytesPerKey: positiveInt(env.LMGATE_STORED_BYTES_PER_KEY, DEFAULT_STORED_BYTES_PER_KEY),
    requestLogMaxRows: positiveInt(env.LMGATE_REQUEST_LOG_MAX_ROWS, FLEET_DEFAULTS.requestLogMaxRows),
    requestLogMaxAgeMs: positiveInt(env.LMGATE_REQUEST_LOG_MAX_AGE_DAYS, FLEET_DEFAULTS.requestLogMaxAgeDays) * DAY_MS,
    wakeTimeoutMs: positiveInt(env.LMGATE_WAKE_TIMEOUT_MS, FLEET_DEFAULTS.wakeTimeoutMs),
  };
}
