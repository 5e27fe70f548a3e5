/**
 * The Worker's plain vars and secrets (wrangler.toml, `.dev.vars`, `wrangler secret put`): what the
 * Fleet object reads too. Secrets are optional in the type because a fresh deployment may lack
 * them: every check fails closed when one is missing.
 */
export interface GatewayVars {
  LMGATE_API_KEY?: string;
  LMGATE_NODE_TOKEN?: string;
  LMGATE_ADMIN_TOKEN?: string;
  /** Optional: a token that reads `/metrics` and nothing else (the admin token reads it too). */
  LMGATE_METRICS_TOKEN?: string;
  LMGATE_HEARTBEAT_INTERVAL_MS?: string;
  LMGATE_HEARTBEAT_TIMEOUT_MS?: string;
  LMGATE_QUEUE_TIMEOUT_MS?: string;
  LMGATE_MAX_QUEUE?: string;
  /** Bytes of stored responses (`store`, `previous_response_id`) one API key may keep; default 100 MiB. */
  LMGATE_STORED_BYTES_PER_KEY?: string;
  /** The request log's bounds: rows kept at most, and days a row is kept. */
  LMGATE_REQUEST_LOG_MAX_ROWS?: string;
  LMGATE_REQUEST_LOG_MAX_AGE_DAYS?: string;
  LMGATE_WAKE_TIMEOUT_MS?: string;
  /** How long a streamed request waits silently (queued, or for a node to wake) before SSE comments keep it alive, and how often they follow. */
  LMGATE_STREAM_KEEPALIVE_MS?: string;
  /** Origins allowed to call from a browser, comma-separated or `*`; unset = CORS off. */
  LMGATE_CORS_ORIGINS?: string;
}

/** A var that holds a positive whole number, or `fallback` when it is unset or anything else. */
export function positiveInt(value: string | undefined, fallback: number): number {
  if (value === undefined || value.trim() === "") return fallback;
  const parsed = Number(value);
  return Number.isInteger(parsed) && parsed > 0 ? parsed : fallback;
}
