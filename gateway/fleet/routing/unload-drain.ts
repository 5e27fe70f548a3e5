import type { UnloadDrain } from "../../../shared/protocol/model-schemas.ts";
import type { FleetNode } from "../nodes/fleet-node.ts";

/**
 * How long an unload waits for the generations running on its model. In a shared fleet one key's
 * unload must not cut another key's stream, yet a stream that never ends must not keep a model
 * loaded for ever: past this, the unload goes ahead and cuts what is left.
 */
const UNLOAD_DRAIN_MS = 60_000;
const POLL_MS = 50;

/**
 * Unloads `model` from `node` once the generations running on it have finished (at most
 * `UNLOAD_DRAIN_MS`), or at once when `force`. While it waits the node takes no new requests
 * for the model (`FleetNode.unloading`, read by the dispatcher's routing). Returns the unload's
 * outcome and what it waited for.
 */
export async function drainThenUnload<T>(
  node: FleetNode,
  model: string,
  force: boolean,
  unload: () => Promise<T>,
): Promise<{ outcome: T; drained: UnloadDrain }> {
  const started = Date.now();
  const generations = node.busy(model);
  node.unloading.add(model);
  try {
    while (!force && node.busy(model) > 0 && Date.now() - started < UNLOAD_DRAIN_MS) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    const cut = node.busy(model);
    const outcome = await unload();
    return { outcome, drained: { generations, waited_seconds: (Date.now() - started) / 1000, cut } };
  } finally {
    node.unloading.delete(model);
  }
}
