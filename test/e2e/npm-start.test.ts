import { execFile } from "node:child_process";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, test } from "vitest";
import { holdPort } from "../../scripts/wrangler-dev.ts";

/** `npm start` refuses a port it cannot use before it starts anything, and says what to do. */

const START = fileURLToPath(new URL("../../scripts/start.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** What `npm start` writes in the checkout (.dev.vars, and .lmgate/: its key, state and models), with sizes and times. */
async function footprint(): Promise<string[]> {
  const seen: string[] = [];
  const visit = async (path: string): Promise<void> => {
    const info = await stat(path).catch(() => undefined);
    seen.push(`${path.slice(ROOT.length)} ${info ? `${info.size} ${info.mtimeMs}` : "absent"}`);
    if (info?.isDirectory()) for (const entry of (await readdir(path)).sort()) await visit(join(path, entry));
  };
  await visit(join(ROOT, ".dev.vars"));
  await visit(join(ROOT, ".lmgate"));
  return seen;
}

function start(port: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [START], { env: { ...process.env, LMGATE_PORT: port }, timeout: 30_000 }, (_error, _stdout, stderr) =>
      resolve({ code: child.exitCode, stderr }),
    );
  });
}

let busy: Awaited<ReturnType<typeof holdPort>>;
beforeAll(async () => {
  busy = await holdPort();
});
afterAll(() => busy.close());

test("a port already in use is named, with the way out, and nothing starts", async () => {
  const before = await footprint();
  const { code, stderr } = await start(String(busy.port));
  expect(code).toBe(1);
  expect(stderr).toContain(`127.0.0.1:${busy.port} is already in use`);
  expect(stderr).toContain("LMGATE_PORT=8787 npm start");
  expect(stderr).not.toContain("wrangler");
  expect(await footprint()).toEqual(before);
});

test("a port that is not a number is refused", async () => {
  const { code, stderr } = await start("twelve");
  expect(code).toBe(1);
  expect(stderr).toContain('LMGATE_PORT must be a port number (1–65535), got "twelve"');
});
