import type { NodeStatus } from "../../../shared/protocol/frames.ts";
import { ModelScope } from "./model-scope.ts";

/**
 * What a node may serve is what its token allows, whatever it claims: a status (at hello and every
 * one after) is cut to the models in the token's scope before the fleet believes any of it, so a
 * node is never listed as holding, nor routed a prompt for, a model outside its scope. `null`
 * globs (LMGATE_NODE_TOKEN, or a token made without `--models`) leave the status as it is.
 */
export function scopedStatus(status: NodeStatus, globs: string[] | null): NodeStatus {
  if (globs === null) return status;
  const scope = new ModelScope(globs);
  const allowed = <T>(record: Record<string, T>) => Object.fromEntries(Object.entries(record).filter(([model]) => scope.allows(model)));
  return {
    ...status,
    models: status.models.filter((model) => scope.allows(model.id)),
    busy: allowed(status.busy),
    speed: allowed(status.speed),
    ...(status.v1_models ? { v1_models: status.v1_models.filter((model) => scope.allows(model.key)) } : {}),
    ...(status.footprints ? { footprints: allowed(status.footprints) } : {}),
  };
}
