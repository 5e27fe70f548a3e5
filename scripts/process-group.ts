/**
 * A child that is stopped with everything it started (wrangler runs workerd), and only when we
 * say: on POSIX it leads a process group of its own, so a terminal's Ctrl-C, which reaches every
 * process of the foreground group, does not reach it as well as the one stop we send. Windows has
 * no process groups, and a detached child there gets a console window of its own: it stays in
 * ours, and its tree is ended with `taskkill /T`.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from "node:child_process";

export function spawnGroup(command: string, args: string[], options: SpawnOptions, platform: NodeJS.Platform = process.platform): ChildProcess {
  return spawn(command, args, { ...options, detached: platform !== "win32", windowsHide: true });
}

export interface GroupSignalOptions {
  platform?: NodeJS.Platform;
  /** Sends a POSIX signal to a process group (`process.kill(-pid, …)`). */
  killGroup?: (pid: number, signal: NodeJS.Signals) => void;
  /** Runs `taskkill` on Windows. */
  taskkill?: (args: string[]) => void;
}

/** Signals a child started by `spawnGroup` and everything it started. A child already gone is no error. */
export function signalGroup(child: ChildProcess, signal: NodeJS.Signals, options: GroupSignalOptions = {}): void {
  const pid = child.pid;
  if (pid === undefined) return;
  const platform = options.platform ?? process.platform;
  try {
    if (platform === "win32") {
      // Windows delivers no SIGTERM: without /F taskkill asks politely, which console programs ignore.
      const run = options.taskkill ?? ((args: string[]) => void spawnSync("taskkill", args, { stdio: "ignore", windowsHide: true }));
      run(["/pid", String(pid), "/T", "/F"]);
    } else {
      (options.killGroup ?? ((group, sent) => process.kill(-group, sent)))(pid, signal);
    }
  } catch {
    // already gone
  }
}
