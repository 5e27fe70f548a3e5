import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import type { Host } from "./host.ts";
import { lmStudioModels } from "./lmstudio-models.ts";

let home: string;
let host: Host;
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), "lmgate-home-"));
  host = { platform: process.platform, home, env: {} };
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

test("with nothing installed: ~/.lmstudio/models, LM Studio's default", async () => {
  expect(await lmStudioModels(host)).toEqual({ dir: join(home, ".lmstudio", "models"), source: "LM Studio's default" });
});

test("the downloadsFolder setting wins over the default", async () => {
  await mkdir(join(home, ".lmstudio"));
  await writeFile(join(home, ".lmstudio", "settings.json"), JSON.stringify({ downloadsFolder: "/mnt/big/models", other: 1 }));
  expect(await lmStudioModels(host)).toEqual({ dir: "/mnt/big/models", source: `downloadsFolder in ${join(home, ".lmstudio", "settings.json")}` });
});

test("a settings.json that is not JSON, or has no downloadsFolder, means the default", async () => {
  await mkdir(join(home, ".lmstudio"));
  await writeFile(join(home, ".lmstudio", "settings.json"), "{not json");
  expect((await lmStudioModels(host)).dir).toBe(join(home, ".lmstudio", "models"));
  await writeFile(join(home, ".lmstudio", "settings.json"), JSON.stringify({ downloadsFolder: 3 }));
  expect((await lmStudioModels(host)).dir).toBe(join(home, ".lmstudio", "models"));
});

test("the home pointer file moves LM Studio's home; the legacy ~/.cache/lm-studio is used when it exists", async () => {
  await mkdir(join(home, ".cache", "lm-studio"), { recursive: true });
  expect((await lmStudioModels(host)).dir).toBe(join(home, ".cache", "lm-studio", "models"));
  const moved = join(home, "elsewhere");
  await mkdir(moved);
  await writeFile(join(moved, "settings.json"), JSON.stringify({ downloadsFolder: join(home, "gguf") }));
  await writeFile(join(home, ".lmstudio-home-pointer"), `${moved}\n`);
  expect((await lmStudioModels(host)).dir).toBe(join(home, "gguf"));
});
