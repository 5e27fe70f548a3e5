import type { Caller } from "./fleet/access/caller.ts";
import type { Fleet } from "./fleet/fleet.ts";
import type { GatewayVars } from "./vars.ts";

/** The Worker's bindings (wrangler.toml): its vars and the Fleet objects. */
export interface GatewayBindings extends GatewayVars {
  FLEET: DurableObjectNamespace<Fleet>;
}

export type GatewayEnv = { Bindings: GatewayBindings; Variables: { caller: Caller } };

/** One fleet for now; naming it keeps the door open for one Fleet object per team. */
export const DEFAULT_FLEET = "default";

export const fleetStub = (env: GatewayBindings) => env.FLEET.getByName(DEFAULT_FLEET);
