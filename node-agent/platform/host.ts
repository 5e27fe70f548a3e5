import { homedir } from "node:os";
import { posix, win32, type PlatformPath } from "node:path";

/**
 * The machine the agent runs on, as far as file locations go: which OS, whose home, which
 * environment. Passed in rather than read where used, so Windows and macOS rules run in tests here.
 */
export interface Host {
  platform: NodeJS.Platform;
  home: string;
  env: NodeJS.ProcessEnv;
}

export function currentHost(): Host {
  return { platform: process.platform, home: homedir(), env: process.env };
}

/** The host's path rules: `C:\Users\me` joins and splits as Windows does, wherever this runs. */
export function pathsOf(host: Pick<Host, "platform">): PlatformPath {
  return host.platform === "win32" ? win32 : posix;
}

/**
 * A list of folders from one environment variable, split on the host's delimiter (`;` on Windows,
 * where `:` is part of `C:\`, else `:`), each with `~` expanded.
 */
export function splitPathList(text: string, host: Host): string[] {
  return text
    .split(pathsOf(host).delimiter)
    .filter((item) => item !== "")
    .map((item) => expandHome(item, host));
}

/** `~`, `~/x` (and `~\x` on Windows) → the home folder; shells do this for flags, but not in env vars, config files or cmd.exe. */
export function expandHome(path: string, host: Host): string {
  const separators = host.platform === "win32" ? ["/", "\\"] : ["/"];
  if (path === "~") return host.home;
  if (path.startsWith("~") && separators.includes(path[1] ?? "")) return pathsOf(host).join(host.home, path.slice(2));
  return path;
}
