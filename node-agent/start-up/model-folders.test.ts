import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { ConfigError } from "../configuration/config-error.ts";
import { chooseModelFolders } from "./model-folders.ts";
import type { Host } from "../platform/host.ts";

let home: string;
let host: Host;
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), "lmgate-home-"));
  host = { platform: "linux", home, env: {} };
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

test("a models folder that does not exist is refused, by name", async () => {
  const missing = join(home, "no-such-models");
  const failure = await chooseModelFolders([home, missing], { host }).catch((error: unknown) => error);
  expect(failure).toBeInstanceOf(ConfigError);
  expect((failure as Error).message).toContain(`the models folder ${missing} does not exist`);
});

test("folders given are served as given", async () => {
  expect(await chooseModelFolders([home], { host })).toEqual({ dirs: [home] });
});

test("none given: LM Studio's models folder when it exists, saying so and why", async () => {
  const models = join(home, "lms-models");
  await mkdir(models);
  await mkdir(join(home, ".lmstudio"));
  await writeFile(join(home, ".lmstudio", "settings.json"), JSON.stringify({ downloadsFolder: models }));
  const chosen = await chooseModelFolders([], { host });
  expect(chosen.dirs).toEqual([models]);
  expect(chosen.reason).toBe(`no --models given: serving LM Studio's models folder ${models} (downloadsFolder in ${join(home, ".lmstudio", "settings.json")})`);
});

test("none given and no LM Studio: the demo models, generated in the user's data folder", async () => {
  const chosen = await chooseModelFolders([], { host });
  const demo = join(home, ".local", "share", "lmgate", "demo-models");
  expect(chosen.dirs).toEqual([demo]);
  expect(chosen.reason).toBe(`no --models given and no LM Studio models folder (${join(home, ".lmstudio", "models")}): serving the generated demo models in ${demo}`);
  expect(await readdir(join(demo, "lmgate"))).toEqual(["tiny-chat-GGUF", "tiny-embed-GGUF"]);
});
