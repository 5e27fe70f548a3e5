/**
 * Runs the real Claude Code (`claude -p`) and Codex (`codex exec`) against a running `npm start`
 * and its long-context model, through the gateway and, with `--direct <url>`, against an agent in
 * direct mode. Each runs with a temporary HOME (nothing of yours is read or changed) on a short
 * task in a temporary folder; the script exits non-zero if any run does not exit 0.
 *
 *   npm start                               # in one terminal
 *   node scripts/run-agents.ts              # in another; CLAUDE_BIN / CODEX_BIN if not on PATH
 *   node scripts/run-agents.ts --direct http://127.0.0.1:1235   # also an agent run with --serve
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { LOCAL_HOST, LOCAL_PORT } from "../shared/host/local-address.ts";

const { values } = parseArgs({
  options: {
    gateway: { type: "string", default: `http://${LOCAL_HOST}:${process.env.LMGATE_PORT ?? LOCAL_PORT}` },
    direct: { type: "string" },
    model: { type: "string", default: "long-chat-q8_0" },
  },
});
const DEV_KEY_FILE = fileURLToPath(new URL("../.lmgate/dev-key", import.meta.url));
const TASK = "Say hello.";
/** A run that has not finished by then is stopped and counted as failed. */
const RUN_TIMEOUT_MS = 600_000;

function run(label: string, command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<number | null> {
  console.log(`\n== ${label}: ${command} ${args.map((arg) => JSON.stringify(arg)).join(" ")}`);
  const startedAt = performance.now();
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "inherit", "inherit"] });
    const timer = setTimeout(() => child.kill("SIGTERM"), RUN_TIMEOUT_MS);
    child.once("error", (error) => {
      console.error(`${label}: ${error.message}`);
      resolve(null);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      console.log(`== ${label}: exit ${code} after ${((performance.now() - startedAt) / 1000).toFixed(1)} s`);
      resolve(code);
    });
  });
}

/** The model's context as the server states it (the loaded one once loaded), which neither CLI can learn. */
async function contextWindow(url: string, key: string): Promise<number> {
  const response = await fetch(`${url}/v1/models/${encodeURIComponent(values.model)}`, { headers: { authorization: `Bearer ${key}` } });
  if (!response.ok) throw new Error(`GET ${url}/v1/models/${values.model}: ${response.status} ${await response.text()}`);
  const { context_length } = (await response.json()) as { context_length: number };
  return context_length;
}

async function claudeCode(url: string, key: string, window: number, label: string): Promise<number | null> {
  const home = await mkdtemp(join(tmpdir(), "lmgate-claude-home-"));
  try {
    return await run(label, process.env.CLAUDE_BIN ?? "claude", ["-p", TASK], home, {
      PATH: process.env.PATH,
      HOME: home,
      ANTHROPIC_BASE_URL: url,
      ANTHROPIC_AUTH_TOKEN: key,
      ANTHROPIC_MODEL: values.model,
      ANTHROPIC_DEFAULT_HAIKU_MODEL: values.model,
      // Claude Code does not know the model's window (it assumes 1,000,000 tokens for a model id
      // that is not Claude's): this one sets it, so it compacts before the context is full.
      // (CLAUDE_CODE_AUTO_COMPACT_WINDOW cannot: it raises any value below 100,000 to 100,000.)
      CLAUDE_CODE_MAX_CONTEXT_TOKENS: String(window),
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
      DISABLE_TELEMETRY: "1",
    });
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

async function codex(url: string, key: string, window: number, label: string): Promise<number | null> {
  const home = await mkdtemp(join(tmpdir(), "lmgate-codex-home-"));
  try {
    await mkdir(join(home, ".codex"));
    await writeFile(
      join(home, ".codex", "config.toml"),
      [
        `model = "${values.model}"`,
        `model_provider = "lmgate"`,
        // The model's context, which Codex cannot learn from a custom provider.
        `model_context_window = ${window}`,
        "",
        "[model_providers.lmgate]",
        `name = "lmgate"`,
        `base_url = "${url}/v1"`,
        `env_key = "LMGATE_API_KEY"`,
        `wire_api = "responses"`,
        "",
      ].join("\n"),
    );
    return await run(label, process.env.CODEX_BIN ?? "codex", ["exec", "--skip-git-repo-check", "--sandbox", "read-only", TASK], home, {
      PATH: process.env.PATH,
      HOME: home,
      LMGATE_API_KEY: key,
    });
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

const key = (await readFile(DEV_KEY_FILE, "utf8")).trim();
const targets: Array<[string, string, string]> = [["gateway", values.gateway, key]];
// An agent in direct mode takes no key; the CLIs want one all the same.
if (values.direct) targets.push(["direct", values.direct, "unused"]);
const results: Array<[string, number | null]> = [];
for (const [name, url, token] of targets) {
  const window = await contextWindow(url, token);
  console.log(`\n${values.model} on ${name} (${url}): a context of ${window} tokens`);
  results.push([`claude -p (${name})`, await claudeCode(url, token, window, `claude -p (${name})`)]);
  results.push([`codex exec (${name})`, await codex(url, token, window, `codex exec (${name})`)]);
}
console.log("\n" + results.map(([label, code]) => `${label}: exit ${code}`).join("\n"));
if (results.some(([, code]) => code !== 0)) process.exitCode = 1;
