import type { Caller } from "./fleet/access/caller.ts";
import type { Fleet } from "./fleet/fleet.ts";
import type { NodeObject } from "./node/node-object.ts";
import type { GatewayVars } from "./vars.ts";

/** The Worker's bindings (wrangler.toml): its vars, the Fleet objects, and one object per node (named after it). */
export interface GatewayBindings extends GatewayVars {
  FLEET: DurableObjectNamespace<Fleet>;
  NODE: DurableObjectNamespace<NodeObject>;
}

export type GatewayEnv = { Bindings: GatewayBindings; Variables: { caller: Caller } };

/** One fleet for now; naming it keeps the door open for one Fleet object per team. */
export const DEFAULT_FLEET = "default";

export const fleetStub = (env: GatewayBindings) => env.FLEET.getByName(DEFAULT_FLEET);

/** A node's object, where its agent's socket ends and its generations are relayed from. */
export const nodeStub = (env: GatewayBindings, name: string) => env.NODE.getByName(name);
