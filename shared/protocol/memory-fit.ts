import type { ModelFootprint, NodeMemory } from "./frames.ts";

/** Whether a model that needs `footprint` fits in `free` memory; the agent and the gateway's placement judge alike. */
export function fitsIn(footprint: ModelFootprint, free: NodeMemory): boolean {
  return footprint.ram_bytes <= free.ram_free_bytes && footprint.vram_bytes <= (free.vram_free_bytes ?? 0);
}
