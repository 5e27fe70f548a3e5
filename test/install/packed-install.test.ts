import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatCompletion } from "../../shared/openai-completions/completion-schemas.ts";
import { startAgent, type AgentProcess } from "../harness/agent-process.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * The packages as a user gets them: `npm pack` (whose prepack builds the JavaScript) for the agent and
 * the CLI, then `npm install --omit=dev` of the tarballs into an empty folder, from the npm registry
 * (npm's cache makes a rerun quick), and the installed bins run from there, away from the repository.
 */

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const PACKAGES = ["node-agent", "cli"];
const run = promisify(execFile);
// npm and the bins' `#!/usr/bin/env node` find this Node first (the machine's own may be older).
const env = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH}`, NO_COLOR: "1" };

let dir: string;
let bin: (name: string) => string;
let agent: AgentProcess | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lmgate-install-"));
  for (const folder of PACKAGES) await run("npm", ["pack", "--pack-destination", dir], { cwd: join(ROOT, folder), env });
  const tarballs = readdirSync(dir).map((file) => join(dir, file));
  expect(tarballs).toHaveLength(PACKAGES.length);
  const project = join(dir, "project");
  await mkdir(project);
  await writeFile(join(project, "package.json"), "{}\n");
  await run("npm", ["install", "--omit=dev", "--no-audit", "--no-fund", ...tarballs], { cwd: project, env });
  bin = (name) => join(project, "node_modules", ".bin", name);
}, 600_000);

afterAll(async () => {
  await agent?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("installed from the packed tarballs", () => {
  test("the install holds the runtime dependencies only: no wrangler, workerd, vitest, playwright, TypeScript or esbuild", () => {
    const installed = readdirSync(join(dir, "project", "node_modules"));
    expect(installed).toEqual(expect.arrayContaining(["lmgate-agent", "lmgate", "node-llama-cpp", "hono", "zod"]));
    for (const devOnly of ["wrangler", "workerd", "vitest", "playwright-core", "typescript", "esbuild", "miniflare"]) {
      expect(installed).not.toContain(devOnly);
    }
  });

  test("the packages hold compiled JavaScript, no TypeScript sources or tests", async () => {
    for (const name of ["lmgate-agent", "lmgate"]) {
      const files = readdirSync(join(dir, "project", "node_modules", name), { recursive: true }).map(String);
      expect(files.filter((file) => /\.ts$/.test(file))).toEqual([]);
      const manifest = JSON.parse(await readFile(join(dir, "project", "node_modules", name, "package.json"), "utf8")) as { engines?: { node?: string } };
      expect(manifest.engines?.node).toBe(">=22");
    }
  });

  test("lmgate-agent --serve answers a chat completion with the engine's stats", async () => {
    agent = await startAgent({ bin: bin("lmgate-agent"), models: [await testModelsDir()], env });
    const response = await fetch(`${agent.url}/api/v0/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny-chat-f32", messages: [{ role: "user", content: "Hello" }], max_tokens: 4, temperature: 0, seed: 7 }),
    });
    expect(response.status).toBe(200);
    const completion = ChatCompletion.parse(await response.json());
    expect(completion.usage.completion_tokens).toBeGreaterThan(0);
    expect(completion.stats?.tokens_per_second).toBeGreaterThan(0);
    expect(agent.output()).toMatch(/lmgate-agent 0\.1\.0 · node-llama-cpp/);
  });

  test("lmgate --help and lmgate-agent --help run", async () => {
    const cli = await run(bin("lmgate"), ["--help"], { env });
    expect(cli.stdout).toMatch(/^Usage: lmgate/);
    expect(cli.stdout).toContain("keys");
    const agentHelp = await run(bin("lmgate-agent"), ["--help"], { env });
    expect(agentHelp.stdout).toContain("--gateway <url>");
  });

  test("an older Node gets told which Node the bins need, before anything loads", async () => {
    // Node 20 as the bin sees it: the check reads process.versions.
    const pretend = Buffer.from(`Object.defineProperty(process.versions, "node", { value: "20.11.1" });`).toString("base64");
    const oldNode = { ...env, NODE_OPTIONS: `--import=data:text/javascript;base64,${pretend}` };
    for (const name of ["lmgate-agent", "lmgate"]) {
      const failed = await run(bin(name), ["--help"], { env: oldNode }).then(
        () => null,
        (error: { code: number; stderr: string }) => error,
      );
      expect(failed?.code).toBe(1);
      expect(failed?.stderr).toContain(`${name} needs Node.js 22 or newer; this is Node.js 20.11.1`);
    }
  });
});
