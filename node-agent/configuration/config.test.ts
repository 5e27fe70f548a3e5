import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ConfigError, parseAgentCommand, type AgentConfig } from "./config.ts";
import { AGENT_DEFAULTS } from "./defaults.ts";
import { attributeName, OPTIONS, type OptionSpec } from "./options.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lmgate-config-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configFile(content: unknown, name = "agent.json"): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

function config(argv: string[], env: NodeJS.ProcessEnv = {}): AgentConfig {
  const command = parseAgentCommand(argv, env);
  if (command.kind !== "run") throw new Error(`expected a run command, got ${command.kind}`);
  return command.config;
}

function failure(argv: string[], env: NodeJS.ProcessEnv = {}): string {
  try {
    parseAgentCommand(argv, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error("expected a ConfigError");
}

describe("precedence: flag > environment > config file > default", () => {
  test("a config file supplies values the flags and environment leave out, with the flags' names as keys", async () => {
    const path = await configFile({ serve: true, slots: 2, "max-models": 3, threads: 1, models: ["models", "/abs/models"], "shutdown-timeout": 5 });
    expect(config(["--config", path])).toMatchObject({
      serve: true,
      slots: 2,
      maxModels: 3,
      threads: 1,
      shutdownTimeout: 5,
      // Relative folders are relative to the file, not to wherever the agent was started.
      models: [join(dir, "models"), "/abs/models"],
    });
  });

  test("the environment overrides the config file and a flag overrides both", async () => {
    const path = await configFile({ serve: true, slots: 2, port: 1111, cpu: true });
    const env = { LMGATE_CONFIG: path, LMGATE_SLOTS: "3", LMGATE_PORT: "2222" };
    expect(config([], env)).toMatchObject({ slots: 3, port: 2222, cpu: true });
    expect(config(["--slots", "4", "--no-cpu"], env)).toMatchObject({ slots: 4, port: 2222, cpu: false });
    expect(config(["--slots", "4"], { ...env, LMGATE_CPU: "0" })).toMatchObject({ cpu: false });
  });

  test("defaults apply when nothing says otherwise", () => {
    expect(config(["--serve"])).toMatchObject({
      host: "127.0.0.1",
      port: 1234,
      slots: 4,
      maxQueue: 16,
      ttl: 3600,
      cpu: false,
      metrics: false,
      metricsHost: "127.0.0.1",
      metricsPort: 9464,
      shutdownTimeout: 30,
      models: [],
    });
  });

  test("the metrics options come from flags, environment or file like every other", async () => {
    const path = await configFile({ gateway: "https://gw.example", token: "t", metrics: true, "metrics-port": 9999 });
    expect(config(["--config", path], { LMGATE_METRICS_TOKEN: "secret" })).toMatchObject({
      metrics: true,
      metricsPort: 9999,
      metricsToken: "secret",
    });
  });
});

describe("bad input is a ConfigError that says what to fix", () => {
  test("an unknown config key is named, with the likely intended key and the known ones", async () => {
    const message = failure(["--config", await configFile({ serve: true, max_models: 2 })]);
    expect(message).toContain('unknown key "max_models"');
    expect(message).toContain('Did you mean "max-models"?');
    expect(message).toContain("Known keys: serve, gateway");
    expect(failure(["--config", await configFile({ serve: true, maxQueue: 2 })])).toContain('Did you mean "max-queue"?');
    expect(failure(["--config", await configFile({ config: "other.json" })])).toContain("cannot name another");
  });

  test("a wrong type in the config file names the key, the file and what was expected", async () => {
    const path = await configFile({ serve: true, port: "1234" });
    expect(failure(["--config", path])).toBe(`"port" in ${path} must be a whole number, got "1234"`);
    expect(failure(["--config", await configFile({ serve: "yes" })])).toContain('"serve" in');
    expect(failure(["--config", await configFile({ models: [1] })])).toContain("a string or an array of strings");
  });

  test("a missing, unparsable or non-object config file is refused", async () => {
    expect(failure(["--config", join(dir, "missing.json")])).toContain("no such file");
    expect(failure(["--config", await configFile("{ serve: true }")])).toContain("is not valid JSON");
    expect(failure(["--config", await configFile([1, 2])])).toContain("must hold a JSON object");
  });

  test("a value out of range names where it came from", async () => {
    expect(failure(["--serve", "--port", "70000"])).toMatch(/^--port: /);
    expect(failure(["--serve"], { LMGATE_PORT: "70000" })).toMatch(/^LMGATE_PORT: /);
    const path = await configFile({ serve: true, port: 70000 });
    expect(failure(["--config", path])).toMatch(new RegExp(`^"port" in ${path}: `));
    expect(failure(["--serve"], { LMGATE_CPU: "maybe" })).toContain("LMGATE_CPU must be 1 or 0");
  });

  test("metrics reachable beyond loopback need a token", () => {
    expect(failure(["--serve", "--host", "0.0.0.0", "--metrics"])).toContain("--metrics-token");
    expect(config(["--serve", "--host", "0.0.0.0", "--metrics", "--metrics-token", "s"]).metrics).toBe(true);
    // The API port is not the metrics port in gateway mode: its --metrics-host decides.
    expect(config(["--gateway", "http://gw", "--token", "t", "--host", "0.0.0.0", "--metrics"]).metrics).toBe(true);
    expect(failure(["--gateway", "http://gw", "--token", "t", "--metrics-host", "0.0.0.0", "--metrics"])).toContain("--metrics-token");
    expect(config(["--serve", "--host", "::1", "--metrics"]).metrics).toBe(true);
  });
});

test("--help lists every option with its environment variable", () => {
  const help = parseAgentCommand(["--help"], {});
  const HELP = help.kind === "print" ? help.text : "";
  for (const name of Object.keys(OPTIONS)) {
    expect(HELP).toContain(`--${name}`);
    expect(HELP).toContain(`LMGATE_${name.replaceAll("-", "_").toUpperCase()}`);
  }
  for (const line of HELP.split("\n")) expect(line.length).toBeLessThanOrEqual(100);
});

test("--help shows each option's default as the option declares it, the one the config gets", () => {
  const help = parseAgentCommand(["--help"], {});
  const text = (help.kind === "print" ? help.text : "").replace(/\s+/g, " ");
  const defaults = config(["--serve"]) as Record<string, unknown>;
  for (const [name, spec] of Object.entries(OPTIONS) as Array<[string, OptionSpec]>) {
    if (spec.kind === "boolean" || (spec.default === undefined && spec.defaultHelp === undefined)) continue;
    expect(text).toContain(`--${name} ${spec.arg} ${spec.help}. Default: ${spec.defaultHelp ?? String(spec.default)}`);
    if (spec.defaultHelp === undefined) expect(defaults[attributeName(name)]).toEqual(spec.default);
  }
  expect(text).toContain(`--slots <n> parallel requests per loaded model. Default: ${AGENT_DEFAULTS.slots}`);
});

describe("the node token off the command line", () => {
  test("--token-file (or LMGATE_TOKEN_FILE) reads it from a file, trimmed; LMGATE_TOKEN gives it from the environment", async () => {
    const path = await configFile("lmgn_from-a-file\n", "token");
    expect(config(["--gateway", "http://gw", "--token-file", path]).token).toBe("lmgn_from-a-file");
    expect(config(["--gateway", "http://gw"], { LMGATE_TOKEN_FILE: path }).token).toBe("lmgn_from-a-file");
    expect(config(["--gateway", "http://gw"], { LMGATE_TOKEN: "lmgn_from-env" }).token).toBe("lmgn_from-env");
  });

  test("a missing or empty token file is a config error naming it", async () => {
    expect(failure(["--gateway", "http://gw", "--token-file", join(dir, "nope")])).toMatch(/--token-file .*nope: cannot read it \(ENOENT\)/);
    const empty = await configFile("  \n", "empty-token");
    expect(failure(["--gateway", "http://gw", "--token-file", empty])).toContain("is empty");
  });
});

describe("speculative decoding per model", () => {
  test("--draft-model pairs and --prompt-lookup models, from flags or the config file", async () => {
    const flags = config(["--serve", "--draft-model", "big=small", "--draft-model", "coder=coder-draft", "--prompt-lookup", "editor"]);
    expect([flags.draftModel, flags.promptLookup]).toEqual([["big=small", "coder=coder-draft"], ["editor"]]);
    const fromFile = config(["--serve", "--config", await configFile({ "draft-model": ["big=small"], "prompt-lookup": "editor" }, "speculative.json")]);
    expect([fromFile.draftModel, fromFile.promptLookup]).toEqual([["big=small"], ["editor"]]);
    expect(config(["--serve"]).draftModel).toEqual([]);
  });

  test("a draft without its model is refused, naming the form", () => {
    expect(failure(["--serve", "--draft-model", "small"])).toMatch(/--draft-model: must be <model>=<draft model>/);
  });
});
