import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startAgent } from "../harness/agent-process.ts";
import { testModelsDir } from "../harness/test-models.ts";

const CLI = fileURLToPath(new URL("../../node-agent/cli.ts", import.meta.url));
const run = promisify(execFile);

let home: string;
beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), "lmgate-home-"));
});
afterAll(async () => {
  await rm(home, { recursive: true, force: true });
});

test("with no --models, the agent serves LM Studio's models folder (its downloadsFolder setting) and says so", async () => {
  const models = await testModelsDir();
  await mkdir(join(home, ".lmstudio"));
  await writeFile(join(home, ".lmstudio", "settings.json"), JSON.stringify({ downloadsFolder: models }));
  const agent = await startAgent({ models: [], env: { HOME: home } });
  try {
    expect(agent.output()).toContain(`no --models given: serving LM Studio's models folder ${models} (downloadsFolder in ${join(home, ".lmstudio", "settings.json")})`);
    expect(agent.output()).toContain(`3 found in ${models}`);
  } finally {
    expect(await agent.stop()).toBe(0);
  }
});

test("a models folder that does not exist stops the agent with a message naming it", async () => {
  const missing = join(home, "typo-models");
  const failed = await run(process.execPath, [CLI, "--serve", "--port", "0", "--models", missing]).then(
    () => null,
    (error: { code: number; stderr: string }) => error,
  );
  expect(failed?.code).toBe(1);
  expect(failed?.stderr).toContain(`the models folder ${missing} does not exist`);
});
