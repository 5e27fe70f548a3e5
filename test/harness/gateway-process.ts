import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const WRANGLER = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
const HOST = "127.0.0.1";

export interface GatewayProcessOptions {
  /** The wrangler config to run. Defaults to the gateway's own `wrangler.toml`; any Worker that answers `/health` works. */
  config?: string;
  /** Defaults to a free port. Pass the previous gateway's port to restart it in place. */
  port?: number;
  /** Local Durable Object storage. Defaults to a fresh temporary folder, removed by `stop()`. */
  persistDir?: string;
  /** The three secrets; random ones by default. */
  secrets?: GatewaySecrets;
  /** Extra vars, e.g. `LMGATE_HEARTBEAT_TIMEOUT_MS` for faster fault tests. */
  vars?: Record<string, string>;
  /** How long to wait for `/health`. Defaults to 60 s (the first bundle is slow on 2 cores). */
  readyTimeoutMs?: number;
}

export interface GatewaySecrets {
  apiKey: string;
  nodeToken: string;
  adminToken: string;
}

export interface GatewayProcess extends GatewaySecrets {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  readonly persistDir: string;
  /** Everything wrangler printed so far. */
  output(): string;
  /** Stops wrangler and its workerd (SIGTERM, then SIGKILL after 5 s); removes a temporary persist folder. */
  stop(options?: { keepState?: boolean }): Promise<void>;
  /** Sends `signal` to wrangler and workerd at once (their own process group). */
  kill(signal?: NodeJS.Signals): void;
  readonly exited: Promise<number | null>;
}

/** Listens on a free loopback port (accepting nothing) until `close`. */
export async function holdPort(): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, HOST, resolve);
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

/** The environment wrangler runs in under tests: quiet, offline, and building with this Node. */
export function wranglerEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    // wrangler runs the config's build command through the shell: let `node` there be this Node.
    PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`,
    WRANGLER_SEND_METRICS: "false",
    CI: "1",
    NO_COLOR: "1",
  };
}

const secret = (prefix: string) => `${prefix}_${randomBytes(18).toString("base64url")}`;

/**
 * Starts the real gateway: `wrangler dev` (workerd) on loopback with local persistence, the way
 * `npm run gateway:dev` does, and waits until it answers `/health`. The secrets go in a
 * temporary env file: with `--env-file`, wrangler ignores the checkout's own `.dev.vars`.
 */
export async function startGateway(options: GatewayProcessOptions = {}): Promise<GatewayProcess> {
  const secrets = options.secrets ?? { apiKey: secret("lmg"), nodeToken: secret("lmgn"), adminToken: secret("lmga") };
  const port = options.port ?? (await freePort());
  const ownsPersistDir = options.persistDir === undefined;
  const persistDir = options.persistDir ?? (await mkdtemp(join(tmpdir(), "lmgate-gateway-")));
  const envDir = await mkdtemp(join(tmpdir(), "lmgate-gateway-env-"));
  const envFile = join(envDir, "gateway.env");
  const vars: Record<string, string> = {
    LMGATE_API_KEY: secrets.apiKey,
    LMGATE_NODE_TOKEN: secrets.nodeToken,
    LMGATE_ADMIN_TOKEN: secrets.adminToken,
    ...options.vars,
  };
  await writeFile(envFile, Object.entries(vars).map(([key, value]) => `${key}="${value}"`).join("\n") + "\n", { mode: 0o600 });

  const args = [
    WRANGLER,
    "dev",
    "--config",
    options.config ?? join(ROOT, "wrangler.toml"),
    "--ip",
    HOST,
    "--port",
    String(port),
    "--persist-to",
    persistDir,
    "--env-file",
    envFile,
    "--show-interactive-dev-session=false",
    "--inspector-port",
    String(await freePort()),
  ];
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: ROOT,
    env: wranglerEnv(),
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group: wrangler runs workerd as a child, and both must go on stop.
    detached: true,
  });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));

  const signalGroup = (signal: NodeJS.Signals) => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };

  const url = `http://${HOST}:${port}`;
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const deadline = Date.now() + readyTimeoutMs;
  let exitedEarly = false;
  void exited.then(() => (exitedEarly = true));
  for (;;) {
    if (exitedEarly) {
      await rm(envDir, { recursive: true, force: true });
      throw new Error(`wrangler dev exited before it was ready:\n${output}`);
    }
    try {
      const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) });
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      signalGroup("SIGKILL");
      await rm(envDir, { recursive: true, force: true });
      throw new Error(`wrangler dev did not answer /health within ${readyTimeoutMs / 1000} s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }

  return {
    ...secrets,
    url,
    port,
    persistDir,
    output: () => output,
    kill: (signal = "SIGKILL") => signalGroup(signal),
    exited,
    async stop(stopOptions = {}) {
      if (child.exitCode === null && child.signalCode === null) {
        signalGroup("SIGTERM");
        const timer = setTimeout(() => signalGroup("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
        // workerd may outlive wrangler by a moment; make sure the port is free for a restart.
        signalGroup("SIGKILL");
      }
      await rm(envDir, { recursive: true, force: true });
      if (ownsPersistDir && !stopOptions.keepState) await rm(persistDir, { recursive: true, force: true });
    },
  };
}
