import type { Caller } from "./access/caller.ts";
import type { Fleet } from "./fleet/fleet.ts";

/**
 * The Worker's bindings (wrangler.toml). Secrets are optional in the type because a fresh
 * deployment may lack them: every check fails closed when one is missing.
 */
export interface GatewayBindings {
  FLEET: DurableObjectNamespace<Fleet>;
  LMGATE_API_KEY?: string;
  LMGATE_NODE_TOKEN?: string;
  LMGATE_ADMIN_TOKEN?: string;
  /** Optional: a token that reads `/metrics` and nothing else (the admin token reads it too). */
  LMGATE_METRICS_TOKEN?: string;
  LMGATE_HEARTBEAT_INTERVAL_MS?: string;
  LMGATE_HEARTBEAT_TIMEOUT_MS?: string;
  LMGATE_QUEUE_TIMEOUT_MS?: string;
  LMGATE_MAX_QUEUE?: string;
  /** Origins allowed to call from a browser, comma-separated or `*`; unset = CORS off. */
  LMGATE_CORS_ORIGINS?: string;
}

export type GatewayEnv = { Bindings: GatewayBindings; Variables: { caller: Caller } };

declare global {
  namespace Cloudflare {
    interface Env extends GatewayBindings {}
    interface GlobalProps {
      mainModule: typeof import("./index.ts");
      durableNamespaces: "Fleet";
    }
  }
}

/** One fleet for now; naming it keeps the door open for one Fleet object per team. */
export const DEFAULT_FLEET = "default";

export const fleetStub = (env: GatewayBindings) => env.FLEET.getByName(DEFAULT_FLEET);
