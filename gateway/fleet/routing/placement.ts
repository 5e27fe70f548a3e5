import { noCapacity, type ApiError } from "../../../shared/protocol/api-error.ts";
import type { FleetNode } from "../nodes/fleet-node.ts";

/** Retry-After when no holder has room: memory frees up when idle models reach their TTL. */
const NO_ROOM_RETRY_AFTER_S = 30;

/** The answer when every online node that holds `model` lacks the free memory to load it. */
export function noRoom(model: string, holders: FleetNode[]): ApiError {
  const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  const nodes = holders.map((node) => {
    const needs = node.status.footprints?.[model];
    const free = node.status.memory;
    if (needs === undefined || free === undefined) return node.name;
    const vram = free.vram_free_bytes === null ? "" : `, ${gib(needs.vram_bytes)} VRAM with ${gib(free.vram_free_bytes)} free`;
    return `${node.name} needs ${gib(needs.ram_bytes)} RAM with ${gib(free.ram_free_bytes)} free${vram}`;
  });
  return noCapacity(`Cannot load "${model}": no node that holds it has the memory free for it: ${nodes.join("; ")}.`, NO_ROOM_RETRY_AFTER_S);
}
