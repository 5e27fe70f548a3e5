import type { GatewayVars } from "../vars.ts";

/**
 * Secrets and short timings for the gateway's tests inside workerd. Every var the gateway reads is
 * set here (the type makes a new one a compile error until it is), because the test pool also
 * reads the checkout's `.dev.vars`: a developer's own setting there must not change what the
 * tests see. An empty string is "unset" to the gateway.
 */
export const TEST_BINDINGS: Required<GatewayVars> = {
  LMGATE_API_KEY: "test-api-key",
  LMGATE_NODE_TOKEN: "test-node-token",
  LMGATE_ADMIN_TOKEN: "test-admin-token",
  LMGATE_METRICS_TOKEN: "test-metrics-token",
  LMGATE_HEARTBEAT_INTERVAL_MS: "200",
  LMGATE_HEARTBEAT_TIMEOUT_MS: "800",
  LMGATE_QUEUE_TIMEOUT_MS: "600",
  LMGATE_MAX_QUEUE: "2",
  LMGATE_STORED_BYTES_PER_KEY: "3000000",
  // Longer than the keep-alive below, so a stream waiting for a wake gets a comment before it ends.
  LMGATE_WAKE_TIMEOUT_MS: "3000",
  // Longer than the queue's timeout: a stream that waits in the queue still gets its 503 as a status.
  LMGATE_STREAM_KEEPALIVE_MS: "1000",
  LMGATE_CORS_ORIGINS: "",
  LMGATE_REQUEST_LOG_MAX_ROWS: "",
  LMGATE_REQUEST_LOG_MAX_AGE_DAYS: "",
};
