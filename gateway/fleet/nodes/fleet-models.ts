import type { ModelNodeInfo, ModelObject } from "../../../shared/protocol/model-schemas.ts";
import type { FleetNode } from "./fleet-node.ts";

/**
 * Every model the fleet can serve: the union of the nodes' catalogs. A model is `loaded` if it
 * is loaded anywhere (with that node's loaded context length), and `nodes` says where it lives.
 */
export function fleetModels(nodes: FleetNode[]): ModelObject[] {
  const byId = new Map<string, { model: ModelObject; nodes: ModelNodeInfo[] }>();
  for (const node of nodes) {
    for (const model of node.status.models) {
      const entry = byId.get(model.id);
      if (entry === undefined) byId.set(model.id, { model, nodes: [node.modelNodeInfo(model)] });
      else {
        if (model.state === "loaded" && entry.model.state !== "loaded") entry.model = model;
        entry.nodes.push(node.modelNodeInfo(model));
      }
    }
  }
  return [...byId.values()]
    .sort((a, b) => a.model.id.localeCompare(b.model.id))
    .map(({ model, nodes: where }) => {
      const { loaded_context_length, nodes: _ignored, ...rest } = model;
      return {
        ...rest,
        ...(model.state === "loaded" && loaded_context_length !== undefined ? { loaded_context_length } : {}),
        nodes: where.sort((a, b) => a.node.localeCompare(b.node)),
      };
    });
}
