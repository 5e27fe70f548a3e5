/**
 * `npm start`: the whole system on this machine — the gateway under `wrangler dev` (workerd) on
 * 127.0.0.1:1234 with local persistence, plus one local agent serving the generated demo models.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { AdminClient } from "../cli/admin-client.ts";
import { readDevVars } from "../cli/dev-vars.ts";
import { DEFAULT_DEMO_MODELS_DIR, ensureDemoModels } from "../node-agent/demo-models/demo-models.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DEV_VARS = `${ROOT}.dev.vars`;
/** The API key `npm start` made for you, kept (git-ignored) so a restart prints the same one. */
const DEV_KEY_FILE = `${ROOT}.lmgate/dev-key`;
const HOST = "127.0.0.1";
const PORT = Number(process.env.LMGATE_PORT ?? 1234);
const GATEWAY = `http://${HOST}:${PORT}`;

/** Stops before anything starts when the gateway could not listen, saying what to do instead. */
async function checkPort(): Promise<void> {
  if (!Number.isInteger(PORT) || PORT < 1 || PORT > 65535) {
    console.error(`lmgate: LMGATE_PORT must be a port number (1–65535), got "${process.env.LMGATE_PORT}".`);
    process.exit(1);
  }
  const server = createServer();
  const taken = await new Promise<boolean>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => (error.code === "EADDRINUSE" ? resolve(true) : reject(error)));
    server.listen(PORT, HOST, () => server.close(() => resolve(false)));
  });
  if (taken) {
    console.error(
      `lmgate: ${HOST}:${PORT} is already in use (LM Studio's server uses 1234 too). ` +
        "Stop the other server, or start on another port: LMGATE_PORT=8787 npm start",
    );
    process.exit(1);
  }
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

const children: ChildProcess[] = [];
function run(command: string, args: string[], label: string, env: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const prefix = (chunk: Buffer) =>
    chunk
      .toString()
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => `[${label}] ${line}\n`)
      .join("");
  child.stdout?.on("data", (chunk: Buffer) => process.stdout.write(prefix(chunk)));
  child.stderr?.on("data", (chunk: Buffer) => process.stderr.write(prefix(chunk)));
  child.once("exit", (code, signal) => {
    if (!stopping) {
      console.error(`[${label}] exited (${signal ?? code}); stopping.`);
      void shutdown(1);
    }
  });
  children.push(child);
  return child;
}

async function waitFor(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

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

let stopping = false;
async function shutdown(code: number): Promise<never> {
  stopping = true;
  for (const child of children) child.kill("SIGTERM");
  await Promise.all(children.map((child) => (child.exitCode === null ? new Promise((r) => child.once("exit", r)) : null)));
  process.exit(code);
}
process.on("SIGINT", () => void shutdown(0));
process.on("SIGTERM", () => void shutdown(0));
// npm runs this through a shell that does not pass SIGTERM on: when `npm start` is stopped that
// way (a service manager, `timeout`, `kill`), our parent goes and we would run on with nobody to
// stop us, holding the port. A new parent means that happened.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent && !stopping) void shutdown(0);
}, 1_000).unref();

await checkPort();
const secrets = devSecrets();
console.log("lmgate: preparing demo models…");
await ensureDemoModels(DEFAULT_DEMO_MODELS_DIR, { onProgress: (message) => console.log(`lmgate: ${message}`) });

console.log(`lmgate: starting the gateway (wrangler dev) on ${GATEWAY}…`);
run(
  `${ROOT}node_modules/.bin/wrangler`,
  ["dev", "--ip", HOST, "--port", String(PORT), "--persist-to", `${ROOT}.lmgate/state`, "--show-interactive-dev-session=false"],
  "gateway",
  { WRANGLER_SEND_METRICS: "false" },
);
await waitFor(`${GATEWAY}/health`, 120_000);

run(
  process.execPath,
  [`${ROOT}node-agent/cli.ts`, "--gateway", GATEWAY, "--token", secrets.LMGATE_NODE_TOKEN, "--name", "local", "--models", DEFAULT_DEMO_MODELS_DIR],
  "agent",
);
const admin = new AdminClient(GATEWAY, secrets.LMGATE_ADMIN_TOKEN);
await waitUntil(async () => (await admin.listNodes()).some((node) => node.name === "local" && node.online), "the local agent to join", 60_000);
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
Ctrl-C stops everything.
`);
