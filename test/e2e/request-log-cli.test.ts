import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, test } from "vitest";
import * as z from "zod";
import { CreatedKey } from "../../shared/gateway-admin/admin-schemas.ts";
import { KeyView } from "../../shared/gateway-admin/key-view-schemas.ts";
import { RequestRow } from "../../shared/gateway-admin/request-log-schemas.ts";
import { startGateway, type GatewayProcess } from "../harness/gateway-process.ts";
import { lmgate as runLmgate, lmgateEnv, LMGATE_CLI } from "../harness/lmgate-cli.ts";

/**
 * `lmgate requests` (the owner's request log, with the admin token) and `lmgate whoami` (a key
 * holder's own key, with LMGATE_API_KEY), run as processes against the real gateway under wrangler.
 * No node is needed: requests for a model nobody holds, and ones refused by a key's scope, are
 * rows of the log like any other.
 */

let gateway: GatewayProcess;
/** The CLI runs here: no `.dev.vars` of the checkout to find. */
let cwd: string;

const lmgate = (env: NodeJS.ProcessEnv, ...args: string[]) => runLmgate({ url: gateway.url, env, cwd }, ...args);
const asAdmin = (...args: string[]) => lmgate({ LMGATE_ADMIN_TOKEN: gateway.adminToken }, ...args);

const chat = (key: string, model: string) =>
  fetch(`${gateway.url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}` },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
    signal: AbortSignal.timeout(30_000),
  });

async function createKey(...args: string[]): Promise<CreatedKey> {
  const { code, stdout, stderr } = await asAdmin("--json", "keys", "create", ...args);
  expect(code, stderr).toBe(0);
  return CreatedKey.parse(JSON.parse(stdout));
}

let alice: CreatedKey;
let bob: CreatedKey;

beforeAll(async () => {
  cwd = await mkdtemp(join(tmpdir(), "lmgate-requests-"));
  gateway = await startGateway();
  alice = await createKey("--name", "alice", "--models", "tiny-*", "--rpm", "30", "--tokens-per-day", "5000");
  bob = await createKey("--name", "bob-the-other");
  expect((await chat(alice.key, "tiny-nowhere")).status).toBe(404);
  expect((await chat(alice.key, "huge-model")).status).toBe(403);
  expect((await chat(bob.key, "bobs-private-model")).status).toBe(404);
}, 120_000);

afterAll(async () => {
  await gateway?.stop();
  if (cwd !== undefined) await rm(cwd, { recursive: true, force: true });
});

test("lmgate requests lists the log oldest to newest, filters by key name, and prints JSON with --json", async () => {
  const { code, stdout, stderr } = await asAdmin("--json", "requests", "--key", "alice");
  expect(code, stderr).toBe(0);
  const rows = z.array(RequestRow).parse(JSON.parse(stdout));
  expect(rows.map((row) => [row.model, row.status, row.error_code, row.key_name])).toEqual([
    ["tiny-nowhere", 404, "model_not_found", "alice"],
    ["huge-model", 403, "model_not_allowed", "alice"],
  ]);
  // A model name nobody holds is filed as "unknown" in usage; the log keeps what was asked, bounded.
  const table = await asAdmin("requests", "--status", "4xx");
  expect(table.code, table.stderr).toBe(0);
  for (const text of ["POST /v1/chat/completions", "alice", "bob-the-other", "403 model_not_allowed"]) expect(table.stdout).toContain(text);
  const bad = await asAdmin("requests", "--status", "teapot");
  expect(bad.code).toBe(1);
  expect(bad.stderr).toMatch(/status/);
});

test("lmgate requests --follow prints a request that finishes after it started", async () => {
  const child = spawn(process.execPath, [LMGATE_CLI, "--url", gateway.url, "--json", "requests", "--follow", "--key", "alice"], {
    cwd,
    env: lmgateEnv({ LMGATE_ADMIN_TOKEN: gateway.adminToken }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const lines = () => output.split("\n").filter(Boolean).map((line) => RequestRow.parse(JSON.parse(line)));
  try {
    const deadline = Date.now() + 20_000;
    while (lines().length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(lines()).toHaveLength(2);
    expect((await chat(alice.key, "tiny-followed")).status).toBe(404);
    while (lines().length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(lines().map((row) => row.model)).toEqual(["tiny-nowhere", "huge-model", "tiny-followed"]);
  } finally {
    child.kill("SIGTERM");
  }
});

test("lmgate whoami shows the key holder their own key and nothing of another's", async () => {
  const { code, stdout, stderr } = await lmgate({ LMGATE_API_KEY: alice.key }, "--json", "whoami");
  expect(code, stderr).toBe(0);
  const view = KeyView.parse(JSON.parse(stdout));
  expect(view).toMatchObject({ id: alice.record.id, name: "alice", models: ["tiny-*"] });
  expect(view.limits.requests_per_minute).toMatchObject({ limit: 30 });
  expect(view.limits.tokens_per_day).toMatchObject({ limit: 5000, used: 0, remaining: 5000 });
  expect(view.requests.map((row) => row.model)).toContain("huge-model");
  for (const other of ["bob-the-other", bob.record.id, "bobs-private-model", alice.key]) expect(stdout).not.toContain(other);

  const table = await lmgate({ LMGATE_API_KEY: alice.key }, "whoami");
  expect(table.code, table.stderr).toBe(0);
  expect(table.stdout).toContain("alice");
  expect(table.stdout).toMatch(/tokens\/day:\s+5000 of 5000 left/);
  expect(table.stdout).toContain("403 model_not_allowed");

  const missing = await lmgate({}, "whoami");
  expect(missing.code).toBe(2);
  expect(missing.stderr).toMatch(/LMGATE_API_KEY/);
  const wrong = await lmgate({ LMGATE_API_KEY: "lmg_wrong" }, "whoami");
  expect(wrong.code).toBe(1);
  expect(wrong.stderr).toMatch(/API key/);
});
