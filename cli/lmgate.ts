#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from "commander";
import pc from "picocolors";
import { resolve } from "node:path";
import { LOCAL_HOST, LOCAL_PORT } from "../shared/host/local-address.ts";
import { KeyAction, type KeyRecord, type UpdateKeyRequest, type WakeAttempt } from "../shared/gateway-admin/admin-schemas.ts";
import { AdminApiError, AdminClient } from "./admin-client.ts";
import { readDevVars } from "./dev-vars.ts";
import { ModelsClient } from "./models-client.ts";
import { addModelsCommand } from "./models-command.ts";
import { addRequestsCommand } from "./requests-command.ts";
import { usageColumns } from "./usage-columns.ts";
import { addWhoamiCommand } from "./whoami-command.ts";
import { day, footprint, freeMemory, plain, printRows } from "./output.ts";

/** `lmgate`: manage a gateway's keys, node tokens, usage and request log through its admin API; `whoami` for a key holder. */

interface GlobalOptions {
  url: string;
  adminToken?: string;
  json: boolean;
}

const program = new Command("lmgate")
  .description("Manage an lmgate gateway: API keys, node tokens, the live fleet, its models and usage.")
  .addOption(new Option("--url <url>", "gateway base URL").env("LMGATE_URL").default(`http://${LOCAL_HOST}:${LOCAL_PORT}`))
  .addOption(new Option("--admin-token <token>", "admin token (default: LMGATE_ADMIN_TOKEN, then ./.dev.vars)").env("LMGATE_ADMIN_TOKEN"))
  .option("--json", "print JSON instead of tables", false)
  .showHelpAfterError();

function adminToken(): string {
  const token = program.opts<GlobalOptions>().adminToken ?? readDevVars(resolve(".dev.vars")).LMGATE_ADMIN_TOKEN;
  if (!token) throw new AdminApiError(0, "no admin token: pass --admin-token, set LMGATE_ADMIN_TOKEN, or run from the folder where `npm start` wrote .dev.vars");
  return token;
}
function client(): AdminClient {
  return new AdminClient(program.opts<GlobalOptions>().url, adminToken());
}
const json = () => program.opts<GlobalOptions>().json;

const positiveInt = (value: string) => {
  if (!/^\d+$/.test(value) || Number(value) <= 0) throw new InvalidArgumentError("expected a positive whole number");
  return Number(value);
};
/** `30d`, `12h`, `90m` from now, or an ISO date/time. */
const expiry = (value: string) => {
  const relative = /^(\d+)([dhm])$/.exec(value);
  if (relative) {
    const unit = { d: 86_400_000, h: 3_600_000, m: 60_000 }[relative[2] as "d" | "h" | "m"];
    return new Date(Date.now() + Number(relative[1]) * unit).toISOString();
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new InvalidArgumentError("expected e.g. 30d, 12h, or an ISO date such as 2027-01-31");
  return date.toISOString();
};
const globs = (value: string, previous: string[] = []) => [...previous, ...value.split(",").map((glob) => glob.trim()).filter(Boolean)];
const actions = (value: string) => {
  const listed = value.split(",").map((action) => action.trim()).filter(Boolean);
  const parsed = KeyAction.array().safeParse(listed);
  if (!parsed.success) throw new InvalidArgumentError(`expected a comma-separated list of ${KeyAction.options.join(", ")}`);
  return [...new Set(parsed.data)];
};

const keyColumns = [
  { header: "id", value: (key: KeyRecord) => key.id },
  { header: "name", value: (key: KeyRecord) => key.name },
  { header: "prefix", value: (key: KeyRecord) => `${key.prefix}…` },
  { header: "models", value: (key: KeyRecord) => key.models?.join(", ") ?? "all" },
  { header: "rpm", value: (key: KeyRecord) => key.rpm },
  { header: "tokens/day", value: (key: KeyRecord) => key.tokens_per_day },
  { header: "can", value: (key: KeyRecord) => key.can.join(", ") || null },
  { header: "expires", value: (key: KeyRecord) => day(key.expires_at) },
  { header: "created", value: (key: KeyRecord) => day(key.created_at) },
  { header: "last used", value: (key: KeyRecord) => day(key.last_used_at) },
  { header: "status", value: (key: KeyRecord) => (key.revoked_at ? "revoked" : key.expires_at && key.expires_at < new Date().toISOString() ? "expired" : "active") },
];

/** Accepts a key's id or its (unique) name. */
async function keyId(reference: string): Promise<string> {
  const keys = await client().listKeys();
  const match = keys.find((key) => key.id === reference) ?? keys.filter((key) => key.name === reference && !key.revoked_at)[0];
  if (!match) throw new AdminApiError(404, `no key with id or name "${reference}" (see: lmgate keys list)`);
  return match.id;
}

const keys = program.command("keys").description("API keys for people and programs");
keys
  .command("create")
  .description("create a key; the secret is printed once and never stored")
  .requiredOption("--name <name>", "who or what the key is for")
  .option("--models <globs>", "allowed models, comma-separated globs (e.g. 'tiny-*'); default all", globs)
  .option("--rpm <n>", "requests per minute", positiveInt)
  .option("--tokens-per-day <n>", "prompt + completion tokens per UTC day", positiveInt)
  .option("--expires <when>", "expiry: 30d, 12h, or an ISO date", expiry)
  .option("--can <actions>", "model management it may do: load (and unload), download, delete, comma-separated; default none", actions)
  .action(async (options: { name: string; models?: string[]; rpm?: number; tokensPerDay?: number; expires?: string; can?: KeyAction[] }) => {
    const created = await client().createKey({
      name: options.name,
      models: options.models ?? null,
      rpm: options.rpm ?? null,
      tokens_per_day: options.tokensPerDay ?? null,
      expires_at: options.expires ?? null,
      can: options.can ?? [],
    });
    if (json()) return console.log(JSON.stringify(created, null, 2));
    console.log(`${pc.green("Created key")} ${plain(created.record.name)} (${created.record.id})`);
    console.log(`\n  ${pc.bold(created.key)}\n`);
    console.log(pc.dim("Shown once: the gateway keeps only its hash. Use it as: Authorization: Bearer <key>"));
  });
keys
  .command("list")
  .description("list keys (never their secrets)")
  .action(async () => printRows(await client().listKeys(), keyColumns, json(), "no keys yet: lmgate keys create --name <name>"));
keys
  .command("update <key>")
  .description("change a key's name or scopes (by id or name); takes effect on its next request")
  .option("--name <name>", "new name")
  .option("--models <globs>", "allowed models, comma-separated globs; 'all' for every model")
  .option("--rpm <n>", "requests per minute; 0 for unlimited")
  .option("--tokens-per-day <n>", "tokens per UTC day; 0 for unlimited")
  .option("--expires <when>", "expiry: 30d, 12h, an ISO date, or 'never'")
  .option("--can <actions>", "model management it may do: load, download, delete, comma-separated; 'none' for none")
  .action(async (reference: string, options: { name?: string; models?: string; rpm?: string; tokensPerDay?: string; expires?: string; can?: string }) => {
    const update: UpdateKeyRequest = {};
    const unlimited = (value: string) => (value === "0" ? null : positiveInt(value));
    if (options.name !== undefined) update.name = options.name;
    if (options.models !== undefined) update.models = options.models === "all" ? null : globs(options.models);
    if (options.rpm !== undefined) update.rpm = unlimited(options.rpm);
    if (options.tokensPerDay !== undefined) update.tokens_per_day = unlimited(options.tokensPerDay);
    if (options.expires !== undefined) update.expires_at = options.expires === "never" ? null : expiry(options.expires);
    if (options.can !== undefined) update.can = options.can === "none" ? [] : actions(options.can);
    const record = await client().updateKey(await keyId(reference), update);
    printRows([record], keyColumns, json(), "");
  });
keys
  .command("revoke <key>")
  .description("revoke a key (by id or name); its next request is refused")
  .action(async (reference: string) => {
    const record = await client().revokeKey(await keyId(reference));
    if (json()) return console.log(JSON.stringify(record, null, 2));
    console.log(`${pc.yellow("Revoked")} ${plain(record.name)} (${record.id})`);
  });
keys
  .command("responses <key>")
  .description("the responses a key stored (store, previous_response_id) against its share; --clear deletes them")
  .option("--clear", "delete every response the key stored")
  .action(async (reference: string, options: { clear?: boolean }) => {
    const id = await keyId(reference);
    const usage = options.clear ? await client().clearStoredResponses(id) : await client().storedResponses(id);
    if (json()) return console.log(JSON.stringify(usage, null, 2));
    const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
    console.log(`${usage.count} of ${usage.max_count} responses, ${mib(usage.bytes)} of ${mib(usage.max_bytes)}${options.clear ? ` (${pc.yellow("cleared")})` : ""}`);
  });

const nodes = program
  .command("nodes")
  .description("the live fleet; `nodes tokens` manages node tokens")
  .action(async () => {
    printRows(
      await client().listNodes(),
      [
        { header: "node", value: (node) => node.name },
        {
          header: "status",
          value: (node) => (node.online ? "online" : node.left === "sleep" ? "asleep" : node.left === "shutdown" ? "stopped" : "offline"),
          // Stopped or asleep on purpose: expected, and wakeable; offline: lost without a word.
          style: (text) => (text === "online" ? pc.green(text) : text === "offline" ? pc.red(text) : pc.yellow(text)),
        },
        { header: "runtime", value: (node) => node.runtime.name },
        { header: "gpu", value: (node) => node.hardware.gpu ?? "cpu" },
        { header: "in flight", value: (node) => node.in_flight },
        { header: "free", value: (node) => freeMemory(node.memory) },
        {
          header: "models (* loaded)",
          value: (node) => node.models.map((model) => `${model.id}${model.state === "loaded" ? "*" : ""}${footprint(node.footprints?.[model.id])}`).join(", "),
        },
        { header: "heartbeat", value: (node) => day(node.last_heartbeat_at) },
      ],
      json(),
      "no nodes connected: start one with LMGATE_TOKEN=<node token> lmgate-agent --gateway <url> --name <its name>",
    );
  });
nodes
  .command("wake <name>")
  .description("wake an offline node: an online node on its network (started with --wake-peers) sends the magic packet")
  .option("--no-wait", "return once the packet is sent, without waiting for the node to come back")
  .action(async (name: string, options: { wait: boolean }) => {
    const admin = client();
    const attempt = await admin.wakeNode(name);
    if (json() && !options.wait) return console.log(JSON.stringify(attempt, null, 2));
    if (!json()) {
      console.log(`Wake packet for ${plain(name)} (${attempt.mac}) sent by ${plain(attempt.peer)} to ${attempt.broadcast} at ${attempt.sent_at}`);
    }
    if (!options.wait) return;
    if (!json()) console.log(pc.dim(`waiting up to ${attempt.timeout_s} s for ${plain(name)} to come back…`));
    const last = await untilWoken(admin, name, attempt.sent_at, attempt.timeout_s * 1000);
    if (json()) return console.log(JSON.stringify(last, null, 2));
    if (last.back_at !== null) {
      const seconds = Math.round((Date.parse(last.back_at) - Date.parse(last.sent_at)) / 100) / 10;
      console.log(`${pc.green("Back")}: ${plain(name)} came back at ${last.back_at}, ${seconds} s after the packet`);
    } else {
      throw new AdminApiError(503, last.failure ?? `${name} did not come back`);
    }
  });

/** Polls the node listing until the wake sent at `sentAt` has ended (the node is back, or it failed). */
async function untilWoken(admin: AdminClient, name: string, sentAt: string, timeoutMs: number): Promise<WakeAttempt> {
  // The gateway ends the wake at its own timeout; a little longer here covers the poll's interval.
  const deadline = Date.now() + timeoutMs + 5_000;
  for (;;) {
    const last = (await admin.listNodes()).find((node) => node.name === name)?.wake?.last;
    if (last !== undefined && last.sent_at === sentAt && (last.back_at !== null || last.failure !== null)) return last;
    if (Date.now() > deadline) throw new AdminApiError(504, `no word from the gateway on ${name}'s wake within ${Math.round(timeoutMs / 1000)} s`);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
}

const tokens = nodes.command("tokens").description("node tokens: what an agent presents to join the fleet");
tokens
  .command("create")
  .description("create a token for one node; printed once")
  .requiredOption("--name <node>", "the node's name")
  .option("--models <globs>", "models the node may serve, comma-separated globs (e.g. 'tiny-*'); default all", globs)
  .action(async (options: { name: string; models?: string[] }) => {
    const created = await client().createNodeToken({ node: options.name, models: options.models ?? null });
    if (json()) return console.log(JSON.stringify(created, null, 2));
    const serves = created.record.models === null ? "" : `, serving ${created.record.models.join(", ")} only`;
    console.log(`${pc.green("Created node token")} for ${created.record.node} (${created.record.id})${serves}\n\n  ${pc.bold(created.token)}\n`);
    console.log(
      pc.dim(
        `Start the node (under this name only) with: LMGATE_TOKEN=<token> lmgate-agent --gateway ${program.opts<GlobalOptions>().url} --name ${created.record.node}` +
          "\n(or --token-file <file>; a token on the command line is visible to ps)",
      ),
    );
  });
tokens
  .command("list")
  .description("list node tokens (never their secrets)")
  .action(async () =>
    printRows(
      await client().listNodeTokens(),
      [
        { header: "id", value: (token) => token.id },
        { header: "node", value: (token) => token.node },
        { header: "models", value: (token) => token.models?.join(", ") ?? "all" },
        { header: "prefix", value: (token) => `${token.prefix}…` },
        { header: "created", value: (token) => day(token.created_at) },
        { header: "last used", value: (token) => day(token.last_used_at) },
        { header: "status", value: (token) => (token.revoked_at ? "revoked" : "active") },
      ],
      json(),
      "no node tokens yet: lmgate nodes tokens create --name <node>",
    ),
  );
tokens
  .command("revoke <id>")
  .description("revoke a node token; a node connected with it is disconnected at once")
  .action(async (id: string) => {
    const record = await client().revokeNodeToken(id);
    if (json()) return console.log(JSON.stringify(record, null, 2));
    console.log(`${pc.yellow("Revoked")} the token of ${record.node} (${record.id})`);
  });

// Through the API routes, with the admin token, which may do all of model management.
addModelsCommand(program, () => new ModelsClient(program.opts<GlobalOptions>().url, adminToken()), json);

program
  .command("usage")
  .description("usage per key, model and day")
  .option("--key <key>", "only this key (id or name)")
  .option("--model <model>", "only this model")
  .option("--from <day>", "first UTC day, YYYY-MM-DD")
  .option("--to <day>", "last UTC day, YYYY-MM-DD")
  .action(async (options: { key?: string; model?: string; from?: string; to?: string }) => {
    const key = options.key === undefined ? undefined : await keyId(options.key);
    printRows(
      await client().usage({ key, model: options.model, from: options.from, to: options.to }),
      usageColumns(true),
      json(),
      "no usage recorded for that selection",
    );
  });

addRequestsCommand(program, client, keyId, json);
// A key holder's command: their key, not the admin token.
addWhoamiCommand(program, () => program.opts<GlobalOptions>().url, json);

try {
  await program.parseAsync();
} catch (error) {
  if (!(error instanceof AdminApiError)) throw error;
  console.error(`lmgate: ${plain(error.message)}`);
  process.exit(error.status === 0 ? 2 : 1);
}
