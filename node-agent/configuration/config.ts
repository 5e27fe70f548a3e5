import { hostname } from "node:os";
import { CommanderError, type Command } from "commander";
import * as z from "zod";
import { NodeName } from "../../shared/protocol/frames.ts";
import { MAX_SLOTS_PER_MODEL } from "../../shared/protocol/request-schemas.ts";
import { agentProgram } from "./agent-program.ts";
import { ConfigError } from "./config-error.ts";
import { readTokenFile } from "./token-file.ts";
import { readConfigFile, type ConfigFileValues } from "./config-file.ts";
import { attributeName, defaultValue, envName, OPTIONS, optionFromText, type OptionName, type OptionValue } from "./options.ts";
import { currentHost, type Host } from "../platform/host.ts";

export { ConfigError } from "./config-error.ts";

/** Addresses only this machine can reach; anything else makes `/metrics` need a token. */
const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|\[::1\]|localhost)$/i;

/**
 * The agent's settings. Every flag has an environment variable of the same name
 * (`--max-models` ↔ `LMGATE_MAX_MODELS`) and a config file key of the same name
 * (`"max-models"`); a flag wins over the environment, which wins over the config file.
 */
export const AgentConfig = z
  .object({
    serve: z.boolean(),
    gateway: z.url({ protocol: /^(https?|wss?)$/, error: "must be an http(s):// or ws(s):// URL" }).optional(),
    token: z.string().min(1).optional(),
    name: NodeName,
    models: z.array(z.string().min(1)),
    host: z.string().min(1),
    port: z.number().int().min(0).max(65535),
    threads: z.number().int().min(1).max(512).optional(),
    slots: z.number().int().min(1).max(MAX_SLOTS_PER_MODEL),
    contextLength: z.number().int().min(64).optional(),
    maxQueue: z.number().int().min(0),
    maxModels: z.number().int().min(1).optional(),
    maxMemory: z.number().int().min(1).optional(),
    ttl: z.number().int().min(1),
    draftModel: z.array(z.string().regex(/^[^=]+=[^=]+$/, "must be <model>=<draft model>, e.g. qwen2.5-coder-32b=qwen2.5-coder-0.5b")),
    promptLookup: z.array(z.string().min(1)),
    cpu: z.boolean(),
    metrics: z.boolean(),
    metricsHost: z.string().min(1),
    metricsPort: z.number().int().min(0).max(65535),
    metricsToken: z.string().min(1).optional(),
    shutdownTimeout: z.number().int().min(0).max(86_400),
    wakeOnLan: z.boolean(),
    wakePeers: z.boolean(),
    wakeBroadcast: z.ipv4({ error: "must be an IPv4 address" }).optional(),
    wakePort: z.number().int().min(1).max(65535).optional(),
  })
  .refine((config) => config.serve || config.gateway !== undefined, {
    message: "choose a mode: --serve (a local LM Studio-compatible server) or --gateway <url> (join a fleet)",
  })
  .refine((config) => config.gateway === undefined || config.token !== undefined, {
    message: "--gateway needs a node token: LMGATE_TOKEN, --token-file <file> or --token <token>",
  })
  .refine((config) => !config.metrics || config.metricsToken !== undefined || LOOPBACK.test(metricsListenHost(config)), {
    message:
      "--metrics on a non-loopback address would show this machine's traffic to anyone who can reach it: " +
      "set --metrics-token <secret> (scrapers then send 'Authorization: Bearer <secret>'), or serve on 127.0.0.1",
  });
export type AgentConfig = z.infer<typeof AgentConfig>;

/** Where `/metrics` is served: on the API port when serving directly, else on its own port. */
export function metricsListenHost(config: { serve: boolean; host: string; metricsHost: string }): string {
  return config.serve ? config.host : config.metricsHost;
}

/** What the command line asks for: text to print (`--help`, `--version`), a `service` command, or a run. */
export type ParsedCommand = { kind: "print"; text: string } | { kind: "service"; argv: string[] } | { kind: "run"; config: AgentConfig };

type Source = { kind: "flag" } | { kind: "env"; variable: string } | { kind: "file"; path: string } | { kind: "default" };

const OPTION_NAMES = Object.keys(OPTIONS).filter((name): name is OptionName => name !== "config");

/**
 * Parses `lmgate-agent`'s command line (commander), with the environment and the config file,
 * into what to do; throws `ConfigError` with a helpful message. `host` decides how folder lists
 * split and where `~` points.
 */
export function parseAgentCommand(argv: string[], env: NodeJS.ProcessEnv, host: Host = currentHost()): ParsedCommand {
  let parsed: ParsedCommand | undefined;
  let printed = "";
  const program = agentProgram(host)
    .exitOverride()
    .configureOutput({ writeOut: (text) => (printed += text), writeErr: () => {} })
    .action((_options, command: Command) => {
      parsed = { kind: "run", config: configFromCommand(command, env, host) };
    });
  program.commands.find((command) => command.name() === "service")?.action((_options, command: Command) => {
    parsed = { kind: "service", argv: command.args };
  });
  try {
    program.parse(argv, { from: "user" });
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    if (["commander.helpDisplayed", "commander.version"].includes(error.code)) return { kind: "print", text: printed };
    throw new ConfigError(commanderMessage(error));
  }
  if (parsed === undefined) throw new Error("unreachable: commander ran no action");
  return parsed;
}

/** commander's "error: unknown option '--x'\n(Did you mean --y?)" as one sentence of ours. */
export function commanderMessage(error: CommanderError): string {
  const text = error.message.replace(/^error: /, "").replaceAll("\n", " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/**
 * The validated config from a parsed command's flags (the agent's, or `service install`'s), the
 * environment and the config file (`--config` or `LMGATE_CONFIG`): a flag wins over the
 * environment, which wins over the file, which wins over the default.
 */
export function configFromCommand(command: Command, env: NodeJS.ProcessEnv, host: Host): AgentConfig {
  const flags = command.opts<Record<string, unknown>>();
  const configPath = (flags.config as string | undefined) ?? nonEmpty(env.LMGATE_CONFIG);
  const file: ConfigFileValues = configPath === undefined ? {} : readConfigFile(configPath);
  const sources = new Map<OptionName, Source>();

  const get = <N extends OptionName>(name: N): OptionValue<N> | undefined => {
    const flagValue = flags[attributeName(name)] as OptionValue<N> | undefined;
    if (flagValue !== undefined) {
      sources.set(name, { kind: "flag" });
      return flagValue;
    }
    const variable = envName(name);
    const envValue = nonEmpty(env[variable]);
    if (envValue !== undefined) {
      sources.set(name, { kind: "env", variable });
      return optionFromText(name, envValue, variable, host);
    }
    if (file[name] !== undefined && configPath !== undefined) {
      sources.set(name, { kind: "file", path: configPath });
      return file[name] as OptionValue<N>;
    }
    sources.set(name, { kind: "default" });
    return defaultValue(name);
  };

  const values: Record<string, unknown> = Object.fromEntries(OPTION_NAMES.map((name) => [attributeName(name), get(name)]));
  const parsed = AgentConfig.safeParse({
    ...values,
    token: values.token ?? optionalTokenFile(values.tokenFile as string | undefined),
    name: values.name ?? hostname().replace(/[^\w.-]/g, "-").slice(0, 64),
  });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = issue?.path[0];
    if (typeof key !== "string") throw new ConfigError(issue?.message ?? "invalid configuration");
    const name = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`) as OptionName;
    throw new ConfigError(`${describeSource(name, sources.get(name))} ${issue?.message}`);
  }
  return parsed.data;
}

function describeSource(name: OptionName, source: Source | undefined): string {
  switch (source?.kind) {
    case "env":
      return `${source.variable}:`;
    case "file":
      return `"${name}" in ${source.path}:`;
    default:
      return `--${name}:`;
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

const optionalTokenFile = (path: string | undefined) => (path === undefined ? undefined : readTokenFile(path));
