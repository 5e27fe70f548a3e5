import { execFileSync } from "node:child_process";
import { expect, test } from "vitest";
import { signalGroup, spawnGroup } from "./process-group.ts";

/** A child started by spawnGroup leads its own group and goes with what it started; Windows gets `taskkill /T`. */

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until(condition: () => boolean): Promise<void> {
  for (let tries = 0; !condition(); tries++) {
    if (tries > 200) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

test("on POSIX the child leads a process group of its own, and one signal to it reaches its children too", { skip: process.platform === "win32" }, async () => {
  // The child starts a grandchild and prints its pid; both sleep.
  const script = `const { spawn } = require("node:child_process"); const g = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" }); console.log(g.pid); setInterval(() => {}, 1000);`;
  const child = spawnGroup(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "ignore"] });
  const grandchild = await new Promise<number>((resolve) => child.stdout?.once("data", (chunk: Buffer) => resolve(Number(chunk.toString().trim()))));
  const pid = child.pid as number;
  try {
    expect(Number(execFileSync("ps", ["-o", "pgid=", "-p", String(pid)]).toString().trim())).toBe(pid);
    expect(Number(execFileSync("ps", ["-o", "pgid=", "-p", String(grandchild)]).toString().trim())).toBe(pid);

    signalGroup(child, "SIGTERM");
    await until(() => !alive(pid) && !alive(grandchild));
    // Gone already: no error.
    signalGroup(child, "SIGKILL");
  } finally {
    for (const leftover of [pid, grandchild]) if (alive(leftover)) process.kill(leftover, "SIGKILL");
  }
});

test("on Windows the tree is ended with taskkill /T /F; elsewhere the group gets the signal", () => {
  const child = { pid: 4242 } as Parameters<typeof signalGroup>[0];
  const taskkill: string[][] = [];
  const killed: Array<[number, string]> = [];
  const options = { taskkill: (args: string[]) => void taskkill.push(args), killGroup: (pid: number, signal: NodeJS.Signals) => void killed.push([pid, signal]) };
  signalGroup(child, "SIGTERM", { ...options, platform: "win32" });
  expect(taskkill).toEqual([["/pid", "4242", "/T", "/F"]]);
  expect(killed).toEqual([]);
  signalGroup(child, "SIGTERM", { ...options, platform: "darwin" });
  expect(killed).toEqual([[4242, "SIGTERM"]]);
});
