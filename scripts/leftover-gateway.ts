/**
 * A gateway an earlier `npm start` left running. `wrangler dev` leads a process group of its own
 * (with its workerd), so an `npm start` stopped hard (its own group sent SIGTERM then SIGKILL, as a
 * supervisor or a closing terminal may) never stops it, and it keeps the port. `npm start` notes
 * wrangler's pid in a file and removes it on a clean stop; a pid found there whose process is still
 * this checkout's `wrangler dev` on the same port is that leftover, and ours to stop.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

export function recordGateway(file: string, pid: number): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${pid}\n`);
}

export function forgetGateway(file: string): void {
  rmSync(file, { force: true });
}

/** The pid `file` names if that process is still `wrangler` (the script at `wrangler`) running `dev` on `port`. */
export function leftoverGateway(file: string, wrangler: string, port: number): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(file, "utf8").trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const args = commandLine(pid);
  if (args === undefined) return undefined;
  const ours = args.includes(wrangler) && args.includes("dev") && args.join(" ").includes(`--port ${port}`);
  return ours ? pid : undefined;
}

/** A running process's arguments; undefined when it is gone, or where this cannot be read (Windows). */
function commandLine(pid: number): string[] | undefined {
  try {
    if (process.platform === "linux") return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((arg) => arg !== "");
    if (process.platform === "win32") return undefined;
    const line = execFileSync("ps", ["-o", "command=", "-p", String(pid)], { encoding: "utf8" }).trim();
    return line === "" ? undefined : line.split(/\s+/);
  } catch {
    return undefined;
  }
}

/** Stops the leftover and its workerd (its process group): SIGTERM, then SIGKILL if the port is still held after `graceMs`. */
export async function stopLeftover(pid: number, portFree: () => Promise<boolean>, graceMs = 5_000): Promise<void> {
  const signal = (sent: NodeJS.Signals) => {
    try {
      process.kill(-pid, sent);
    } catch {
      // already gone
    }
  };
  signal("SIGTERM");
  const deadline = Date.now() + graceMs;
  while (!(await portFree())) {
    if (Date.now() > deadline) {
      signal("SIGKILL");
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  // workerd may outlive wrangler by a moment, as on a normal stop.
  signal("SIGKILL");
  const killedBy = Date.now() + 5_000;
  while (!(await portFree()) && Date.now() < killedBy) await new Promise((resolve) => setTimeout(resolve, 100));
}
