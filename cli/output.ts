import Table from "cli-table3";
import pc from "picocolors";

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
