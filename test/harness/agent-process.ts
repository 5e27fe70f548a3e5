import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parsePrometheus, series } from "./prometheus-text.ts";

const CLI = fileURLToPath(new URL("../../node-agent/cli.ts", import.meta.url));

export interface AgentProcessOptions {
  /** An installed `lmgate-agent` executable to run instead of the repository's TypeScript. */
  bin?: string;
  /** Model directories (--models, repeated). */
  models: string[];
  /** Join a gateway instead of serving locally, with the node token itself or a file that holds it. */
  gateway?: { url: string; token: string } | { url: string; tokenFile: string };
  name?: string;
  /** Direct mode port; 0 (the default) picks a free one. */
  port?: number;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** How long to wait for the agent to say it is serving or connected. */
  readyTimeoutMs?: number;
}

export interface AgentProcess {
  readonly process: ChildProcess;
  /** Direct mode only: the base URL it serves on. */
  readonly url: string | undefined;
  /** Everything the agent printed so far, stdout and stderr interleaved. */
  output(): string;
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, then waits for exit; resolves to the exit code. */
  stop(): Promise<number | null>;
  exited: Promise<number | null>;
}

const READY = /lmgate-agent: (serving on (http:\/\/\S+)|connected to gateway)/;

/** Starts a real agent process (`node node-agent/cli.ts`, or `bin`) and waits until it is ready. */
export async function startAgent(options: AgentProcessOptions): Promise<AgentProcess> {
  const args = [...(options.bin ? [] : [CLI]), ...options.models.flatMap((dir) => ["--models", dir])];
  // The token goes in the environment: nothing secret on a command line (ps shows it to everyone).
  if (options.gateway) args.push("--gateway", options.gateway.url, ...("tokenFile" in options.gateway ? ["--token-file", options.gateway.tokenFile] : []));
  else args.push("--serve", "--port", String(options.port ?? 0));
  if (options.name) args.push("--name", options.name);
  args.push(...(options.extraArgs ?? []));

  const child = spawn(options.bin ?? process.execPath, args, {
    // NO_COLOR: the tests read the banner as text, and picocolors colours it whenever CI is set.
    env: { ...process.env, LMGATE_THREADS: "1", NO_COLOR: "1", ...(options.gateway && "token" in options.gateway ? { LMGATE_TOKEN: options.gateway.token } : {}), ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));

  const url = await new Promise<string | undefined>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`agent not ready after ${options.readyTimeoutMs ?? 60_000} ms:\n${output}`));
    }, options.readyTimeoutMs ?? 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = READY.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[2]);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited with code ${code} before it was ready:\n${output}`));
    });
  });

  return {
    process: child,
    url,
    output: () => output,
    kill: (signal = "SIGKILL") => child.kill(signal),
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
}

/** The completion tokens an agent's own engine counted for `model`, from its `--metrics` endpoint (the URL it printed). */
export async function countedCompletionTokens(agent: AgentProcess, model: string): Promise<number> {
  const url = /metrics on (http:\/\/\S+)/.exec(agent.output())?.[1];
  if (url === undefined) throw new Error(`the agent serves no metrics (start it with --metrics):\n${agent.output()}`);
  return parsePrometheus(await (await fetch(url)).text()).samples.get(series("lmgate_agent_completion_tokens_total", { model })) ?? 0;
}
