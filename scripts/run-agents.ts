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
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "inherit", "inherit"] });
    const timer = setTimeout(() => child.kill("SIGTERM"), RUN_TIMEOUT_MS);
    child.once("error", (error) => {
      console.error(`${label}: ${error.message}`);
      resolve(null);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      console.log(`== ${label}: exit ${code}`);
      resolve(code);
    });
  });
}

async function claudeCode(url: string, key: string, label: string): Promise<number | null> {
  const home = await mkdtemp(join(tmpdir(), "lmgate-claude-home-"));
  try {
    return await run(label, process.env.CLAUDE_BIN ?? "claude", ["-p", TASK], home, {
      PATH: process.env.PATH,
      HOME: home,
      ANTHROPIC_BASE_URL: url,
      ANTHROPIC_AUTH_TOKEN: key,
      ANTHROPIC_MODEL: values.model,
      ANTHROPIC_DEFAULT_HAIKU_MODEL: values.model,
      // Claude Code does not know the model's window (it warns unrecognized_model and assumes a
      // large one): compact before the context the agent loads it with is full.
      CLAUDE_CODE_AUTO_COMPACT_WINDOW: "65536",
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
      DISABLE_TELEMETRY: "1",
    });
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

async function codex(url: string, key: string, label: string): Promise<number | null> {
  const home = await mkdtemp(join(tmpdir(), "lmgate-codex-home-"));
  try {
    await mkdir(join(home, ".codex"));
    await writeFile(
      join(home, ".codex", "config.toml"),
      [
        `model = "${values.model}"`,
        `model_provider = "lmgate"`,
        // The model's context, which Codex cannot learn from a custom provider.
        "model_context_window = 65536",
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
  results.push([`claude -p (${name})`, await claudeCode(url, token, `claude -p (${name})`)]);
  results.push([`codex exec (${name})`, await codex(url, token, `codex exec (${name})`)]);
}
console.log("\n" + results.map(([label, code]) => `${label}: exit ${code}`).join("\n"));
if (results.some(([, code]) => code !== 0)) process.exitCode = 1;
