import { ApiError, invalidRequest, modelNotFound } from "../../../shared/protocol/api-error.ts";
import type { DownloadJob } from "../../../shared/protocol/download-schemas.ts";
import type { V1Model } from "../../../shared/protocol/v1-model-schemas.ts";
import type { FleetNode } from "./fleet-node.ts";

/**
 * LM Studio's v1 model management across the fleet: one listing of every node's models, saying
 * where each is and its instances per node, and which node a download, delete or cancel goes to.
 */

/** Every model in the fleet, once, with `nodes` telling where it is and what is loaded there. */
export function fleetV1Models(nodes: FleetNode[]): V1Model[] {
  const byKey = new Map<string, V1Model>();
  for (const node of [...nodes].sort((a, b) => a.name.localeCompare(b.name))) {
    for (const model of node.status.v1_models ?? []) {
      const instances = model.loaded_instances.map((instance) => ({ ...instance, node: node.name }));
      const entry = byKey.get(model.key);
      if (entry === undefined) {
        byKey.set(model.key, { ...model, loaded_instances: instances, nodes: [{ node: node.name, loaded_instances: instances }] });
      } else {
        entry.loaded_instances.push(...instances);
        entry.nodes?.push({ node: node.name, loaded_instances: instances });
      }
    }
  }
  return [...byKey.values()].sort((a, b) => a.key.localeCompare(b.key));
}

/** Nodes whose agent manages models (older agents send no v1 listing and take no such operations). */
function managing(nodes: FleetNode[]): FleetNode[] {
  return nodes.filter((node) => node.status.v1_models !== undefined);
}

/** The node a caller named, or 404 naming the ones there are. */
export function namedNode(nodes: FleetNode[], name: string): FleetNode {
  const node = nodes.find((candidate) => candidate.name === name);
  if (node === undefined) {
    const names = nodes.map((candidate) => candidate.name).sort();
    throw new ApiError(404, `No node "${name}" is online.` + (names.length > 0 ? ` Online nodes: ${names.join(", ")}.` : " No nodes are online."), {
      param: "node",
      code: "node_not_found",
    });
  }
  if (node.status.v1_models === undefined) {
    throw new ApiError(501, `Node "${name}" runs an lmgate-agent too old to manage models; update it.`, { param: "node", code: "node_unsupported" });
  }
  return node;
}

/**
 * Where a download goes: the named node, else the managing node with the most memory for models
 * (VRAM if it has a GPU), as a model is worth having where it can be loaded.
 */
export function downloadTarget(nodes: FleetNode[], name: string | undefined): FleetNode {
  if (name !== undefined) return namedNode(nodes, name);
  const roomOf = (node: FleetNode) => node.info.hardware.vram_bytes ?? node.info.hardware.memory_bytes;
  const target = managing(nodes).sort((a, b) => roomOf(b) - roomOf(a) || a.name.localeCompare(b.name))[0];
  if (target === undefined) throw new ApiError(503, "No online node can download models.", { code: "no_capacity", retryAfter: 5 });
  return target;
}

/** The one node a delete applies to: named, or the only one holding the model (deleting everywhere at once is never implied). */
export function deleteTarget(nodes: FleetNode[], model: string, name: string | undefined): FleetNode {
  if (name !== undefined) return namedNode(nodes, name);
  const holders = managing(nodes).filter((node) => node.status.v1_models?.some((entry) => entry.key === model));
  if (holders.length === 1) return holders[0] as FleetNode;
  if (holders.length === 0) {
    throw modelNotFound(model, fleetV1Models(nodes).map((entry) => entry.key));
  }
  throw invalidRequest(`"${model}" is on ${holders.map((node) => node.name).sort().join(", ")}: say which node to delete it from with "node".`, "node");
}

/** A download job wherever it runs, with the node's name; 404 `job_not_found` otherwise. */
export function findDownload(nodes: FleetNode[], jobId: string): { node: FleetNode; job: DownloadJob } {
  for (const node of nodes) {
    const job = node.status.downloads?.find((candidate) => candidate.job_id === jobId);
    if (job !== undefined) return { node, job: { ...job, node: node.name } };
  }
  throw new ApiError(404, `No download job "${jobId}".`, { param: "job_id", code: "job_not_found" });
}
