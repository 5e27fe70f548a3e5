import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, expect, test } from "vitest";
import type { OverheadData } from "../../bench/overhead.ts";
import type { BenchReport } from "../../bench/report.ts";

/**
 * The bench harness itself runs (the benchmarks are not part of `npm test`): `npm run bench`'s
 * runner, on the overhead section only with a handful of rounds, starts the gateway, the floor
 * worker and its echo agent and an agent, prints the table and writes well-formed JSON.
 */

const RUNNER = fileURLToPath(new URL("../../bench/run.ts", import.meta.url));
let out: string | undefined;

afterAll(async () => {
  if (out !== undefined) await rm(out, { recursive: true, force: true });
});

test("npm run bench -- --only overhead runs end to end and writes its JSON", { timeout: 240_000 }, async () => {
  out = await mkdtemp(join(tmpdir(), "lmgate-bench-smoke-"));
  const { stdout } = await promisify(execFile)(process.execPath, [RUNNER, "--only", "overhead", "--iterations", "5", "--out", out], {
    timeout: 230_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  expect(stdout).toContain("ours = gateway − direct − floor");

  const files = await readdir(out);
  expect(files).toHaveLength(1);
  const report = JSON.parse(await readFile(join(out, files[0] as string), "utf8")) as BenchReport;
  expect(report.failures).toEqual({});
  expect(report.machine.cores).toBeGreaterThan(0);
  const overhead = report.sections.overhead as OverheadData;
  expect(overhead.iterations).toBe(5);
  for (const path of [overhead.direct, overhead.gateway, overhead.workerEcho, overhead.durableObjectEcho, overhead.durableObjectStreamEcho, overhead.assetsWorkerEcho, overhead.gatewayNoKey, overhead.gatewayUnknownModel]) {
    expect(path.n).toBe(5);
    for (const value of [path.p50, path.p99, path.min, path.max]) {
      expect(Number.isFinite(value)).toBe(true);
      expect(value).toBeGreaterThan(0);
    }
  }
  for (const value of [overhead.added.p50, overhead.added.p99, overhead.ours.p50, overhead.ours.p99]) expect(Number.isFinite(value)).toBe(true);
  expect(report.rows.map((row) => row.measure)).toContain("ours = gateway − direct − floor");
  // workerd's CPU time comes from /proc: measured on Linux. How much is the bench's to report, not
  // a pass/fail here: on a machine busy with other work a block's difference even came out negative.
  if (process.platform === "linux") {
    const cpu = overhead.workerdCpuPerRequest;
    expect(cpu).not.toBeNull();
    for (const value of Object.values(cpu ?? {})) expect(Number.isFinite(value)).toBe(true);
  }
});
