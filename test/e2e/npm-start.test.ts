import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, expect, test, vi } from "vitest";
import { ChatCompletionChunk } from "../../shared/openai-completions/completion-schemas.ts";
import { untilFirstText } from "../harness/sse.ts";
import { recordGateway } from "../../scripts/leftover-gateway.ts";
import { freePort, holdPort, startWranglerDev } from "../../scripts/wrangler-dev.ts";

/**
 * `npm start` refuses a port it cannot use before it starts anything, and says what to do; a port
 * held by the gateway of an earlier `npm start` that was stopped hard it takes back. Its happy
 * path: the dev key it printed is the one it prints when started again, Ctrl-C lets a running
 * request finish, and Ctrl-C again stops at once. These run in the checkout, like any `npm start`:
 * what they write there that was not there before is removed after the file.
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
/** What `npm start` writes in the checkout that was not there before this file. */
let freshInCheckout: string[] = [];
beforeAll(async () => {
  busy = await holdPort();
  // Each part on its own: another suite (bench) may have made .lmgate/ already.
  freshInCheckout = (await Promise.all([".dev.vars", ".lmgate/dev-key", ".lmgate/state", ".lmgate/models", ".lmgate"].map(async (name) => ((await stat(join(ROOT, name)).catch(() => undefined)) ? [] : [name])))).flat();
});
afterAll(async () => {
  await busy.close();
  for (const name of freshInCheckout) await rm(join(ROOT, name), { recursive: true, force: true });
});

interface Running {
  child: ChildProcess;
  url: string;
  apiKey: string;
  output: () => string;
  exited: Promise<number | null>;
}

/**
 * `npm start` as a terminal runs it: the leader of the foreground process group, which is what a
 * Ctrl-C reaches (the agent and wrangler lead groups of their own). Resolves once it printed its
 * dev key, that is once the local agent joined.
 */
async function npmStart(): Promise<Running> {
  const port = await freePort();
  const child = spawn(process.execPath, [START], { env: { ...process.env, LMGATE_PORT: String(port) }, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const running: Running = { child, url: `http://127.0.0.1:${port}`, apiKey: "", output: () => output, exited };
  starts.push(running);
  await vi.waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`npm start exited (${child.exitCode}):\n${output}`);
      const key = /API key \(dev\):\s+(\S+)/.exec(output)?.[1];
      expect(key, output).toBeDefined();
      running.apiKey = key as string;
    },
    { timeout: 170_000, interval: 200 },
  );
  return running;
}
/** Every npm start of this file, stopped after its test if the test did not get that far. */
const starts: Running[] = [];
afterEach(async () => {
  for (const running of starts.splice(0)) {
    if (running.child.exitCode !== null) continue;
    running.child.kill("SIGTERM");
    await running.exited;
  }
});

/** The terminal's Ctrl-C: SIGINT to npm start's foreground process group. */
const ctrlC = (running: Running) => process.kill(-(running.child.pid as number), "SIGINT");

/** Token "a" of both chat models npm start serves: a +100 logit bias keeps them writing that, so a generation lasts exactly max_tokens. */
const TOKEN_A = "395";
/** The demo chat model (a 2,048-token context), and the one with a 64k context for a generation no stop can outwait. */
const SHORT = { model: "tiny-chat-f32", maxTokens: 1800 };
const LONG = { model: "long-chat-q8_0", maxTokens: 16_000 };

/** A streamed chat through npm start's gateway, read up to its first text (the generation runs). */
async function streamingChat(running: Running, { model, maxTokens }: { model: string; maxTokens: number }): Promise<{ rest: () => Promise<{ done: boolean; chunks: ChatCompletionChunk[] }> }> {
  const response = await fetch(`${running.url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${running.apiKey}` },
    body: JSON.stringify({
      model,
      messages: [{ role: "user", content: "a" }],
      max_tokens: maxTokens,
      logit_bias: { [TOKEN_A]: 100 },
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (response.status !== 200) throw new Error(`chat: ${response.status} ${await response.text()}\n${running.output()}`);
  const reading = await untilFirstText(response);
  return {
    rest: async () => {
      const { events, done } = await reading.rest();
      return { done, chunks: events.flatMap((event) => (ChatCompletionChunk.safeParse(event).success ? [ChatCompletionChunk.parse(event)] : [])) };
    },
  };
}

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
    // The whole group is gone (workerd too), and this start goes on to its own gateway on the port
    // ("stopped the earlier gateway" is said only once the port is free; the port is not tried
    // here, where it would race that gateway).
    await vi.waitFor(() => expect(() => process.kill(-leftover.pid, 0)).toThrow(), { timeout: 10_000, interval: 100 });
    await vi.waitFor(() => expect(stdout).toContain(`starting the gateway (wrangler dev) on http://127.0.0.1:${port}`), { timeout: 30_000, interval: 100 });
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

test("Ctrl-C lets a running request finish, then everything stops; started again, npm start prints the same dev key", async () => {
  const first = await npmStart();
  const stream = await streamingChat(first, SHORT);
  ctrlC(first);
  await vi.waitFor(() => expect(first.output()).toContain("running requests may finish"), { timeout: 10_000, interval: 50 });
  const { done, chunks } = await stream.rest();
  expect(done, first.output()).toBe(true);
  expect(chunks.findLast((chunk) => chunk.choices.length > 0)?.choices[0]?.finish_reason).toBe("length");
  expect(chunks.at(-1)?.usage?.completion_tokens).toBe(SHORT.maxTokens);
  expect(await first.exited).toBe(0);
  expect(first.output()).not.toContain("exiting now");
  // The gateway went too: its port is free.
  await (await holdPort(Number(new URL(first.url).port))).close();

  const second = await npmStart();
  expect(second.apiKey).toBe(first.apiKey);
  expect((await fetch(`${second.url}/v1/models`, { headers: { authorization: `Bearer ${second.apiKey}` } })).status).toBe(200);
  ctrlC(second);
  expect(await second.exited).toBe(0);
}, 400_000);

test("Ctrl-C again stops at once: the running request is cut, not waited for", async () => {
  const running = await npmStart();
  const stream = await streamingChat(running, LONG);
  ctrlC(running);
  await vi.waitFor(() => expect(running.output()).toContain("running requests may finish"), { timeout: 10_000, interval: 50 });
  ctrlC(running);
  const { chunks, done } = await stream.rest();
  expect(done).toBe(false);
  const generated = chunks.reduce((sum, chunk) => sum + (chunk.choices[0]?.delta.content?.length ?? 0), 0);
  expect(generated).toBeLessThan(LONG.maxTokens);
  expect(running.output()).toContain("again: exiting now");
  // Not the agent's own --shutdown-timeout cutting it after 30 s.
  expect(running.output()).not.toContain("still running after");
  expect(await running.exited).toBe(0);
}, 300_000);
