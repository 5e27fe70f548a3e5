import Table from "cli-table3";
import pc from "picocolors";
import type { ModelFootprint, NodeMemory } from "../shared/protocol.ts";

export interface Column<T> {
  header: string;
  value: (row: T) => string | number | null;
}

/** Prints rows as a table for people, or as JSON for scripts (`--json`). */
export function printRows<T>(rows: T[], columns: Column<T>[], json: boolean, empty: string): void {
  if (json) {
    console.log(JSON.stringify(rows, null, 2));
    return;
  }
  if (rows.length === 0) {
    console.log(pc.dim(empty));
    return;
  }
  const table = new Table({ head: columns.map((column) => pc.bold(column.header)), style: { head: [], border: [] } });
  for (const row of rows) table.push(columns.map((column) => String(column.value(row) ?? "—")));
  console.log(table.toString());
}

export const day = (iso: string | null) => (iso === null ? null : iso.slice(0, 16).replace("T", " "));

export function bytes(count: number): string {
  return count >= 2 ** 30 ? `${(count / 2 ** 30).toFixed(1)} GiB` : `${Math.round(count / 2 ** 20)} MiB`;
}

/** A node's free memory, VRAM first when it has a GPU; null when the node does not report it. */
export const freeMemory = (memory: NodeMemory | undefined) =>
  memory === undefined ? null : memory.vram_free_bytes === null ? `${bytes(memory.ram_free_bytes)} RAM` : `${bytes(memory.vram_free_bytes)} VRAM, ${bytes(memory.ram_free_bytes)} RAM`;

/** What a model takes to load, for a model list: " (1.2 GiB)", or nothing when unknown. */
export const footprint = (needs: ModelFootprint | undefined) => (needs === undefined ? "" : ` (${bytes(needs.ram_bytes + needs.vram_bytes)})`);
