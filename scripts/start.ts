/**
 * `npm start`: the whole system on this machine — the gateway under `wrangler dev` (workerd) on
 * 127.0.0.1:1234 with local persistence, plus one local agent serving the generated demo models.
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { AdminClient } from "../cli/admin-client.ts";
import { readDevVars } from "../cli/dev-vars.ts";
import type { NodeSummary } from "../shared/gateway-admin/admin-schemas.ts";
import { LOCAL_HOST, LOCAL_PORT } from "../shared/host/local-address.ts";
import { DEFAULT_DEMO_MODELS_DIR, ensureDemoModels, ensureModel, LONG_CHAT_MODEL } from "../node-agent/demo-models/demo-models.ts";
import { signalGroup, spawnGroup } from "./process-group.ts";
import { forgetGateway, leftoverGateway, recordGateway, stopLeftover } from "./leftover-gateway.ts";
import { holdPort, startWranglerDev, WRANGLER, type WranglerDev } from "./wrangler-dev.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DEV_VARS = `${ROOT}.dev.vars`;
/** The API key `npm start` made for you, kept (git-ignored) so a restart prints the same one. */
const DEV_KEY_FILE = `${ROOT}.lmgate/dev-key`;
/** wrangler's pid while `npm start` runs, so the next one knows a gateway a hard stop left behind. */
const GATEWAY_PID_FILE = `${ROOT}.lmgate/gateway.pid`;
const HOST = LOCAL_HOST;
const PORT = Number(process.env.LMGATE_PORT ?? LOCAL_PORT);
const GATEWAY = `http://${HOST}:${PORT}`;

/** Stops before anything starts when the gateway could not listen, saying what to do instead. */
async function checkPort(): Promise<void> {
  if (!Number.isInteger(PORT) || PORT < 1 || PORT > 65535) {
    console.error(`lmgate: LMGATE_PORT must be a port number (1–65535), got "${process.env.LMGATE_PORT}".`);
    process.exit(1);
  }
  if (!(await portFree())) {
    const leftover = leftoverGateway(GATEWAY_PID_FILE, WRANGLER, PORT);
    if (leftover !== undefined) {
      console.log(
        `lmgate: ${HOST}:${PORT} is held by lmgate's own gateway (wrangler dev, pid ${leftover}) from an earlier npm start that was stopped hard; stopping it…`,
      );
      await stopLeftover(leftover, portFree);
      forgetGateway(GATEWAY_PID_FILE);
      if (await portFree()) return console.log("lmgate: stopped the earlier gateway.");
    }
    console.error(
      `lmgate: ${HOST}:${PORT} is already in use (LM Studio's server uses ${LOCAL_PORT} too). ` +
        "Stop the other server, or start on another port: LMGATE_PORT=8787 npm start",
    );
    process.exit(1);
  }
}

async function portFree(): Promise<boolean> {
  const held = await holdPort(PORT).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "EADDRINUSE") return undefined;
    throw error;
  });
  await held?.close();
  return held !== undefined;
}

/**
 * The deployment's own secrets for local development (wrangler secrets in production): made
 * once, kept in .dev.vars (git-ignored), read by wrangler dev. API keys are not among them: they
 * live hashed in the gateway's storage and come from the admin API, like a teammate's would.
 */
function devSecrets() {
  const existing = readDevVars(DEV_VARS);
  const secret = (prefix: string) => `${prefix}_${randomBytes(24).toString("base64url")}`;
  const wanted = {
    LMGATE_NODE_TOKEN: existing.LMGATE_NODE_TOKEN ?? secret("lmgn"),
    LMGATE_ADMIN_TOKEN: existing.LMGATE_ADMIN_TOKEN ?? secret("lmga"),
  };
  const merged = { ...existing, ...wanted };
  writeFileSync(DEV_VARS, Object.entries(merged).map(([key, value]) => `${key}="${value}"`).join("\n") + "\n", { mode: 0o600 });
  return wanted;
}

/** A child's output on ours, each line marked with whose it is. */
function relay(label: string, text: string, stream: "stdout" | "stderr"): void {
  const lines = text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => `[${label}] ${line}\n`)
    .join("");
  (stream === "stdout" ? process.stdout : process.stderr).write(lines);
}

/** Stops everything when a part exits that should not have. */
function stopWhenGone(label: string, exited: Promise<unknown>): void {
  void exited.then((status) => {
    if (!stopping) {
      console.error(`[${label}] exited (${String(status)}); stopping.`);
      void shutdown(1);
    }
  });
}

/** Aborted by a stop during start-up, so a half-started wrangler goes too. */
const starting = new AbortController();
let gatewayStart: Promise<WranglerDev> | undefined;
let agent: ChildProcess | undefined;

async function waitUntil(check: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The dev key from an earlier start if the gateway still accepts it, else a new one from the admin API. */
async function devApiKey(admin: AdminClient): Promise<string> {
  const previous = existsSync(DEV_KEY_FILE) ? readFileSync(DEV_KEY_FILE, "utf8").trim() : "";
  if (previous !== "") {
    const response = await fetch(`${GATEWAY}/v1/models`, { headers: { authorization: `Bearer ${previous}` } });
    if (response.ok) return previous;
  }
  const created = await admin.createKey({ name: "dev (npm start)" });
  writeFileSync(DEV_KEY_FILE, `${created.key}\n`, { mode: 0o600 });
  return created.key;
}

/**
 * On Windows a console's Ctrl-C reaches every process attached to it, the agent too, and ours would
 * be a second stop and a hard one (`taskkill /F`): there the agent is left to its own.
 */
const reachesAgentToo = (cause: NodeJS.Signals | undefined) => process.platform === "win32" && cause === "SIGINT";

let stopping = false;
async function shutdown(code: number, cause?: NodeJS.Signals): Promise<void> {
  const tellAgent = agent !== undefined && !reachesAgentToo(cause);
  if (stopping) {
    // Asked again: the agent's second signal makes it exit without waiting for running requests.
    if (agent && tellAgent) signalGroup(agent, "SIGTERM");
    return;
  }
  stopping = true;
  starting.abort();
  const agentExited = agent && agent.exitCode === null ? new Promise((resolve) => agent?.once("exit", resolve)) : undefined;
  if (agent) {
    console.log("lmgate: stopping; running requests may finish (Ctrl-C again to stop at once)…");
    if (tellAgent) signalGroup(agent, "SIGTERM");
  }
  // The agent first: its running requests reach their clients through the gateway.
  await agentExited;
  await gatewayStart?.then((gateway) => gateway.stop(), () => undefined);
  forgetGateway(GATEWAY_PID_FILE);
  process.exit(code);
}
process.on("SIGINT", () => void shutdown(0, "SIGINT"));
process.on("SIGTERM", () => void shutdown(0, "SIGTERM"));
// npm runs this through a shell that does not pass SIGTERM on: when `npm start` is stopped that
// way (a service manager, `timeout`, `kill`), our parent goes and we would run on with nobody to
// stop us, holding the port. A new parent means that happened.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent && !stopping) void shutdown(0);
}, 1_000).unref();

async function main(): Promise<void> {
  await checkPort();
  const secrets = devSecrets();
  console.log("lmgate: preparing demo models…");
  const onProgress = (message: string) => console.log(`lmgate: ${message}`);
  await ensureDemoModels(DEFAULT_DEMO_MODELS_DIR, { onProgress });
  // The model coding agents (Claude Code, Codex) can use: their prompts need a long context.
  await ensureModel(DEFAULT_DEMO_MODELS_DIR, LONG_CHAT_MODEL, { onProgress });

  console.log(`lmgate: starting the gateway (wrangler dev) on ${GATEWAY}…`);
  // Its secrets come from .dev.vars, which wrangler reads next to wrangler.toml.
  gatewayStart = startWranglerDev({
    port: PORT,
    persistDir: `${ROOT}.lmgate/state`,
    onOutput: (text, stream) => relay("gateway", text, stream),
    readyTimeoutMs: 120_000,
    signal: starting.signal,
  });
  const gateway = await gatewayStart;
  recordGateway(GATEWAY_PID_FILE, gateway.pid);
  stopWhenGone("gateway", gateway.exited);

  // A group of its own, so Ctrl-C reaches it once, as our SIGTERM: a second signal would make it
  // exit without letting running requests finish.
  const agentStartedAt = Date.now();
  agent = spawnGroup(process.execPath, [`${ROOT}node-agent/cli.ts`, "--gateway", GATEWAY, "--name", "local", "--models", DEFAULT_DEMO_MODELS_DIR], {
    cwd: ROOT,
    // The node token in the environment, not on the command line, where `ps` would show it.
    env: { ...process.env, LMGATE_TOKEN: secrets.LMGATE_NODE_TOKEN },
    stdio: ["ignore", "pipe", "pipe"],
  });
  agent.stdout?.on("data", (chunk: Buffer) => relay("agent", chunk.toString(), "stdout"));
  agent.stderr?.on("data", (chunk: Buffer) => relay("agent", chunk.toString(), "stderr"));
  stopWhenGone("agent", new Promise((resolve) => agent?.once("exit", (code, signal) => resolve(signal ?? code))));
  const admin = new AdminClient(GATEWAY, secrets.LMGATE_ADMIN_TOKEN);
  // This agent, not an earlier one: the gateway's state may still list the last start's agent as
  // online when that start was stopped at once (its socket's end never recorded).
  const joined = (node: NodeSummary) => node.name === "local" && node.online && Date.parse(node.connected_at) >= agentStartedAt;
  await waitUntil(async () => (await admin.listNodes()).some(joined), "the local agent to join", 60_000);
  const apiKey = await devApiKey(admin);

  console.log(`
lmgate is running: gateway ${GATEWAY} (wrangler dev, state in .lmgate/state) + one local agent.

  API key (dev):  ${apiKey}      (kept in .lmgate/dev-key)
  Admin token:    ${secrets.LMGATE_ADMIN_TOKEN}   (kept in .dev.vars; the lmgate CLI finds it there)
  Dashboard:      ${GATEWAY}/dashboard/   (sign in with the admin token)

Try:
  curl ${GATEWAY}/api/v0/models -H "Authorization: Bearer ${apiKey}"

  curl ${GATEWAY}/api/v0/chat/completions -H "Authorization: Bearer ${apiKey}" \\
    -H "Content-Type: application/json" \\
    -d '{"model":"tiny-chat-f32","messages":[{"role":"user","content":"Hello!"}],"max_tokens":32}'

  OpenAI clients: base URL ${GATEWAY}/v1, API key as above.
  A key for a teammate:  npx lmgate keys create --name alice --models 'tiny-*' --rpm 60
  Usage so far:          npx lmgate usage
Ctrl-C stops everything (running requests finish first; Ctrl-C again stops at once).
`);
}

main().catch((error: unknown) => {
  if (stopping) return;
  console.error(`lmgate: ${error instanceof Error ? error.message : String(error)}`);
  void shutdown(1);
});
