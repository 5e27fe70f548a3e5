import { delimiter } from "node:path";

/**
 * Every option of `lmgate-agent`, once: the flags, the environment variables (`LMGATE_` + the
 * name in capitals), the config file keys (the flag's name) and `--help` all come from here.
 */
export interface OptionSpec {
  readonly kind: "boolean" | "string" | "integer" | "list";
  /** Placeholder shown in `--help`, e.g. `<n>`. */
  readonly arg?: string;
  readonly group: keyof typeof GROUPS;
  readonly help: string;
  /** Not allowed in a config file (only `config` itself). */
  readonly notInFile?: true;
}

const GROUPS = {
  mode: "Mode (at least one)",
  models: "Models and engine",
  serve: "Direct mode (--serve)",
  gateway: "Gateway mode (--gateway)",
  metrics: "Prometheus metrics",
  lifecycle: "Start-up and shutdown",
} as const;

export const OPTIONS = {
  serve: { kind: "boolean", group: "mode", help: "serve the LM Studio-compatible API on this machine" },
  gateway: { kind: "string", arg: "<url>", group: "mode", help: "join this gateway, e.g. https://lmgate.example.workers.dev (dials out; works behind NAT)" },

  models: {
    kind: "list",
    arg: "<dir>",
    group: "models",
    help: `folder of .gguf files laid out <publisher>/<repo>/<file>.gguf; repeatable (env: ${delimiter}-separated). Default: LM Studio's models folder if there is one, else generated demo models`,
  },
  threads: { kind: "integer", arg: "<n>", group: "models", help: "CPU threads per model. Default: chosen for this machine (1 on a 2-core CPU-only box)" },
  slots: { kind: "integer", arg: "<n>", group: "models", help: "parallel requests per loaded model. Default: 4" },
  "context-length": { kind: "integer", arg: "<n>", group: "models", help: "context per slot, in tokens. Default: min(trained, 4096)" },
  "max-queue": { kind: "integer", arg: "<n>", group: "models", help: "requests waiting per model before a 503. Default: 16" },
  "max-memory": { kind: "integer", arg: "<GiB>", group: "models", help: "memory (RAM and VRAM) models may take; bigger loads are refused. Default: all of it" },
  "max-models": { kind: "integer", arg: "<n>", group: "models", help: "models loaded at once before a JIT load evicts one. Default: memory decides" },
  ttl: { kind: "integer", arg: "<seconds>", group: "models", help: "idle time before a JIT-loaded model unloads. Default: 3600" },
  cpu: { kind: "boolean", group: "models", help: "never use a GPU (CUDA, Vulkan and Metal are otherwise picked automatically)" },

  host: { kind: "string", arg: "<ip>", group: "serve", help: "address to serve on. Default: 127.0.0.1 (this machine only)" },
  port: { kind: "integer", arg: "<n>", group: "serve", help: "port to serve on; 0 picks a free one. Default: 1234" },

  token: {
    kind: "string",
    arg: "<token>",
    group: "gateway",
    help: "this node's token, from `lmgate nodes tokens create`; on the command line anyone can read it with `ps`, so prefer LMGATE_TOKEN or --token-file",
  },
  "token-file": { kind: "string", arg: "<file>", group: "gateway", help: "read the node token from this file instead" },
  name: { kind: "string", arg: "<name>", group: "gateway", help: "node name shown in the fleet. Default: this machine's hostname" },

  metrics: {
    kind: "boolean",
    group: "metrics",
    help: "serve Prometheus metrics at /metrics: on the API port with --serve, else on --metrics-host:--metrics-port",
  },
  "metrics-host": { kind: "string", arg: "<ip>", group: "metrics", help: "address of the metrics port (gateway mode only). Default: 127.0.0.1" },
  "metrics-port": { kind: "integer", arg: "<n>", group: "metrics", help: "metrics port (gateway mode only); 0 picks a free one. Default: 9464" },
  "metrics-token": {
    kind: "string",
    arg: "<secret>",
    group: "metrics",
    help: "require 'Authorization: Bearer <secret>' on /metrics; needed when it is reachable beyond 127.0.0.1",
  },

  "shutdown-timeout": {
    kind: "integer",
    arg: "<seconds>",
    group: "lifecycle",
    help: "on SIGINT/SIGTERM, how long running requests may take to finish before they are stopped. Default: 30",
  },
  config: {
    kind: "string",
    arg: "<file>",
    group: "lifecycle",
    help: "JSON file of options, keys named like the flags: {\"models\": [\"~/models\"], \"max-models\": 2}",
    notInFile: true,
  },
} as const satisfies Record<string, OptionSpec>;

export type OptionName = Exclude<keyof typeof OPTIONS, "config">;

type ValueOfKind<K extends OptionSpec["kind"]> = K extends "boolean" ? boolean : K extends "integer" ? number : K extends "list" ? string[] : string;
export type OptionValue<N extends OptionName> = ValueOfKind<(typeof OPTIONS)[N]["kind"]>;

const HELP_WIDTH = 100;
const COLUMN = 30;

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  return [...lines, line];
}

function optionLines(): string[] {
  const lines: string[] = [];
  const entries = Object.entries(OPTIONS) as Array<[string, OptionSpec]>;
  for (const [group, title] of Object.entries(GROUPS)) {
    lines.push("", `${title}:`);
    for (const [name, spec] of entries.filter(([, candidate]) => candidate.group === group)) {
      const flag = spec.kind === "boolean" ? `--${name}` : `--${name} ${spec.arg ?? "<value>"}`;
      const variable = `LMGATE_${name.replaceAll("-", "_").toUpperCase()}`;
      const [first = "", ...rest] = wrap(spec.help, HELP_WIDTH - COLUMN - 2);
      lines.push(`  ${flag.padEnd(COLUMN)}${first}`);
      for (const line of [...rest, `env ${variable}${spec.kind === "boolean" ? "=1" : ""}`]) lines.push(`  ${"".padEnd(COLUMN)}${line}`);
    }
  }
  return lines;
}

export const HELP = [
  "lmgate-agent — serve GGUF models on this machine, alone or as a node of an lmgate gateway",
  "",
  "Usage:",
  "  lmgate-agent --serve [options]                          LM Studio-compatible server here",
  "  lmgate-agent --gateway <url> --token <token> [options]  join a gateway (dials out; no open port)",
  "  lmgate-agent --config agent.json                        everything from a config file",
  "  lmgate-agent service install|status|uninstall [options] start at login (service --help)",
  ...optionLines(),
  "",
  "Other:",
  `  ${"-h, --help".padEnd(COLUMN)}show this help`,
  `  ${"-v, --version".padEnd(COLUMN)}show the version`,
  "",
  "Every option can also come from its environment variable or from the config file (same names",
  "as the flags, without the dashes in front). A flag wins over the environment, which wins over",
  "the config file. Boolean flags can be turned off with --no-<flag>, e.g. --no-cpu.",
  "Relative model folders in a config file are relative to the file.",
  "",
  "Examples:",
  "  lmgate-agent --serve --models ~/.lmstudio/models",
  "  lmgate-agent --gateway https://lmgate.example.workers.dev --token $NODE_TOKEN --metrics",
  "",
  "On SIGINT or SIGTERM the agent stops taking new requests (503 with Retry-After), lets running",
  "ones finish within --shutdown-timeout, leaves the gateway, and exits 0; a second signal exits",
  "at once.",
  "",
].join("\n");
