import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { expect, test } from "vitest";
import { ChatCompletion } from "../../shared/schemas/responses.ts";
import { startAgent } from "../harness/agent-process.ts";
import { testModelsDir } from "../harness/test-models.ts";

const CLI = fileURLToPath(new URL("../../node-agent/cli.ts", import.meta.url));
const run = promisify(execFile);

test("--help explains both modes and exits 0", async () => {
  const { stdout } = await run(process.execPath, [CLI, "--help"]);
  expect(stdout).toContain("--serve");
  expect(stdout).toContain("--gateway <url>");
  expect(stdout).toContain("LMGATE_THREADS");
});

test.each([
  [["--serve", "--bogus"], /Unknown option '--bogus'/],
  [["--serve", "--port", "many"], /--port must be a whole number/],
  [[], /choose a mode/],
  [["--gateway", "http://127.0.0.1:9"], /needs a node token/],
])("a bad command line %j prints a helpful error and exits non-zero", async (args, message) => {
  const failure = await run(process.execPath, [CLI, ...args]).then(
    () => null,
    (error: { code: number; stderr: string }) => error,
  );
  expect(failure?.code).toBe(2);
  expect(failure?.stderr).toMatch(message);
  expect(failure?.stderr).toContain("--help");
});

test("lmgate-agent --serve answers the README's curl example with real stats, and exits 0 on SIGTERM", async () => {
  const agent = await startAgent({ models: [await testModelsDir()] });
  try {
    const response = await fetch(`${agent.url}/api/v0/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "tiny-chat-f32", messages: [{ role: "user", content: "Hello!" }], max_tokens: 32 }),
    });
    expect(response.status).toBe(200);
    const body = ChatCompletion.parse(await response.json());
    expect(body.stats?.tokens_per_second).toBeGreaterThan(0);
    expect(body.model_info?.quant).toBe("F32");
    expect(body.runtime?.name).toContain("llama.cpp-linux");
    expect(agent.output()).toMatch(/1 thread/);
  } finally {
    expect(await agent.stop()).toBe(0);
  }
});
