import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, test, vi } from "vitest";
import { recordGateway } from "../../scripts/leftover-gateway.ts";
import { freePort, holdPort, startWranglerDev } from "../../scripts/wrangler-dev.ts";

/**
 * `npm start` refuses a port it cannot use before it starts anything, and says what to do; a port
 * held by the gateway of an earlier `npm start` that was stopped hard it takes back.
 */

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

test("a gateway an earlier npm start left behind (stopped hard) is named as lmgate's own and stopped, with its workerd", async () => {
  // What a hard stop leaves: wrangler dev and its workerd in their own process group, holding the
  // port, and the pid file the dead npm start wrote for it.
  const port = await freePort();
  const state = await mkdtemp(join(tmpdir(), "lmgate-leftover-"));
  // This start goes on to write the checkout's .dev.vars and .lmgate/ as any would: what was not there goes again.
  const fresh = (await Promise.all([".dev.vars", ".lmgate"].map(async (name) => ((await stat(join(ROOT, name)).catch(() => undefined)) ? [] : [name])))).flat();
  const pidFile = join(ROOT, ".lmgate/gateway.pid");
  const earlierPidFile = await readFile(pidFile, "utf8").catch(() => undefined);
  const leftover = await startWranglerDev({ port, persistDir: state, readyTimeoutMs: 120_000 });
  let child: ChildProcess | undefined;
  try {
    recordGateway(pidFile, leftover.pid);
    child = spawn(process.execPath, [START], { env: { ...process.env, LMGATE_PORT: String(port) }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    await vi.waitFor(() => expect(stdout).toContain("stopped the earlier gateway"), { timeout: 30_000, interval: 100 });
    expect(stdout).toContain(`127.0.0.1:${port} is held by lmgate's own gateway (wrangler dev, pid ${leftover.pid})`);
    await leftover.exited;
    // The whole group is gone (workerd too), and the port is free for this start.
    await vi.waitFor(() => expect(() => process.kill(-leftover.pid, 0)).toThrow(), { timeout: 10_000, interval: 100 });
    await (await holdPort(port)).close();
  } finally {
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((resolve) => child?.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    }
    await leftover.stop();
    if (earlierPidFile === undefined) await rm(pidFile, { force: true });
    else await writeFile(pidFile, earlierPidFile);
    for (const name of fresh) await rm(join(ROOT, name), { recursive: true, force: true });
    await rm(state, { recursive: true, force: true });
  }
}, 180_000);
