/**
 * `wrangler dev` (workerd) on 127.0.0.1: how this repository runs a Worker locally, for `npm start`
 * (scripts/start.ts), the tests' gateway (test/harness/gateway-process.ts) and the bench's workers.
 * Node's own modules only, so `npm start` pulls in nothing the tests need.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { signalGroup, spawnGroup } from "./process-group.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const WRANGLER = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
const HOST = "127.0.0.1";
/** What `output()` keeps of wrangler's log: a long `npm start` must not grow without end. */
const OUTPUT_LIMIT = 1 << 20;

export interface WranglerDevOptions {
  /** The wrangler config to run. Defaults to the gateway's own `wrangler.toml`; any Worker that answers `/health` works. */
  config?: string;
  port: number;
  /** Local storage (the Fleet's SQLite), kept across restarts in the same folder. */
  persistDir: string;
  /**
   * The Worker's vars and secrets. They go in a temporary env file only this user can read
   * (`--env-file`), never on a command line; wrangler then ignores the `.dev.vars` next to the
   * config, which it reads when there are none.
   */
  vars?: Record<string, string>;
  /** More environment for wrangler itself, e.g. `NO_COLOR`. */
  env?: NodeJS.ProcessEnv;
  /** Everything wrangler prints, as it comes. */
  onOutput?: (text: string, stream: "stdout" | "stderr") => void;
  /** How long to wait for `/health`. Defaults to 60 s (the first bundle is slow on 2 cores). */
  readyTimeoutMs?: number;
  /** Aborted before `/health` answers: wrangler is stopped and the start rejects. */
  signal?: AbortSignal;
}

export interface WranglerDev {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** wrangler's process id, which is also its process group's (workerd is in it). */
  readonly pid: number;
  readonly port: number;
  /** What wrangler printed so far (the last MiB of it). */
  output(): string;
  /** Resolves with wrangler's exit code when it exits, for whatever reason. */
  readonly exited: Promise<number | null>;
  /** Sends `signal` to wrangler and workerd at once (their own process group). */
  kill(signal?: NodeJS.Signals): void;
  /** Stops wrangler and its workerd (SIGTERM, then SIGKILL after 5 s) and removes the env file. */
  stop(): Promise<void>;
}

/** The environment wrangler runs in: quiet about telemetry, and building with this Node. */
export function wranglerEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    // wrangler runs the config's build command through the shell: let `node` there be this Node.
    PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`,
    WRANGLER_SEND_METRICS: "false",
    ...extra,
  };
}

/** Listens on a loopback port (a free one by default; accepting nothing) until `close`; rejects with EADDRINUSE when it is taken. */
export async function holdPort(port = 0): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, HOST, resolve);
  });
  const address = server.address();
  return {
    port: typeof address === "object" && address !== null ? address.port : 0,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A port nobody listens on right now (there is a small race until wrangler binds it). */
export async function freePort(): Promise<number> {
  const held = await holdPort();
  await held.close();
  return held.port;
}

/** Starts `wrangler dev` and resolves once the Worker answers `/health`; rejects, with wrangler's output, if it exits or times out first. */
export async function startWranglerDev(options: WranglerDevOptions): Promise<WranglerDev> {
  const envDir = options.vars === undefined ? undefined : await mkdtemp(join(tmpdir(), "lmgate-wrangler-env-"));
  const removeEnvFile = async () => {
    if (envDir !== undefined) await rm(envDir, { recursive: true, force: true });
  };
  const envFileArgs: string[] = [];
  if (envDir !== undefined) {
    const envFile = join(envDir, "worker.env");
    const lines = Object.entries(options.vars ?? {}).map(([key, value]) => `${key}="${value}"`);
    await writeFile(envFile, `${lines.join("\n")}\n`, { mode: 0o600 });
    envFileArgs.push("--env-file", envFile);
  }

  const args = [
    WRANGLER,
    "dev",
    "--config",
    options.config ?? join(ROOT, "wrangler.toml"),
    "--ip",
    HOST,
    "--port",
    String(options.port),
    "--persist-to",
    options.persistDir,
    ...envFileArgs,
    "--show-interactive-dev-session=false",
    // A port of its own: the default one is taken when several run at once (tests, the bench).
    "--inspector-port",
    String(await freePort()),
  ];
  // A group of its own: wrangler runs workerd as a child, and both must go on stop.
  const child = spawnGroup(process.execPath, args, { cwd: ROOT, env: wranglerEnv(options.env), stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const record = (stream: "stdout" | "stderr") => (chunk: Buffer) => {
    const text = chunk.toString();
    output = (output + text).slice(-OUTPUT_LIMIT);
    options.onOutput?.(text, stream);
  };
  child.stdout?.on("data", record("stdout"));
  child.stderr?.on("data", record("stderr"));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let hasExited = false;
  void exited.then(() => (hasExited = true));


  const stop = async () => {
    if (!hasExited) {
      signalGroup(child, "SIGTERM");
      const timer = setTimeout(() => signalGroup(child, "SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
      // workerd may outlive wrangler by a moment; make sure the port is free for a restart.
      signalGroup(child, "SIGKILL");
    }
    await removeEnvFile();
  };

  const url = `http://${HOST}:${options.port}`;
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (options.signal?.aborted) {
      await stop();
      throw new Error("wrangler dev was stopped before it was ready");
    }
    if (hasExited) {
      await removeEnvFile();
      throw new Error(`wrangler dev exited before it was ready:\n${output}`);
    }
    try {
      const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) });
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      signalGroup(child, "SIGKILL");
      await removeEnvFile();
      throw new Error(`wrangler dev did not answer /health within ${readyTimeoutMs / 1000} s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }

  return {
    url,
    pid: child.pid as number,
    port: options.port,
    output: () => output,
    exited,
    kill: (signal = "SIGKILL") => signalGroup(child, signal),
    stop,
  };
}
