import { execFile } from "node:child_process";
import { mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join, sep } from "node:path";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { expect, test } from "vitest";

/**
 * `npx lmgate …` in a checkout, run by the machine's own npm on an older Node (20, which the README
 * supports): npx installs the checkout into its cache (the first time for each checkout and cache),
 * checking the root package's `engines` against the Node npm runs on, although the command itself
 * then runs on the project's Node 22 (the `node` devDependency is first on npx's PATH). So the root
 * package declares no `engines`; the published packages (cli/, node-agent/) do, and check at start.
 *
 * npm checks `engines` against its own `process.version` (its `node-version` setting does not
 * change that), so the check needs a real older Node: the system's Node may be 22 already (CI
 * installs it first on PATH), so any older one is looked for, Debian's /usr/bin/node among them.
 */

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const run = promisify(execFile);

/** The PATH a user's shell has: without this run's node_modules/.bin (and its Node 22). */
const USER_PATH = (process.env.PATH ?? "").split(delimiter).filter((entry) => !entry.includes(`node_modules${sep}.bin`));

/** The first `node` older than 22 on the user's PATH or at /usr/bin (Debian's), or undefined. */
async function findOlderNode(): Promise<{ path: string; version: string } | undefined> {
  for (const dir of new Set([...USER_PATH, "/usr/bin"])) {
    const path = join(dir, "node");
    const version = await run(path, ["--version"]).then(({ stdout }) => stdout.trim(), () => undefined);
    if (version !== undefined && Number(/^v(\d+)\./.exec(version)?.[1] ?? 22) < 22) return { path, version };
  }
  return undefined;
}

const older = await findOlderNode();
const name = "npx lmgate, under the machine's npm on a Node older than 22, prints no EBADENGINE warnings before its output";

test.skipIf(older === undefined)(older === undefined ? `${name} (skipped: no Node older than 22 on PATH or at /usr/bin)` : name, async () => {
  const { path, version } = older!;
  // That Node first on the PATH, as on a machine whose system Node it is; a cache of its own, as
  // on a machine where npx has not run this checkout yet.
  const [shim, cache] = await Promise.all([mkdtemp(join(tmpdir(), "lmgate-older-node-")), mkdtemp(join(tmpdir(), "lmgate-npx-cache-"))]);
  try {
    await symlink(path, join(shim, "node"));
    const env = { ...process.env, PATH: [shim, ...USER_PATH].join(delimiter), NO_COLOR: "1", npm_config_cache: cache };
    // The npm found there runs on that Node, or the check below would prove nothing.
    const npmNode = JSON.parse((await run("npm", ["version", "--json"], { cwd: ROOT, env })).stdout) as { node: string };
    expect(`v${npmNode.node}`).toBe(version);
    const { stdout, stderr } = await run("npx", ["lmgate", "--help"], { cwd: ROOT, env });
    expect(stdout).toContain("Usage: lmgate");
    expect(stderr, `npx under Node ${version}`).not.toContain("EBADENGINE");
  } finally {
    await Promise.all([rm(shim, { recursive: true, force: true }), rm(cache, { recursive: true, force: true })]);
  }
}, 60_000);
