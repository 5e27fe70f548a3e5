import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join, sep } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { expect, test } from "vitest";

/**
 * `npx lmgate …` in a checkout, run by the machine's own npm (whose Node may be 20, which the README
 * supports): npx installs the checkout into its cache (the first time for each checkout and cache),
 * checking the root package's `engines` against that Node, although the command itself then runs on
 * the project's Node 22 (the `node` devDependency is first on npx's PATH). So the root
 * package declares no `engines`; the published packages (cli/, node-agent/) do, and check at start.
 */

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const run = promisify(execFile);

test("npx lmgate, under the machine's own npm and Node, prints no EBADENGINE warnings before its output", async () => {
  // The PATH a user's shell has: without this run's node_modules/.bin (and its Node 22).
  const PATH = (process.env.PATH ?? "").split(delimiter).filter((entry) => !entry.includes(`node_modules${sep}.bin`)).join(delimiter);
  const systemNode = await run("node", ["--version"], { env: { ...process.env, PATH } }).then(
    ({ stdout }) => stdout.trim(),
    () => undefined,
  );
  if (systemNode === undefined) return console.warn("system-node test: no system node on PATH; nothing to check");
  // A cache of its own, as on a machine where npx has not run this checkout yet.
  const cache = await mkdtemp(join(tmpdir(), "lmgate-npx-cache-"));
  try {
    const { stdout, stderr } = await run("npx", ["lmgate", "--help"], { cwd: ROOT, env: { ...process.env, PATH, NO_COLOR: "1", npm_config_cache: cache } });
    expect(stdout).toContain("Usage: lmgate");
    expect(stderr, `npx under the system's Node ${systemNode}`).not.toContain("EBADENGINE");
  } finally {
    await rm(cache, { recursive: true, force: true });
  }
}, 60_000);
