import { LOCAL_HOST, LOCAL_PORT } from "../../shared/host/local-address.ts";

/**
 * The agent's defaults, once: the options (`lmgate-agent --help` shows them), the config built
 * from them and `LocalBackend` (which tests and the bench create without options) all read these.
 */
export const AGENT_DEFAULTS = {
  /** Parallel requests (context sequences) per loaded LLM. */
  slots: 4,
  /**
   * Context per slot, in tokens, for loads that do not say: the least the agent picks on its own
   * (a model trained for less gets its own). Above it, a model gets all it was trained for, halved
   * while the load would take more than `defaultLoadMemoryShare` of the node's memory.
   */
  contextLength: 4096,
  defaultLoadMemoryShare: 0.5,
  /** Requests waiting for a slot, per model, before more get a 503. */
  maxQueue: 16,
  /** Idle seconds before a JIT-loaded model unloads, unless its request gave `ttl`. */
  ttlSeconds: 3600,
  /** Where direct mode (`--serve`) listens (see LOCAL_PORT). */
  host: LOCAL_HOST,
  port: LOCAL_PORT,
  /** Where `/metrics` listens in gateway mode. */
  metricsHost: "127.0.0.1",
  metricsPort: 9464,
  /** How long running requests may take to finish on SIGINT/SIGTERM. */
  shutdownTimeoutSeconds: 30,
} as const;
