import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The admin CLI's entry, run with this Node (`node cli/lmgate.ts`), as after `npm install`. */
export const LMGATE_CLI = fileURLToPath(new URL("../../cli/lmgate.ts", import.meta.url));

export interface LmgateRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface LmgateOptions {
  /** The gateway's base URL, passed as `--url`. */
  url: string;
  /** Credentials (`LMGATE_ADMIN_TOKEN`, `LMGATE_API_KEY`): only those given here reach the CLI. */
  env: NodeJS.ProcessEnv;
  /** A folder without the checkout's `.dev.vars`, unless a test puts one there. */
  cwd: string;
  timeoutMs?: number;
}

/** This process's environment with none of the CLI's settings but `given`, and no colours. */
export function lmgateEnv(given: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1", ...given };
  delete env.LMGATE_URL;
  if (given.LMGATE_ADMIN_TOKEN === undefined) delete env.LMGATE_ADMIN_TOKEN;
  if (given.LMGATE_API_KEY === undefined) delete env.LMGATE_API_KEY;
  return env;
}

/**
 * `lmgate …` as a user runs it: its own process, the credentials in its environment, never on the
 * command line; what it printed, and how it exited.
 */
export function lmgate(options: LmgateOptions, ...args: string[]): Promise<LmgateRun> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [LMGATE_CLI, "--url", options.url, ...args],
      { cwd: options.cwd, env: lmgateEnv(options.env), timeout: options.timeoutMs ?? 30_000 },
      (_error, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }),
    );
  });
}
