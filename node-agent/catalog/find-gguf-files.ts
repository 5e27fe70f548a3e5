import { readdir, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import type { FoundFile } from "./model-ids.ts";

/**
 * Every `.gguf` file below `dir`, in a stable order. Follows symbolic links (model folders are
 * often links into a bigger disk) but visits each real folder once, so link cycles end.
 */
export async function findGgufFiles(dir: string, onWarning: (message: string) => void): Promise<FoundFile[]> {
  const found: FoundFile[] = [];
  const visited = new Set<string>();

  async function walk(folder: string, segments: string[]): Promise<void> {
    let real: string;
    let entries;
    try {
      real = await realpath(folder);
      if (visited.has(real)) return;
      visited.add(real);
      entries = await readdir(folder, { withFileTypes: true });
    } catch (error) {
      onWarning(`cannot read the model folder ${folder}: ${(error as Error).message}`);
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (entry.name.startsWith(".")) continue;
      const path = join(folder, entry.name);
      let isDirectory = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = await stat(path).catch(() => undefined);
        isDirectory = target?.isDirectory() ?? false;
        isFile = target?.isFile() ?? false;
      }
      if (isDirectory) await walk(path, [...segments, entry.name]);
      else if (isFile && entry.name.toLowerCase().endsWith(".gguf")) found.push({ path, segments: [...segments, entry.name] });
    }
  }

  await walk(dir, []);
  return found;
}
