import { mkdir, mkdtemp, readdir, symlink } from "node:fs/promises";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { inject } from "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    /** The run's generated tiny models (test/harness/global-setup.ts writes them). */
    testModelsRoot: string;
  }
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => relative(dir, join(entry.parentPath, entry.name)));
}

let own: Promise<string> | undefined;

/**
 * This test file's own models folder: symlinks to the run's generated models in a temporary
 * folder, removed when the file's worker exits. Whatever a test writes or deletes there stays its
 * own, and no other file or concurrent run sees it.
 */
export function testModelsDir(): Promise<string> {
  own ??= (async () => {
    const root = inject("testModelsRoot");
    const dir = await mkdtemp(join(tmpdir(), "lmgate-test-models-"));
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    for (const file of await filesUnder(root)) {
      await mkdir(dirname(join(dir, file)), { recursive: true });
      await symlink(join(root, file), join(dir, file));
    }
    return dir;
  })();
  return own;
}
