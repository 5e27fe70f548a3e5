import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, test } from "vitest";
import { ChatCompletion } from "../../shared/openai-completions/completion-schemas.ts";
import { startAgent } from "../harness/agent-process.ts";
import { testModelsDir } from "../harness/test-models.ts";

const CLI = fileURLToPath(new URL("../../node-agent/cli.ts", import.meta.url));
const run = promisify(execFile);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lmgate-agent-cli-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configFile(name: string, content: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

async function failure(args: string[]): Promise<{ code: number; stderr: string } | null> {
  return run(process.execPath, [CLI, ...args]).then(
    () => null,
    (error: { code: number; stderr: string }) => error,
  );
}

test("--help explains both modes, every option with its environment variable and the config file, and exits 0", async () => {
  const { stdout } = await run(process.execPath, [CLI, "--help"]);
  expect(stdout).toContain("--serve");
  expect(stdout).toContain("--gateway <url>");
  expect(stdout).toContain("LMGATE_THREADS");
  for (const flag of ["--config <file>", "--metrics", "--metrics-port <n>", "--metrics-token <secret>", "--shutdown-timeout <seconds>"]) {
    expect(stdout).toContain(flag);
  }
  expect(stdout).toMatch(/flag wins over the environment, which wins over\s+the config file/);
});

test("service --help reaches the service command, whose install lists the agent's options", async () => {
  const service = await run(process.execPath, [CLI, "service", "--help"]);
  expect(service.stdout).toContain("Usage: lmgate-agent service");
  expect(service.stdout).toMatch(/install \[options\][\s\S]*status[\s\S]*uninstall/);
  const install = await run(process.execPath, [CLI, "service", "install", "--help"]);
  expect(install.stdout).toContain("Usage: lmgate-agent service install");
  expect(install.stdout).toContain("--shutdown-timeout <seconds>");
});

test.each([
  [["--serve", "--bogus"], /Unknown option '--bogus'/],
  [["--serve", "--port", "many"], /--port must be a whole number/],
  [[], /choose a mode/],
  [["--gateway", "http://127.0.0.1:9"], /needs a node token/],
])("a bad command line %j prints a helpful error and exits non-zero", async (args, message) => {
  const failed = await failure(args);
  expect(failed?.code).toBe(2);
  expect(failed?.stderr).toMatch(message);
  expect(failed?.stderr).toContain("--help");
});

test.each([
  ['{"serve": true, "max_models": 2}', /unknown key "max_models" in the config file .*Did you mean "max-models"\?/],
  ['{"serve": true, "port": "1234"}', /"port" in .* must be a whole number, got "1234"/],
  ["{serve: true}", /is not valid JSON/],
  ['{"serve": true, "host": "0.0.0.0", "metrics": true}', /--metrics-token/],
])("a bad config file %s prints a helpful error and exits non-zero", async (content, message) => {
  const failed = await failure(["--config", await configFile("bad.json", content)]);
  expect(failed?.code).toBe(2);
  expect(failed?.stderr).toMatch(message);
});

test("a missing config file is named in the error", async () => {
  const failed = await failure(["--config", join(dir, "absent.json")]);
  expect(failed?.code).toBe(2);
  expect(failed?.stderr).toContain(`cannot read the config file ${join(dir, "absent.json")}: no such file`);
});

test("a config file supplies models (relative to the file) and settings; flags still win; the banner says what was found", async () => {
  const models = await testModelsDir();
  const path = await configFile("agent.json", JSON.stringify({ models: [relative(dir, models)], slots: 2, "max-queue": 3, port: 9 }));
  // The harness adds --serve --port 0: the flag beats the file's port.
  const agent = await startAgent({ models: [], extraArgs: ["--config", path] });
  try {
    const output = agent.output();
    expect(output).toMatch(/lmgate-agent \d+\.\d+\.\d+/);
    expect(output).toMatch(/backend\s+llama\.cpp-linux-\S+/);
    // The GPU line names the devices found, or says the CPU does the work.
    expect(output).toMatch(/gpu\s+(.*CPU only|(cuda|vulkan): .+)/);
    expect(output).toMatch(/1 thread per model, 2 slots per model/);
    expect(output).toContain(`3 found in ${models}`);
    expect(output).toMatch(/tiny-chat-q8_0\s+llm\s+Q8_0\s+2048 ctx/);
    expect(output).toMatch(/tiny-embed-f32\s+embeddings\s+F32/);
    // The banner comes before the ready line.
    expect(output.indexOf("tiny-embed-f32")).toBeLessThan(output.indexOf("lmgate-agent: serving on"));
    expect(agent.url).not.toMatch(/:9$/);
    const listed = (await (await fetch(`${agent.url}/v1/models`)).json()) as { data: unknown[] };
    expect(listed.data).toHaveLength(3);
  } finally {
    expect(await agent.stop()).toBe(0);
  }
});

test("lmgate-agent --serve answers the README's curl example with real stats, and exits 0 on SIGTERM", async () => {
  const agent = await startAgent({ models: [await testModelsDir()] });
  try {
    const response = await fetch(`${agent.url}/api/v0/chat/completions`, {
      method: "POST",
      // Greedy: sampled at random, the demo model's random weights sometimes end after one token,
      // which leaves no decode speed to measure.
      body: JSON.stringify({ model: "tiny-chat-f32", messages: [{ role: "user", content: "Hello!" }], max_tokens: 32, temperature: 0 }),
    });
    expect(response.status).toBe(200);
    const body = ChatCompletion.parse(await response.json());
    expect(body.stats?.tokens_per_second).toBeGreaterThan(0);
    expect(body.model_info?.quant).toBe("F32");
    expect(body.runtime?.name).toContain("llama.cpp-linux");
    expect(agent.output()).toMatch(/1 thread/);
    // Without --metrics there is no /metrics route.
    expect((await fetch(`${agent.url}/metrics`)).status).toBe(404);
  } finally {
    expect(await agent.stop()).toBe(0);
  }
});
