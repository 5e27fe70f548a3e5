/** Secrets and short timings for the gateway's tests inside workerd. */
export const TEST_BINDINGS = {
  LMGATE_API_KEY: "test-api-key",
  LMGATE_NODE_TOKEN: "test-node-token",
  LMGATE_ADMIN_TOKEN: "test-admin-token",
  LMGATE_METRICS_TOKEN: "test-metrics-token",
  LMGATE_HEARTBEAT_INTERVAL_MS: "200",
  LMGATE_HEARTBEAT_TIMEOUT_MS: "800",
  LMGATE_QUEUE_TIMEOUT_MS: "600",
  LMGATE_MAX_QUEUE: "2",
};
