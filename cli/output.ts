import Table from "cli-table3";
import pc from "picocolors";
import type { ModelFootprint, NodeMemory } from "../shared/protocol/frames.ts";

export interface Column<T> {
  header: string;
  /** Printed as plain text (see `plain`), so it carries no colour of its own: `style` adds that. */
  value: (row: T) => string | number | null;
  style?: (text: string) => string;
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
  for (const row of rows) {
    table.push(columns.map((column) => (column.style ?? String)(plain(String(column.value(row) ?? "—")))));
  }
  console.log(table.toString());
}

/**
 * Text that came from the gateway (names, models, messages) with its control and bidi-override
 * characters shown as "?": whoever named a node or a model must not drive the admin's terminal.
 * JSON output needs none of this: JSON.stringify escapes them.
 */
export const plain = (text: string): string => text.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, "?");

export const day = (iso: string | null) => (iso === null ? null : iso.slice(0, 16).replace("T", " "));

export function bytes(count: number): string {
  return count >= 2 ** 30 ? `${(count / 2 ** 30).toFixed(1)} GiB` : `${Math.round(count / 2 ** 20)} MiB`;
}

/** A node's free memory, VRAM first when it has a GPU; null when the node does not report it. */
export const freeMemory = (memory: NodeMemory | undefined) =>
  memory === undefined ? null : memory.vram_free_bytes === null ? `${bytes(memory.ram_free_bytes)} RAM` : `${bytes(memory.vram_free_bytes)} VRAM, ${bytes(memory.ram_free_bytes)} RAM`;

/** What a model takes to load, for a model list: " (1.2 GiB)", or nothing when unknown. */
export const footprint = (needs: ModelFootprint | undefined) => (needs === undefined ? "" : ` (${bytes(needs.ram_bytes + needs.vram_bytes)})`);
