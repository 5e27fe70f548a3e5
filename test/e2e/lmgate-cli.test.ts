import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import type { z } from "zod";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import { CreatedKey, CreatedNodeToken, KeyRecord, NodeSummary, StoredResponsesUsage, UsageRow } from "../../shared/gateway-admin/admin-schemas.ts";
import { ChatCompletion } from "../../shared/openai-completions/completion-schemas.ts";
import { startAgent, type AgentProcess } from "../harness/agent-process.ts";
import { startGateway, type GatewayProcess } from "../harness/gateway-process.ts";
import { lmgate as runLmgate } from "../harness/lmgate-cli.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * The `lmgate` admin CLI run as a process (`node cli/lmgate.ts`, the admin token in its
 * environment) against the real gateway under wrangler, with a real agent that joined with a node
 * token the CLI made: what each command does to the next request, what survives a gateway restart,
 * and what the gateway's and the agent's logs never contain.
 */

const CHAT = "tiny-chat-f32";
const EMBED = "tiny-embed-f32";
const VARS = { LMGATE_HEARTBEAT_INTERVAL_MS: "2000", LMGATE_HEARTBEAT_TIMEOUT_MS: "6000" };

let gateway: GatewayProcess;
let agent: AgentProcess;
let nodeToken: string;
/** The CLI runs here: no `.dev.vars` of the checkout to find. */
let cwd: string;
/** What gateways stopped during this file printed (a restart replaces `gateway`). */
const earlierGatewayLogs: string[] = [];
const keptStateDirs: string[] = [];
/** Every secret and prompt this file handled, for the log test. */
const secrets = new Set<string>();

const lmgate = (...args: string[]) => runLmgate({ url: gateway.url, env: { LMGATE_ADMIN_TOKEN: gateway.adminToken }, cwd }, ...args);

async function lmgateJson<T>(schema: z.ZodType<T>, ...args: string[]): Promise<T> {
  const { code, stdout, stderr } = await lmgate("--json", ...args);
  expect(code, stderr).toBe(0);
  return schema.parse(JSON.parse(stdout));
}
const rows = <T>(schema: z.ZodType<T>) => ({ parse: (value: unknown) => (value as unknown[]).map((row) => schema.parse(row)) }) as z.ZodType<T[]>;

const post = (key: string, path: string, body: unknown) =>
  fetch(`${gateway.url}${path}`, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
const chat = (key: string, content = "Tell me about the sea.", extra: Record<string, unknown> = {}) =>
  post(key, "/v1/chat/completions", { model: CHAT, messages: [{ role: "user", content }], max_tokens: 4, temperature: 0, ...extra });

async function expectError(response: Response, status: number, code: string) {
  expect(response.status).toBe(status);
  expect(ErrorBody.parse(await response.json()).error.code).toBe(code);
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
const nodeOnline = async () => (await lmgateJson(rows(NodeSummary), "nodes")).some((node) => node.name === "cli-node" && node.online);

async function createKey(...args: string[]): Promise<CreatedKey> {
  const created = await lmgateJson(CreatedKey, "keys", "create", ...args);
  secrets.add(created.key);
  return created;
}

beforeAll(async () => {
  cwd = await mkdtemp(join(tmpdir(), "lmgate-cli-"));
  gateway = await startGateway({ vars: VARS });
  for (const secret of [gateway.apiKey, gateway.nodeToken, gateway.adminToken]) secrets.add(secret);
  const created = await lmgateJson(CreatedNodeToken, "nodes", "tokens", "create", "--name", "cli-node");
  nodeToken = created.token;
  secrets.add(nodeToken);
  agent = await startAgent({ models: [await testModelsDir()], gateway: { url: gateway.url, token: nodeToken }, name: "cli-node" });
  await until(nodeOnline, "the agent online");
}, 180_000);

afterAll(async () => {
  await agent?.stop();
  await gateway?.stop();
  for (const dir of [cwd, ...keptStateDirs]) if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

test("lmgate nodes shows the agent that joined with the CLI's node token; nodes tokens list never shows the token", async () => {
  const { code, stdout } = await lmgate("nodes");
  expect(code).toBe(0);
  expect(stdout).toMatch(/cli-node\s.*online/);
  const listed = await lmgate("nodes", "tokens", "list");
  expect(listed.stdout).toContain("cli-node");
  expect(listed.stdout).not.toContain(nodeToken);
});

test("keys create, update --rpm 0 (unlimited) and revoke each change the key's very next request", async () => {
  const alice = await createKey("--name", "alice", "--models", "tiny-chat-*", "--rpm", "1");
  expect(alice.record).toMatchObject({ name: "alice", models: ["tiny-chat-*"], rpm: 1 });
  expect((await chat(alice.key)).status).toBe(200);
  await expectError(await chat(alice.key), 429, "rate_limit_exceeded");
  await expectError(await post(alice.key, "/v1/embeddings", { model: EMBED, input: "sea" }), 403, "model_not_allowed");

  const [updated] = await lmgateJson(rows(KeyRecord), "keys", "update", "alice", "--rpm", "0");
  expect(updated).toMatchObject({ name: "alice", rpm: null });
  // Unlimited: a key of 1 request per minute would be refused every one of these.
  for (let i = 0; i < 4; i++) expect((await chat(alice.key)).status).toBe(200);

  const table = await lmgate("keys", "list");
  expect(table.stdout).toContain("alice");
  expect(table.stdout).toContain(alice.record.prefix);
  expect(table.stdout).not.toContain(alice.key);

  const revoked = await lmgate("keys", "revoke", "alice");
  expect(revoked.code).toBe(0);
  expect(revoked.stdout).toContain("Revoked alice");
  await expectError(await chat(alice.key), 401, "invalid_api_key");
});

test("the CLI's own parsing: --expires 90d is 90 days from now, a bad one is refused before any request; usage --from/--to select days", async () => {
  const before = Date.now();
  const later = await createKey("--name", "expires-later", "--expires", "90d");
  const expiresAt = Date.parse(later.record.expires_at ?? "");
  expect(expiresAt).toBeGreaterThanOrEqual(before + 90 * 86_400_000);
  expect(expiresAt).toBeLessThanOrEqual(Date.now() + 90 * 86_400_000);
  expect(Date.parse((await createKey("--name", "expires-dated", "--expires", "2031-01-31")).record.expires_at ?? "")).toBe(Date.parse("2031-01-31"));

  const bad = await lmgate("keys", "create", "--name", "expires-bad", "--expires", "90 days");
  expect(bad.code).not.toBe(0);
  expect(bad.stderr).toContain("expected e.g. 30d, 12h, or an ISO date");
  const names = (await lmgateJson(rows(KeyRecord), "keys", "list")).map((key) => key.name);
  expect(names).not.toContain("expires-bad");

  // One request today on a key of its own: today's rows have it, a range that ends yesterday has none.
  expect((await chat(later.key)).status).toBe(200);
  const today = new Date().toISOString().slice(0, 10);
  const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
  const usage = (...range: string[]) => lmgateJson(rows(UsageRow), "usage", "--key", "expires-later", ...range);
  expect((await usage("--from", today, "--to", today)).map((row) => [row.day, row.requests])).toEqual([[today, 1]]);
  expect(await usage("--from", "2020-01-01", "--to", yesterday)).toEqual([]);
});

test("the admin token: --admin-token, else LMGATE_ADMIN_TOKEN, else the .dev.vars of the folder it runs in (as npm start writes it)", async () => {
  const folder = await mkdtemp(join(tmpdir(), "lmgate-cli-vars-"));
  keptStateDirs.push(folder);
  const run = (args: string[], adminToken: string | undefined) =>
    runLmgate({ url: gateway.url, env: adminToken === undefined ? {} : { LMGATE_ADMIN_TOKEN: adminToken }, cwd: folder }, ...args);
  const wrong = `lmga_${randomBytes(8).toString("hex")}`;

  // No token anywhere: refused before any request (2, like a usage error).
  const none = await run(["nodes"], undefined);
  expect(none.code).toBe(2);
  expect(none.stderr).toContain("no admin token");

  // npm start's lines (scripts/start.ts), the token among the other secrets.
  await writeFile(join(folder, ".dev.vars"), `LMGATE_API_KEY="${gateway.apiKey}"\nLMGATE_ADMIN_TOKEN="${gateway.adminToken}"\nLMGATE_NODE_TOKEN="${gateway.nodeToken}"\n`);
  const found = await run(["nodes"], undefined);
  expect(found.code, found.stderr).toBe(0);
  expect(found.stdout).toMatch(/cli-node\s.*online/);

  // The environment, then the flag, come before the file.
  expect((await run(["nodes"], wrong)).code).toBe(1);
  const flagged = await run(["--admin-token", gateway.adminToken, "nodes"], wrong);
  expect(flagged.code, flagged.stderr).toBe(0);
});

test("a wrong admin token: exit code 1 and the gateway's reason, nothing on stdout", async () => {
  const result = await runLmgate({ url: gateway.url, env: { LMGATE_ADMIN_TOKEN: "lmga_wrong" }, cwd }, "keys", "list");
  expect(result.code).toBe(1);
  expect(result.stdout).toBe("");
  expect(result.stderr).toMatch(/^lmgate: .*admin token/i);
});

test("keys, usage and tokens per day survive a gateway restart, read back through the CLI", async () => {
  // 10 a day: the prompt's estimate (5) leaves room for the 4 asked; the prompt as read (more than 6) spends the rest.
  const bob = await createKey("--name", "bob", "--tokens-per-day", "10");
  const answer = ChatCompletion.parse(await (await chat(bob.key)).json());
  const before = await lmgateJson(rows(UsageRow), "usage", "--key", "bob");
  expect(before.map(({ model, requests, prompt_tokens, completion_tokens, errors }) => ({ model, requests, prompt_tokens, completion_tokens, errors }))).toEqual([
    { model: CHAT, requests: 1, prompt_tokens: answer.usage.prompt_tokens, completion_tokens: answer.usage.completion_tokens, errors: 0 },
  ]);

  const { port, persistDir, apiKey, nodeToken: rootNodeToken, adminToken } = gateway;
  earlierGatewayLogs.push(gateway.output());
  await gateway.stop({ keepState: true });
  // The restarted gateway does not own the folder: afterAll removes it.
  keptStateDirs.push(persistDir);
  gateway = await startGateway({ port, persistDir, secrets: { apiKey, nodeToken: rootNodeToken, adminToken }, vars: VARS });
  await until(nodeOnline, "the agent back after the restart");

  expect(await lmgateJson(rows(UsageRow), "usage", "--key", "bob")).toEqual(before);
  expect((await lmgateJson(rows(KeyRecord), "keys", "list")).find((key) => key.name === "bob")).toMatchObject({ id: bob.record.id, tokens_per_day: 10 });
  // The day's tokens were spent before the restart: still spent.
  await expectError(await chat(bob.key), 429, "tokens_per_day_exceeded");
}, 120_000);

test("no key, token or prompt text appears in the gateway's or the agent's logs", async () => {
  const prompt = `a-prompt-nobody-may-log-${randomBytes(6).toString("hex")}`;
  secrets.add(prompt);
  const wrongKey = `lmg_${randomBytes(24).toString("base64url")}`;
  secrets.add(wrongKey);
  const carol = await createKey("--name", "carol");
  expect((await chat(carol.key, prompt)).status).toBe(200);
  expect((await chat(carol.key, prompt, { stream: true })).status).toBe(200);
  // Refused and failed requests carry the same text.
  expect((await chat(carol.key, prompt, { max_tokens: -5 })).status).toBe(400);
  await expectError(await chat(wrongKey, prompt), 401, "invalid_api_key");
  await expectError(await post(carol.key, "/v1/chat/completions", { model: "no-such-model", messages: [{ role: "user", content: prompt }] }), 404, "model_not_found");
  // A quiet log would prove nothing: wait until wrangler has logged this traffic.
  await until(async () => (gateway.output().match(/\/v1\/chat\/completions/g)?.length ?? 0) >= 5, "wrangler logging the requests");

  const logs = { wrangler: [...earlierGatewayLogs, gateway.output()].join("\n"), agent: agent.output() };
  expect(logs.agent).toContain("connected to gateway");
  for (const [source, text] of Object.entries(logs)) {
    for (const secret of secrets) expect(text.includes(secret), `${source} log contains ${secret.slice(0, 8)}…`).toBe(false);
  }
});

test("nodes tokens create --models scopes a token (nodes tokens list shows it); keys responses shows a key's stored responses, --clear deletes them", async () => {
  const scoped = await lmgateJson(CreatedNodeToken, "nodes", "tokens", "create", "--name", "scoped-cli", "--models", "tiny-chat-*,other-*");
  secrets.add(scoped.token);
  expect(scoped.record.models).toEqual(["tiny-chat-*", "other-*"]);
  expect((await lmgate("nodes", "tokens", "list")).stdout).toContain("tiny-chat-*, other-*");

  const dave = await createKey("--name", "dave");
  expect((await post(dave.key, "/v1/responses", { model: CHAT, input: "Tell me about the sea.", max_output_tokens: 4, store: true })).status).toBe(200);
  const usage = await lmgateJson(StoredResponsesUsage, "keys", "responses", "dave");
  expect(usage).toMatchObject({ key_id: dave.record.id, count: 1, max_count: 10_000 });
  expect(usage.bytes).toBeGreaterThan(0);
  expect(await lmgateJson(StoredResponsesUsage, "keys", "responses", "dave", "--clear")).toMatchObject({ count: 0, bytes: 0 });
  expect((await lmgate("keys", "responses", "dave")).stdout).toContain("0 of 10000 responses");
});
