/** The bench's output: one table for people, one JSON file under bench/results/ for later comparison. */
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, loadavg, platform, release, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { printRows, type Column } from "../cli/output.ts";
import type { Row } from "./section.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const RESULTS_DIR = join(ROOT, "bench/results");

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  wrangler: string;
  nodeLlamaCpp: string;
  llamaCpp: string;
  /** 1-minute load average when the run started and ended: other work on the machine skews the numbers. */
  loadAverage: { start: number; end?: number };
}

export interface BenchReport {
  startedAt: string;
  durationSeconds: number;
  options: Record<string, unknown>;
  machine: Machine;
  sections: Record<string, unknown>;
  /** Sections that failed, with why; their rows are missing from the table. */
  failures: Record<string, string>;
  rows: Row[];
}

const packageVersion = (name: string): string => {
  try {
    return (JSON.parse(readFileSync(join(ROOT, "node_modules", name, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
};

export function describeMachine(): Machine {
  let llamaCpp = "unknown";
  try {
    llamaCpp = (JSON.parse(readFileSync(join(ROOT, "node_modules/node-llama-cpp/llama/llama.cpp.info.json"), "utf8")) as { tag: string }).tag;
  } catch {
    // not installed the usual way
  }
  return {
    cpu: cpus()[0]?.model.trim() ?? "unknown",
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    os: `${platform()} ${release()}`,
    node: process.version,
    wrangler: packageVersion("wrangler"),
    nodeLlamaCpp: packageVersion("node-llama-cpp"),
    llamaCpp,
    loadAverage: { start: loadavg()[0] ?? 0 },
  };
}

export const machineLine = (machine: Machine): string =>
  `${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.os}; Node ${machine.node}, wrangler ${machine.wrangler}, ` +
  `node-llama-cpp ${machine.nodeLlamaCpp} (llama.cpp ${machine.llamaCpp}); load average ${machine.loadAverage.start.toFixed(2)}` +
  (machine.loadAverage.end === undefined ? "" : ` → ${machine.loadAverage.end.toFixed(2)}`);

const COLUMNS: Column<Row>[] = [
  { header: "section", value: (row) => row.section },
  { header: "measure", value: (row) => row.measure },
  { header: "value", value: (row) => row.value },
  { header: "target", value: (row) => row.target ?? "" },
  { header: "met", value: (row) => (row.met === undefined ? "" : row.met ? "yes" : "NO") },
];

export function printTable(rows: Row[]): void {
  // Each section's name only on its first row: the table reads as groups.
  const grouped = rows.map((row, index) => (index > 0 && rows[index - 1]?.section === row.section ? { ...row, section: "" } : row));
  printRows(grouped, COLUMNS, false, "no results");
}

/** Writes the report as `<dir>/<timestamp>.json`; returns the path. */
export async function writeReport(report: BenchReport, dir = RESULTS_DIR): Promise<string> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${report.startedAt.replaceAll(":", "-").replace(/\.\d+Z$/, "Z")}.json`);
  await writeFile(path, `${JSON.stringify(report, null, 2)}\n`);
  return path;
}
