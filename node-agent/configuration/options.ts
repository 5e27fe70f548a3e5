import { delimiter } from "node:path";
import { Option, type Command } from "commander";
import { ConfigError } from "./config-error.ts";
import { AGENT_DEFAULTS } from "./defaults.ts";
import { expandHome, splitPathList, type Host } from "../platform/host.ts";

/**
 * Every option of `lmgate-agent`, once: the flags (declared on commander by `addAgentOptions`,
 * which also writes their `--help`), the environment variables (`LMGATE_` + the name in capitals)
 * and the config file keys (the flag's name) all come from here.
 */
export interface OptionSpec {
  readonly kind: "boolean" | "string" | "integer" | "list";
  /** Placeholder shown in `--help`, e.g. `<n>`. */
  readonly arg?: string;
  readonly group: keyof typeof GROUPS;
  readonly help: string;
  /** The value when no flag, environment variable or config file gives one. */
  readonly default?: boolean | number | string | readonly string[];
  /** The default in words, for `--help`, when the agent works it out at start-up. */
  readonly defaultHelp?: string;
  /** Not allowed in a config file (only `config` itself). */
  readonly notInFile?: true;
}

const GROUPS = {
  mode: "Mode (at least one):",
  models: "Models and engine:",
  serve: "Direct mode (--serve):",
  gateway: "Gateway mode (--gateway):",
  wake: "Wake-on-LAN (gateway mode):",
  metrics: "Prometheus metrics:",
  lifecycle: "Start-up and shutdown:",
} as const;

export const OPTIONS = {
  serve: { kind: "boolean", group: "mode", help: "serve the LM Studio-compatible API on this machine", default: false },
  gateway: { kind: "string", arg: "<url>", group: "mode", help: "join this gateway, e.g. https://lmgate.example.workers.dev (dials out; works behind NAT)" },

  models: {
    kind: "list",
    arg: "<dir>",
    group: "models",
    help: `folder of .gguf files laid out <publisher>/<repo>/<file>.gguf; repeatable (env: ${delimiter}-separated)`,
    default: [],
    defaultHelp: "LM Studio's models folder if there is one, else generated demo models",
  },
  threads: { kind: "integer", arg: "<n>", group: "models", help: "CPU threads per model", defaultHelp: "chosen for this machine (1 on a 2-core CPU-only box)" },
  slots: { kind: "integer", arg: "<n>", group: "models", help: "parallel requests per loaded model", default: AGENT_DEFAULTS.slots },
  "context-length": {
    kind: "integer",
    arg: "<n>",
    group: "models",
    help: "context per slot, in tokens",
    defaultHelp: `as trained, halved while the load takes over ${AGENT_DEFAULTS.defaultLoadMemoryShare * 100}% of memory (at least ${AGENT_DEFAULTS.contextLength})`,
  },
  "max-queue": { kind: "integer", arg: "<n>", group: "models", help: "requests waiting per model before a 503", default: AGENT_DEFAULTS.maxQueue },
  "max-memory": { kind: "integer", arg: "<GiB>", group: "models", help: "memory (RAM and VRAM) models may take; bigger loads are refused", defaultHelp: "all of it" },
  "max-models": { kind: "integer", arg: "<n>", group: "models", help: "models loaded at once before a JIT load evicts one", defaultHelp: "memory decides" },
  ttl: { kind: "integer", arg: "<seconds>", group: "models", help: "idle time before a JIT-loaded model unloads", default: AGENT_DEFAULTS.ttlSeconds },
  "draft-model": {
    kind: "list",
    arg: "<model>=<draft>",
    group: "models",
    help: "speculative decoding by default for a model: a smaller model of its vocabulary drafts (LM Studio's draft model); a request's draft_model wins; repeatable",
    default: [],
  },
  "prompt-lookup": {
    kind: "list",
    arg: "<model>",
    group: "models",
    help: "draft from the prompt by default for this model (pays off when answers repeat the input, as code edits do); a request's prompt_lookup wins; repeatable",
    default: [],
  },
  cpu: { kind: "boolean", group: "models", help: "never use a GPU (CUDA, Vulkan and Metal are otherwise picked automatically)", default: false },

  host: { kind: "string", arg: "<ip>", group: "serve", help: "address to serve on", default: AGENT_DEFAULTS.host, defaultHelp: `${AGENT_DEFAULTS.host} (this machine only)` },
  port: { kind: "integer", arg: "<n>", group: "serve", help: "port to serve on; 0 picks a free one", default: AGENT_DEFAULTS.port },

  token: {
    kind: "string",
    arg: "<token>",
    group: "gateway",
    help: "this node's token, from `lmgate nodes tokens create`; on the command line anyone can read it with `ps`, so prefer LMGATE_TOKEN or --token-file",
  },
  "token-file": { kind: "string", arg: "<file>", group: "gateway", help: "read the node token from this file instead" },
  name: { kind: "string", arg: "<name>", group: "gateway", help: "node name shown in the fleet", defaultHelp: "this machine's hostname" },

  "wake-on-lan": {
    kind: "boolean",
    group: "wake",
    help: "tell the gateway this machine's MAC and broadcast addresses, so a peer on its network can wake it when its models are wanted",
    default: false,
  },
  "wake-peers": { kind: "boolean", group: "wake", help: "send magic packets for other nodes on this machine's networks when the gateway asks", default: false },
  "wake-broadcast": {
    kind: "string",
    arg: "<ip>",
    group: "wake",
    help: "the broadcast address to report for this machine, instead of each network's own (for unusual networks, or 127.0.0.1 in tests)",
  },
  "wake-port": { kind: "integer", arg: "<n>", group: "wake", help: "send magic packets to this UDP port only", defaultHelp: "9 and 7" },

  metrics: {
    kind: "boolean",
    group: "metrics",
    help: "serve Prometheus metrics at /metrics: on the API port with --serve, else on --metrics-host:--metrics-port",
    default: false,
  },
  "metrics-host": { kind: "string", arg: "<ip>", group: "metrics", help: "address of the metrics port (gateway mode only)", default: AGENT_DEFAULTS.metricsHost },
  "metrics-port": { kind: "integer", arg: "<n>", group: "metrics", help: "metrics port (gateway mode only); 0 picks a free one", default: AGENT_DEFAULTS.metricsPort },
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
    help: "on SIGINT/SIGTERM, how long running requests may take to finish before they are stopped",
    default: AGENT_DEFAULTS.shutdownTimeoutSeconds,
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

/** `--max-models` ↔ `LMGATE_MAX_MODELS`. */
export function envName(name: string): string {
  return `LMGATE_${name.replaceAll("-", "_").toUpperCase()}`;
}

/** `max-models` → `maxModels`: how commander and `AgentConfig` name an option's value. */
export function attributeName(name: string): string {
  return name.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

/** An option's value when nothing gives one, if it has one. */
export function defaultValue<N extends OptionName>(name: N): OptionValue<N> | undefined {
  const value = (OPTIONS[name] as OptionSpec).default;
  return (Array.isArray(value) ? [...value] : value) as OptionValue<N> | undefined;
}

/** A flag's or environment variable's text as the option's type; `where` names it in errors. */
export function optionFromText<N extends OptionName>(name: N, raw: string | string[], where: string, host: Host): OptionValue<N> {
  const spec: OptionSpec = OPTIONS[name];
  switch (spec.kind) {
    case "boolean": {
      const text = String(raw).toLowerCase();
      if (["1", "true", "yes", "on"].includes(text)) return true as OptionValue<N>;
      if (["0", "false", "no", "off"].includes(text)) return false as OptionValue<N>;
      throw new ConfigError(`${where} must be 1 or 0 (true or false), got "${String(raw)}"`);
    }
    case "integer": {
      const text = String(raw).trim();
      if (!/^-?\d+$/.test(text)) throw new ConfigError(`${where} must be a whole number, got "${String(raw)}"`);
      return Number(text) as OptionValue<N>;
    }
    case "list":
      // Flags repeat (`--models a --models b`); the environment separates with the host's path delimiter.
      // Lists are folders: `~` is expanded here, since cmd.exe and the environment leave it as it is.
      return (Array.isArray(raw) ? raw.map((item) => expandHome(item, host)) : splitPathList(raw, host)) as OptionValue<N>;
    case "string":
      return String(raw) as OptionValue<N>;
  }
}

/**
 * Declares every option on `command` (the agent itself, or `service install`, which takes the
 * same ones), each in its `--help` group with its default and environment variable. Booleans
 * also get a `--no-<flag>` (unlisted). Flag text becomes the option's type as it is parsed, so a
 * bad value fails with the message `optionFromText` gives the environment's.
 */
export function addAgentOptions(command: Command, host: Host): Command {
  for (const [name, spec] of Object.entries(OPTIONS) as Array<[keyof typeof OPTIONS, OptionSpec]>) {
    const shownDefault = spec.defaultHelp ?? (spec.kind === "boolean" || spec.default === undefined ? undefined : String(spec.default));
    const description = `${spec.help}${shownDefault === undefined ? "" : `. Default: ${shownDefault}`}\nenv ${envName(name)}${spec.kind === "boolean" ? "=1" : ""}`;
    const option = new Option(spec.kind === "boolean" ? `--${name}` : `--${name} ${spec.arg ?? "<value>"}`, description).helpGroup(GROUPS[spec.group]);
    if (spec.kind === "boolean") {
      command.addOption(option).addOption(new Option(`--no-${name}`).hideHelp());
      continue;
    }
    const parse = (text: string, previous: unknown): unknown => {
      if (name === "config") return text;
      if (spec.kind !== "list") return optionFromText(name, text, `--${name}`, host);
      return [...((previous as string[] | undefined) ?? []), ...(optionFromText(name, [text], `--${name}`, host) as string[])];
    };
    command.addOption(option.argParser(parse));
  }
  return command.optionsGroup("Other:").helpOption("-h, --help", "show this help");
}
