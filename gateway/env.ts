import type { Caller } from "./fleet/access/caller.ts";
import type { FleetBinding } from "./fleet/fleet-contract.ts";
import type { Fleet } from "./fleet/fleet.ts";
import type { NodeApi } from "./node/node-contract.ts";
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

/** The Fleet as its callers use it: every call typed by the contract (`FleetBinding`). */
export const fleetOf = (env: GatewayBindings): FleetBinding => fleetStub(env);

/** A node's object, where its agent's socket ends and its generations are relayed from. */
export const nodeStub = (env: GatewayBindings, name: string) => env.NODE.getByName(name);

/** A node's object as its callers use it, typed by its contract (`NodeApi`). */
export const nodeOf = (env: GatewayBindings, name: string): NodeApi => nodeStub(env, name);
