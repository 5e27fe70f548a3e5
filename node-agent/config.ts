import { parseArgs } from "node:util";
import { delimiter } from "node:path";
import { hostname } from "node:os";
import { z } from "zod";

/**
 * The agent's settings. Every flag has an environment variable of the same name
 * (`--max-models` ↔ `LMGATE_MAX_MODELS`); a flag wins over the environment.
 */
export const AgentConfig = z
  .object({
    serve: z.boolean(),
    gateway: z.url({ protocol: /^(https?|wss?)$/, error: "--gateway must be an http(s):// or ws(s):// URL" }).optional(),
    token: z.string().min(1).optional(),
    name: z.string().min(1).max(64).regex(/^[\w.-]+$/, "--name may use letters, digits, '.', '_' and '-'"),
    models: z.array(z.string().min(1)),
    host: z.string().min(1),
    port: z.number().int().min(0).max(65535),
    threads: z.number().int().min(1).max(512).optional(),
    slots: z.number().int().min(1).max(64),
    contextLength: z.number().int().min(64).optional(),
    maxQueue: z.number().int().min(0),
    maxModels: z.number().int().min(1).optional(),
    ttl: z.number().int().min(1),
    cpu: z.boolean(),
  })
  .refine((config) => config.serve || config.gateway !== undefined, {
    message: "choose a mode: --serve (a local LM Studio-compatible server) or --gateway <url> (join a fleet)",
  })
  .refine((config) => config.gateway === undefined || config.token !== undefined, {
    message: "--gateway needs a node token: --token <token> or LMGATE_TOKEN",
  });
export type AgentConfig = z.infer<typeof AgentConfig>;

const FLAGS = {
  serve: { type: "boolean" },
  gateway: { type: "string" },
  token: { type: "string" },
  name: { type: "string" },
  models: { type: "string", multiple: true },
  host: { type: "string" },
  port: { type: "string" },
  threads: { type: "string" },
  slots: { type: "string" },
  "context-length": { type: "string" },
  "max-queue": { type: "string" },
  "max-models": { type: "string" },
  ttl: { type: "string" },
  cpu: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "v" },
} as const;

export const HELP = `lmgate-agent — serve GGUF models on this machine, alone or as a node of an lmgate gateway

Usage:
  lmgate-agent --serve [options]                           LM Studio-compatible server on this machine
  lmgate-agent --gateway <url> --token <token> [options]   join a gateway (dials out; works behind NAT)

Options (each also read from the environment variable shown):
  --serve                 serve the API locally                          LMGATE_SERVE=1
  --gateway <url>         gateway to join, e.g. https://lmgate.example.workers.dev   LMGATE_GATEWAY
  --token <token>         this node's token, from the gateway's admin     LMGATE_TOKEN
  --name <name>           node name shown in the fleet (default: hostname)   LMGATE_NAME
  --models <dir>          model directory, repeatable (<publisher>/<repo>/<file>.gguf)
                          default: generated demo models                  LMGATE_MODELS (${delimiter}-separated)
  --host <ip>             address to serve on (default 127.0.0.1)         LMGATE_HOST
  --port <n>              port to serve on (default 1234; 0 = any free)   LMGATE_PORT
  --threads <n>           CPU threads per model (default: chosen for this machine)   LMGATE_THREADS
  --slots <n>             parallel requests per loaded model (default 4)  LMGATE_SLOTS
  --context-length <n>    context per slot (default: min(trained, 4096))  LMGATE_CONTEXT_LENGTH
  --max-queue <n>         requests waiting per model before 503 (default 16)   LMGATE_MAX_QUEUE
  --max-models <n>        models loaded at once before JIT evicts (default: memory decides)   LMGATE_MAX_MODELS
  --ttl <seconds>         idle time before a JIT-loaded model unloads (default 3600)   LMGATE_TTL
  --cpu                   never use a GPU                                 LMGATE_CPU=1
  -h, --help              show this help
  -v, --version           show the version
`;

export type ParsedCommand = { kind: "help" } | { kind: "version" } | { kind: "run"; config: AgentConfig };

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Parses flags and environment into a validated config; throws `ConfigError` with a helpful message. */
export function parseAgentCommand(argv: string[], env: NodeJS.ProcessEnv): ParsedCommand {
  let values: ReturnType<typeof parseFlags>;
  try {
    values = parseFlags(argv);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  if (values.help) return { kind: "help" };
  if (values.version) return { kind: "version" };

  const text = (flag: keyof typeof FLAGS & string): string | undefined => {
    const value = values[flag as keyof typeof values];
    if (typeof value === "string") return value;
    const fromEnv = env[`LMGATE_${flag.replaceAll("-", "_").toUpperCase()}`];
    return fromEnv === undefined || fromEnv === "" ? undefined : fromEnv;
  };
  const flag = (name: "serve" | "cpu") => values[name] === true || ["1", "true", "yes"].includes(text(name) ?? "");
  const integer = (name: keyof typeof FLAGS & string) => {
    const value = text(name);
    if (value === undefined) return undefined;
    if (!/^-?\d+$/.test(value)) throw new ConfigError(`--${name} must be a whole number, got "${value}"`);
    return Number(value);
  };
  const modelsFromEnv = env.LMGATE_MODELS?.split(delimiter).filter((dir) => dir !== "") ?? [];

  const parsed = AgentConfig.safeParse({
    serve: flag("serve"),
    gateway: text("gateway"),
    token: text("token"),
    name: text("name") ?? hostname().replace(/[^\w.-]/g, "-").slice(0, 64),
    models: values.models ?? modelsFromEnv,
    host: text("host") ?? "127.0.0.1",
    port: integer("port") ?? 1234,
    threads: integer("threads"),
    slots: integer("slots") ?? 4,
    contextLength: integer("context-length"),
    maxQueue: integer("max-queue") ?? 16,
    maxModels: integer("max-models"),
    ttl: integer("ttl") ?? 3600,
    cpu: flag("cpu"),
  });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? `--${String(issue.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: ` : "";
    throw new ConfigError(`${where}${issue?.message}`);
  }
  return { kind: "run", config: parsed.data };
}

function parseFlags(argv: string[]) {
  return parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }).values;
}
