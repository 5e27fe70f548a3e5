/**
 * `npm run bench [-- --quick] [-- --only overhead,throughput] [-- --iterations N] [-- --out DIR]`
 *
 * Starts what it needs (the gateway under wrangler dev, the floor fixture worker, agents, the
 * generated models, llama-server when LLAMA_SERVER is set), runs each comparison interleaved,
 * prints one table and writes it with every number as JSON to bench/results/<timestamp>.json.
 */
import { parseArgs } from "node:util";
import { loadavg } from "node:os";
import { runArrival } from "./arrival.ts";
import { runConcurrency } from "./concurrency.ts";
import { runFleetScale } from "./fleet-scale.ts";
import { BenchEnvironment } from "./environment.ts";
import { runLlamaServer } from "./llama-server.ts";
import { runMemory } from "./memory.ts";
import { runMultiTurn } from "./multi-turn.ts";
import { runOverhead } from "./overhead.ts";
import { runScaleOut } from "./scale-out.ts";
import { runSpeculative } from "./speculative.ts";
import { describeMachine, machineLine, printTable, writeReport, type BenchReport } from "./report.ts";
import type { Row, SectionContext, SectionResult } from "./section.ts";
import { runThroughput } from "./throughput.ts";

/** In running order: memory first, on a fresh agent, while no other node holds its models. */
const SECTIONS: Record<string, (context: SectionContext) => Promise<SectionResult>> = {
  memory: runMemory,
  overhead: runOverhead,
  throughput: runThroughput,
  concurrency: runConcurrency,
  engine: runLlamaServer,
  arrival: runArrival,
  "multi-turn": runMultiTurn,
  "scale-out": runScaleOut,
  "fleet-scale": runFleetScale,
  speculative: runSpeculative,
};

const HELP = `Usage: npm run bench -- [options]
  --quick             fewer iterations everywhere (a rough look in a couple of minutes)
  --only <sections>   comma-separated, of: ${Object.keys(SECTIONS).join(", ")}
  --iterations <n>    override each section's repetition count (tiny values are for smoke tests)
  --out <dir>         where the JSON goes (default bench/results)
  --around-dev-proxy  agents and clients use the gateway Worker's own socket, not wrangler dev's
                      proxy in front of it (which Cloudflare does not have; see bench/dev-proxy.ts)
Environment: LLAMA_SERVER=<path to llama-server> adds the engine and arrival comparisons
(build one with scripts/build-llama-server.sh).`;

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    iterations: { type: "string" },
    out: { type: "string" },
    "around-dev-proxy": { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const only = values.only?.split(",").map((name) => name.trim()).filter((name) => name !== "");
const unknown = only?.filter((name) => !(name in SECTIONS)) ?? [];
if (unknown.length > 0) {
  console.error(`unknown section(s): ${unknown.join(", ")}\n${HELP}`);
  process.exit(2);
}
const iterations = values.iterations === undefined ? undefined : Number(values.iterations);
if (iterations !== undefined && !(Number.isInteger(iterations) && iterations > 0)) {
  console.error("--iterations must be a positive integer");
  process.exit(2);
}

const started = performance.now();
const startedAt = new Date().toISOString();
const machine = describeMachine();
const log = (message: string) => console.log(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${message}`);
log(`lmgate bench on ${machineLine(machine)}`);
if (machine.loadAverage.start > 0.5 * machine.cores) log("note: the machine is busy; expect noisy numbers");

const env = new BenchEnvironment(log, { aroundDevProxy: values["around-dev-proxy"] });
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    interrupted = true;
    log(`${signal}: stopping everything the bench started…`);
    void env.close().then(() => process.exit(130));
  });
}

const sections: Record<string, unknown> = {};
const failures: Record<string, string> = {};
const rows: Row[] = [];
const context: SectionContext = { env, quick: values.quick, iterations, log };
try {
  for (const [name, run] of Object.entries(SECTIONS)) {
    if (only !== undefined && !only.includes(name)) continue;
    log(`── ${name} ──`);
    try {
      const result = await run(context);
      sections[name] = result.data;
      rows.push(...result.rows);
    } catch (error) {
      if (interrupted) break;
      const message = error instanceof Error ? error.message : String(error);
      failures[name] = message;
      log(`${name} FAILED: ${message}`);
    }
  }
} finally {
  await env.close();
}

machine.loadAverage.end = loadavg()[0] ?? 0;
const report: BenchReport = {
  startedAt,
  durationSeconds: Math.round((performance.now() - started) / 100) / 10,
  options: { quick: values.quick, only: only ?? Object.keys(SECTIONS), iterations: iterations ?? null, aroundDevProxy: values["around-dev-proxy"], llamaServer: process.env.LLAMA_SERVER ?? null },
  machine,
  sections,
  failures,
  rows,
};
const path = await writeReport(report, values.out);
console.log("");
console.log(`lmgate bench, ${startedAt} — ${machineLine(machine)}`);
printTable(rows);
for (const [name, message] of Object.entries(failures)) console.log(`${name}: FAILED: ${message}`);
console.log(`took ${report.durationSeconds} s; JSON: ${path}`);
process.exit(Object.keys(failures).length > 0 ? 1 : 0);
