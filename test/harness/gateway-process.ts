import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, startWranglerDev, wranglerEnv as baseWranglerEnv } from "../../scripts/wrangler-dev.ts";

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
  /** wrangler's process id, which is also its process group's (workerd is in it). */
  readonly pid: number;
  readonly persistDir: string;
  /** Everything wrangler printed so far. */
  output(): string;
  /** Stops wrangler and its workerd (SIGTERM, then SIGKILL after 5 s); removes a temporary persist folder. */
  stop(options?: { keepState?: boolean }): Promise<void>;
  /** Sends `signal` to wrangler and workerd at once (their own process group). */
  kill(signal?: NodeJS.Signals): void;
  readonly exited: Promise<number | null>;
}

/** What wrangler runs in under tests: also non-interactive and without colours. */
const TEST_ENV = { CI: "1", NO_COLOR: "1" };

/** The environment wrangler runs in under tests: quiet, offline, and building with this Node. */
export function wranglerEnv(): NodeJS.ProcessEnv {
  return baseWranglerEnv(TEST_ENV);
}

const secret = (prefix: string) => `${prefix}_${randomBytes(18).toString("base64url")}`;

/**
 * Starts the real gateway (scripts/wrangler-dev.ts: `wrangler dev` on loopback with local
 * persistence, as `npm start` does) with its own secrets, and waits until it answers `/health`.
 * The secrets go in a temporary env file, so the checkout's own `.dev.vars` is ignored.
 */
export async function startGateway(options: GatewayProcessOptions = {}): Promise<GatewayProcess> {
  const secrets = options.secrets ?? { apiKey: secret("lmg"), nodeToken: secret("lmgn"), adminToken: secret("lmga") };
  const port = options.port ?? (await freePort());
  const ownsPersistDir = options.persistDir === undefined;
  const persistDir = options.persistDir ?? (await mkdtemp(join(tmpdir(), "lmgate-gateway-")));
  const worker = await startWranglerDev({
    config: options.config,
    port,
    persistDir,
    vars: {
      LMGATE_API_KEY: secrets.apiKey,
      LMGATE_NODE_TOKEN: secrets.nodeToken,
      LMGATE_ADMIN_TOKEN: secrets.adminToken,
      ...options.vars,
    },
    env: TEST_ENV,
    readyTimeoutMs: options.readyTimeoutMs,
  });
  return {
    ...secrets,
    url: worker.url,
    port,
    pid: worker.pid,
    persistDir,
    output: () => worker.output(),
    kill: (signal) => worker.kill(signal),
    exited: worker.exited,
    async stop(stopOptions = {}) {
      await worker.stop();
      if (ownsPersistDir && !stopOptions.keepState) await rm(persistDir, { recursive: true, force: true });
    },
  };
}
