import type { BenchEnvironment } from "./environment.ts";

/** What every section gets from the runner. */
export interface SectionContext {
  env: BenchEnvironment;
  /** Fewer iterations everywhere: a rough look in a minute or two. */
  quick: boolean;
  /** Overrides the section's own iteration count (for the smoke test). */
  iterations: number | undefined;
  /** Progress, printed as the section goes. */
  log: (message: string) => void;
}

/** One row of the printed table. */
export interface Row {
  section: string;
  measure: string;
  value: string;
  target?: string;
  /** Whether the target is met; absent when the row has no target. */
  met?: boolean;
}

/** A section's result: its numbers (for the JSON) and its rows (for the table). */
export interface SectionResult<T = unknown> {
  data: T;
  rows: Row[];
}

/** Calls `step(0)` … `step(total - 1)` in turn, logging progress about ten times along the way. */
export async function withProgress(label: string, total: number, log: (message: string) => void, step: (index: number) => Promise<void>): Promise<void> {
  const every = Math.max(1, Math.ceil(total / 10));
  for (let index = 0; index < total; index++) {
    await step(index);
    if ((index + 1) % every === 0 || index + 1 === total) log(`${label}: ${index + 1}/${total}`);
  }
}
