import { readFile, stat } from "node:fs/promises";
import { pathsOf, type Host } from "./host.ts";

export interface LmStudioModels {
  dir: string;
  /** Where the folder's name came from, for the start-up message. */
  source: string;
}

/**
 * LM Studio's models folder, found as LM Studio finds it (lmstudio-js `findLMStudioHome`): its home
 * is the folder named in `~/.lmstudio-home-pointer`, else the legacy `~/.cache/lm-studio` if it
 * exists, else `~/.lmstudio`; the models folder is `downloadsFolder` in `<home>/settings.json`
 * (what the app's "Models Directory" sets), else `<home>/models`. The folder may not exist.
 */
export async function lmStudioModels(host: Host): Promise<LmStudioModels> {
  const { join } = pathsOf(host);
  const home = await lmStudioHome(host);
  const settingsPath = join(home, "settings.json");
  // A missing or unreadable settings.json means the default, as it does to LM Studio.
  const settings = await readFile(settingsPath, "utf8")
    .then((text) => JSON.parse(text) as unknown)
    .catch(() => undefined);
  const downloads = (settings as { downloadsFolder?: unknown } | undefined)?.downloadsFolder;
  if (typeof downloads === "string" && downloads !== "") return { dir: downloads, source: `downloadsFolder in ${settingsPath}` };
  return { dir: join(home, "models"), source: "LM Studio's default" };
}

async function lmStudioHome(host: Host): Promise<string> {
  const { join } = pathsOf(host);
  const pointer = await readFile(join(host.home, ".lmstudio-home-pointer"), "utf8").catch(() => "");
  if (pointer.trim() !== "") return pointer.trim();
  const legacy = join(host.home, ".cache", "lm-studio");
  if (await isDirectory(legacy)) return legacy;
  return join(host.home, ".lmstudio");
}

export async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then(
    (found) => found.isDirectory(),
    () => false,
  );
}
