import { describe, expect, test } from "vitest";
import type { NodeStatus } from "../../../shared/protocol/frames.ts";
import type { ModelObject } from "../../../shared/protocol/model-schemas.ts";
import type { NodeApi } from "../../node/node-contract.ts";
import { FleetNode, type NodeInfo } from "./fleet-node.ts";

/** Placement of a request with a draft model: the draft loads beside its model, so both must fit. */

const GIB = 2 ** 30;
const model = (id: string, loaded: boolean) => ({ id, state: loaded ? "loaded" : "not-loaded" }) as ModelObject;

function fleetNode(loaded: string[], freeGib: number): FleetNode {
  const footprints = { target: 6, draft: 1, big: 5 };
  const status = {
    models: Object.keys(footprints).map((id) => model(id, loaded.includes(id))),
    busy: {},
    speed: {},
    memory: { ram_free_bytes: freeGib * GIB, vram_free_bytes: null },
    footprints: Object.fromEntries(Object.entries(footprints).map(([id, gib]) => [id, { ram_bytes: gib * GIB, vram_bytes: 0 }])),
  } as unknown as NodeStatus;
  // The link to the node object is never used by placement.
  return new FleetNode({ id: "n", name: "n", connectedAt: 0, link: {} as NodeApi, info: { slots_per_model: 4 } as NodeInfo, status });
}

describe("a model with a draft", () => {
  test("fits only where the model and the draft not yet loaded fit together", () => {
    expect(fleetNode([], 6.5).hasRoomFor("target")).toBe(true);
    expect(fleetNode([], 6.5).hasRoomFor("target", "draft")).toBe(false);
    expect(fleetNode([], 7.5).hasRoomFor("target", "draft")).toBe(true);
    // A loaded draft takes no more room.
    expect(fleetNode(["draft"], 6.5).hasRoomFor("target", "draft")).toBe(true);
  });

  test("a loaded model whose draft has no room beside it counts as not loaded (and not fitting)", () => {
    const candidate = fleetNode(["target"], 4).candidate("target", "big");
    expect([candidate.loaded, candidate.fits]).toEqual([false, false]);
    expect(fleetNode(["target"], 6).candidate("target", "big").loaded).toBe(true);
    expect(fleetNode(["target"], 4).candidate("target").loaded).toBe(true);
  });
});
