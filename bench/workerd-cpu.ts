/**
 * CPU time spent by every local workerd process (the gateway's and the floor's `wrangler dev`),
 * read from /proc. Latency on a shared 2-core machine mixes in waiting; CPU time is what a
 * request actually costs the runtime, and what Workers bill.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

/** A clock of workerd's total CPU time in ms; null where there is no /proc (Linux only). */
export function workerdCpuClock(): (() => number) | null {
  if (process.platform !== "linux") return null;
  const ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  return () => {
    let ticks = 0;
    for (const pid of readdirSync("/proc")) {
      if (!/^\d+$/.test(pid)) continue;
      try {
        if (!readFileSync(`/proc/${pid}/comm`, "utf8").startsWith("workerd")) continue;
        // Fields after the command name: state is the 1st, utime the 12th, stime the 13th.
        const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
        ticks += Number(fields[11]) + Number(fields[12]);
      } catch {
        // The process ended between listing and reading.
      }
    }
    return (ticks * 1000) / ticksPerSecond;
  };
}
