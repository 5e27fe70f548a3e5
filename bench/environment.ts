/**
 * Everything the bench runs against, started on first use and stopped at the end: the gateway
 * under `wrangler dev`, the platform-floor fixture worker with its echo agent, real agents
 * (`node node-agent/cli.ts`, one engine thread each) and the generated models.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AdminClient } from "../cli/admin-client.ts";
import { AGENT_DEFAULTS } from "../node-agent/configuration/defaults.ts";
import { BENCH_SMALL_MODEL, DEMO_MODELS, ensureDemoModels, ensureModel } from "../node-agent/demo-models/demo-models.ts";
import { startAgent, type AgentProcess } from "../test/harness/agent-process.ts";
import { startGateway, type GatewayProcess } from "../test/harness/gateway-process.ts";
import { workerSocketUrl } from "./dev-proxy.ts";
import type { Target } from "./client.ts";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** The bench's ~0.5 B model lives apart from the test models, so test agents never list it. */
export const BENCH_MODELS_DIR = join(ROOT, ".lmgate/bench-models");
/** The tiny demo models the bench serves, written once (atomically: concurrent runs share them safely). */
const TINY_MODELS_DIR = join(ROOT, ".lmgate/bench-tiny-models");
const FLOOR_CONFIG = join(ROOT, "bench/floor/wrangler.toml");
const FLOOR_ASSETS_CONFIG = join(ROOT, "bench/floor/wrangler.assets.toml");
const ECHO_AGENT = join(ROOT, "bench/floor/echo-agent.ts");

/** Model ids as the agent's catalog names them (file name without `.gguf`, lower-cased). */
export const modelId = (path: string): string => (path.split("/").pop() ?? path).replace(/\.gguf$/i, "").toLowerCase();
export const TINY_CHAT = modelId(DEMO_MODELS[0]?.path ?? "tiny-chat-F32.gguf");
export const SMALL_CHAT = modelId(BENCH_SMALL_MODEL.path);

/** llama.cpp threads per engine: its threads busy-wait, so one per agent on a small machine. */
export const ENGINE_THREADS = 1;
/** Parallel requests per loaded model, the agent's default; llama-server gets the same. */
export const SLOTS = AGENT_DEFAULTS.slots;

export interface Floor {
  url: string;
  /** The same worker behind the gateway's static-assets layer (no echo agent: for /worker-echo). */
  assetsUrl: string;
  stop(): Promise<void>;
}

/** An agent's slots (default `SLOTS`) and context per slot (default: the agent's own). */
export interface NodeLayout {
  slots?: number;
  contextLength?: number;
}

export interface ServingNode {
  name: string;
  agent: AgentProcess;
  /** Its direct-mode API. */
  direct: Target;
}

export type Log = (message: string) => void;

export class BenchEnvironment {
  readonly log: Log;
  #gateway: Promise<GatewayProcess> | undefined;
  #floor: Promise<Floor> | undefined;
  #smallModel: Promise<string> | undefined;
  readonly #nodes = new Map<string, Promise<ServingNode>>();
  readonly #cleanup: Array<() => Promise<unknown>> = [];

  readonly #aroundDevProxy: boolean;

  /**
   * `aroundDevProxy`: agents and clients use the Worker's own socket instead of `wrangler dev`'s
   * public port, whose proxy does not exist on Cloudflare (see dev-proxy.ts).
   */
  constructor(log: Log, { aroundDevProxy = false }: { aroundDevProxy?: boolean } = {}) {
    this.log = log;
    this.#aroundDevProxy = aroundDevProxy;
  }

  async tinyModelsDir(): Promise<string> {
    await ensureDemoModels(TINY_MODELS_DIR);
    return TINY_MODELS_DIR;
  }

  /** Writes the ~0.5 B-parameter synthetic model once (≈20 s), then reuses it. */
  smallModelsDir(): Promise<string> {
    this.#smallModel ??= ensureModel(BENCH_MODELS_DIR, BENCH_SMALL_MODEL, { onProgress: (message) => this.log(`models: ${message}`) }).then(
      () => BENCH_MODELS_DIR,
    );
    return this.#smallModel;
  }

  gateway(): Promise<GatewayProcess> {
    this.#gateway ??= (async () => {
      this.log("starting the gateway (wrangler dev)…");
      const gateway = await startGateway({ readyTimeoutMs: 120_000 });
      this.#cleanup.push(() => gateway.stop());
      this.log(`gateway on ${gateway.url}`);
      if (!this.#aroundDevProxy) return gateway;
      const url = await workerSocketUrl(gateway.pid, gateway.url);
      if (url === null) throw new Error("--around-dev-proxy: the Worker's own socket was not found (it needs pgrep and lsof)");
      this.log(`around wrangler's dev proxy: agents and clients use the Worker's own socket, ${url}`);
      return { ...gateway, url };
    })();
    return this.#gateway;
  }

  async gatewayTarget(): Promise<Target> {
    const gateway = await this.gateway();
    return { label: "gateway", url: gateway.url, apiKey: gateway.apiKey };
  }

  /**
   * The fixture worker of bench/floor under its own `wrangler dev`, with its echo agent connected,
   * and a second copy behind the gateway's static-assets layer.
   */
  floor(): Promise<Floor> {
    this.#floor ??= (async () => {
      this.log("starting the floor fixture worker (wrangler dev, plain and behind [assets]) and its echo agent…");
      const [worker, withAssets] = await Promise.all([
        startGateway({ config: FLOOR_CONFIG, readyTimeoutMs: 120_000 }),
        startGateway({ config: FLOOR_ASSETS_CONFIG, readyTimeoutMs: 120_000 }),
      ]);
      const echo = spawn(process.execPath, [ECHO_AGENT, worker.url], { stdio: ["ignore", "pipe", "pipe"] });
      const floor: Floor = {
        url: worker.url,
        assetsUrl: withAssets.url,
        stop: async () => {
          await stopChild(echo);
          await Promise.all([worker.stop(), withAssets.stop()]);
        },
      };
      this.#cleanup.push(() => floor.stop());
      await waitForLine(echo, /echo agent: connected/, 30_000);
      this.log(`floor on ${worker.url}`);
      return floor;
    })();
    return this.#floor;
  }

  /**
   * An agent that serves its API directly *and* is a node of the gateway, so the two paths an
   * A/B comparison takes end in the same engine. Memoized by name.
   */
  node(name: string, modelDirs: string[], layout: NodeLayout = {}): Promise<ServingNode> {
    let node = this.#nodes.get(name);
    if (node === undefined) {
      node = this.#startNode(name, modelDirs, layout);
      this.#nodes.set(name, node);
    }
    return node;
  }

  /** Stops a node started by `node` (it leaves the gateway). */
  async stopNode(name: string): Promise<void> {
    const node = this.#nodes.get(name);
    if (node === undefined) return;
    this.#nodes.delete(name);
    await (await node).agent.stop();
  }

  async #startNode(name: string, modelDirs: string[], { slots = SLOTS, contextLength }: NodeLayout): Promise<ServingNode> {
    const gateway = await this.gateway();
    const context = contextLength === undefined ? [] : ["--context-length", String(contextLength)];
    this.log(`starting agent ${name} (--serve + --gateway, --threads ${ENGINE_THREADS}, --slots ${slots}, ${[...context, "--metrics"].join(" ")})…`);
    const agent = await startAgent({
      models: modelDirs,
      gateway: { url: gateway.url, token: gateway.nodeToken },
      name,
      // --metrics: the engine section reads how many sequences each decode carried.
      extraArgs: ["--serve", "--port", "0", "--threads", String(ENGINE_THREADS), "--slots", String(slots), ...context, "--metrics"],
      readyTimeoutMs: 120_000,
    });
    this.#cleanup.push(() => agent.stop());
    if (agent.url === undefined) throw new Error(`agent ${name} did not say where it serves:\n${agent.output()}`);
    await until(() => /connected to gateway/.test(agent.output()), 30_000, `agent ${name} to join the gateway`);
    return { name, agent, direct: { label: `direct (${name})`, url: agent.url } };
  }

  /** Loads `model` on a node through its direct API and waits until the gateway sees it loaded there. */
  async load(node: ServingNode, model: string): Promise<void> {
    const response = await fetch(`${node.direct.url}/api/v1/models/load`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model }),
      signal: AbortSignal.timeout(120_000),
    });
    if (!response.ok) throw new Error(`loading ${model} on ${node.name}: HTTP ${response.status}: ${await response.text()}`);
    await response.arrayBuffer();
    await this.#gatewaySees(node, model, "loaded");
  }

  /** Unloads `model` from a node through its direct API and waits until the gateway sees it gone there. */
  async unload(node: ServingNode, model: string): Promise<void> {
    const response = await fetch(`${node.direct.url}/api/v1/models/unload`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ instance_id: model }),
      signal: AbortSignal.timeout(60_000),
    });
    if (!response.ok && response.status !== 404) throw new Error(`unloading ${model} on ${node.name}: HTTP ${response.status}: ${await response.text()}`);
    await response.arrayBuffer();
    await this.#gatewaySees(node, model, "not-loaded");
  }

  /** Waits until the gateway's node list shows `model` in `state` on `node`. */
  async #gatewaySees(node: ServingNode, model: string, state: "loaded" | "not-loaded"): Promise<void> {
    const gateway = await this.gateway();
    const admin = new AdminClient(gateway.url, gateway.adminToken);
    await until(
      async () =>
        (await admin.listNodes()).some(
          (listed) => listed.name === node.name && listed.online && listed.models.some((entry) => entry.id === model && entry.state === state),
        ),
      30_000,
      `the gateway to see ${model} ${state} on ${node.name}`,
    );
  }

  /** A folder of symlinks to the given model files, named as in `files` (relative paths). */
  async linkedModels(files: Array<{ from: string; as: string }>): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), "lmgate-bench-models-"));
    this.#cleanup.push(() => rm(dir, { recursive: true, force: true }));
    for (const file of files) {
      await mkdir(dirname(join(dir, file.as)), { recursive: true });
      await symlink(file.from, join(dir, file.as));
    }
    return dir;
  }

  /** Registers something to stop with the environment. */
  onClose(stop: () => Promise<unknown>): void {
    this.#cleanup.push(stop);
  }

  /** Stops everything, most recently started first; never throws. */
  async close(): Promise<void> {
    while (this.#cleanup.length > 0) {
      const stop = this.#cleanup.pop();
      await stop?.().catch((error: unknown) => this.log(`cleanup: ${error instanceof Error ? error.message : String(error)}`));
    }
  }
}

export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Resolves when the child prints a line matching `pattern`; rejects if it exits first. */
export function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let output = "";
    const timer = setTimeout(() => finish(new Error(`no ${pattern} within ${timeoutMs / 1000} s:\n${output}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (pattern.test(output)) finish();
    };
    const onExit = (code: number | null) => finish(new Error(`exited with code ${code} before ${pattern}:\n${output}`));
    const finish = (error?: Error) => {
      clearTimeout(timer);
      child.stdout?.off("data", onData);
      child.stderr?.off("data", onData);
      child.off("exit", onExit);
      if (error) reject(error);
      else resolve(output);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", onExit);
  });
}

/** SIGTERM, then SIGKILL after 5 s; resolves when the child is gone. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}
