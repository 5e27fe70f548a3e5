import { parseArgs } from "node:util";
import { hostname } from "node:os";
import * as z from "zod";
import { NodeName } from "../shared/protocol.ts";
import { ConfigError } from "./config-error.ts";
import { readTokenFile } from "./token-file.ts";
import { readConfigFile, type ConfigFileValues } from "./config-file.ts";
import { OPTIONS, type OptionName, type OptionValue } from "./options.ts";
import { currentHost, expandHome, splitPathList, type Host } from "./platform/host.ts";

export { HELP } from "./options.ts";
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
    slots: z.number().int().min(1).max(64),
    contextLength: z.number().int().min(64).optional(),
    maxQueue: z.number().int().min(0),
    maxModels: z.number().int().min(1).optional(),
    maxMemory: z.number().int().min(1).optional(),
    ttl: z.number().int().min(1),
    cpu: z.boolean(),
    metrics: z.boolean(),
    metricsHost: z.string().min(1),
    metricsPort: z.number().int().min(0).max(65535),
    metricsToken: z.string().min(1).optional(),
    shutdownTimeout: z.number().int().min(0).max(86_400),
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

export type ParsedCommand = { kind: "help" } | { kind: "version" } | { kind: "run"; config: AgentConfig };


type Source = { kind: "flag" } | { kind: "env"; variable: string } | { kind: "file"; path: string } | { kind: "default" };

/**
 * Parses flags, environment and config file into a validated config; throws `ConfigError` with a
 * helpful message. `host` decides how folder lists split and where `~` points.
 */
export function parseAgentCommand(argv: string[], env: NodeJS.ProcessEnv, host: Host = currentHost()): ParsedCommand {
  let values: ReturnType<typeof parseFlags>;
  try {
    values = parseFlags(argv);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  if (values.help) return { kind: "help" };
  if (values.version) return { kind: "version" };

  const configPath = values.config ?? nonEmpty(env.LMGATE_CONFIG);
  const file: ConfigFileValues = configPath === undefined ? {} : readConfigFile(configPath);
  const sources = new Map<OptionName, Source>();

  const get = <N extends OptionName>(name: N): OptionValue<N> | undefined => {
    const flagValue = (values as Record<string, unknown>)[name];
    if (flagValue !== undefined) {
      sources.set(name, { kind: "flag" });
      return fromText(name, flagValue, `--${name}`, host);
    }
    const variable = envName(name);
    const envValue = nonEmpty(env[variable]);
    if (envValue !== undefined) {
      sources.set(name, { kind: "env", variable });
      return fromText(name, envValue, variable, host);
    }
    if (file[name] !== undefined && configPath !== undefined) {
      sources.set(name, { kind: "file", path: configPath });
      return file[name] as OptionValue<N>;
    }
    sources.set(name, { kind: "default" });
    return undefined;
  };

  const parsed = AgentConfig.safeParse({
    serve: get("serve") ?? false,
    gateway: get("gateway"),
    token: get("token") ?? optionalTokenFile(get("token-file")),
    name: get("name") ?? hostname().replace(/[^\w.-]/g, "-").slice(0, 64),
    models: get("models") ?? [],
    host: get("host") ?? "127.0.0.1",
    port: get("port") ?? 1234,
    threads: get("threads"),
    slots: get("slots") ?? 4,
    contextLength: get("context-length"),
    maxQueue: get("max-queue") ?? 16,
    maxModels: get("max-models"),
    maxMemory: get("max-memory"),
    ttl: get("ttl") ?? 3600,
    cpu: get("cpu") ?? false,
    metrics: get("metrics") ?? false,
    metricsHost: get("metrics-host") ?? "127.0.0.1",
    metricsPort: get("metrics-port") ?? 9464,
    metricsToken: get("metrics-token"),
    shutdownTimeout: get("shutdown-timeout") ?? 30,
  });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = issue?.path[0];
    if (typeof key !== "string") throw new ConfigError(issue?.message ?? "invalid configuration");
    const name = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`) as OptionName;
    throw new ConfigError(`${describeSource(name, sources.get(name))} ${issue?.message}`);
  }
  return { kind: "run", config: parsed.data };
}

/** `--max-models` ↔ `LMGATE_MAX_MODELS`. */
export function envName(name: string): string {
  return `LMGATE_${name.replaceAll("-", "_").toUpperCase()}`;
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

/** A flag's or environment variable's text as the option's type; `where` names it in errors. */
function fromText<N extends OptionName>(name: N, raw: unknown, where: string, host: Host): OptionValue<N> {
  const spec = OPTIONS[name];
  switch (spec.kind) {
    case "boolean": {
      if (typeof raw === "boolean") return raw as OptionValue<N>;
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
      return (Array.isArray(raw) ? raw.map((item) => expandHome(String(item), host)) : splitPathList(String(raw), host)) as OptionValue<N>;
    case "string":
      return String(raw) as OptionValue<N>;
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

const FLAGS = {
  ...Object.fromEntries(
    Object.entries(OPTIONS).map(([name, spec]) => [
      name,
      spec.kind === "boolean" ? { type: "boolean" } : spec.kind === "list" ? { type: "string", multiple: true } : { type: "string" },
    ]),
  ),
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "v" },
} as Record<string, { type: "boolean" | "string"; multiple?: boolean; short?: string }>;

function parseFlags(argv: string[]) {
  const { values } = parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false, allowNegative: true });
  return values as Record<string, string | boolean | string[] | undefined> & { help?: boolean; version?: boolean; config?: string };
}

const optionalTokenFile = (path: string | undefined) => (path === undefined ? undefined : readTokenFile(path));
