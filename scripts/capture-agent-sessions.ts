/**
 * Records what today's Claude Code and Codex really send, for the replay tests in
 * test/e2e/agent-sessions.test.ts. Runs each CLI (installed anywhere, e.g.
 * `npm install --prefix /tmp/agents @anthropic-ai/claude-code @openai/codex`) with a temporary
 * HOME against a local server on 127.0.0.1 that records every request and answers with a script:
 * the main loop first reads a file, then lists the folder, then answers in text, so a short task
 * runs three turns with tool calls and tool results. Bodies are written, with anything
 * machine-specific replaced, to test/fixtures/agent-sessions/<agent>/NN-<path>.json.
 *
 *   CLAUDE_BIN=/tmp/agents/node_modules/.bin/claude CODEX_BIN=/tmp/agents/node_modules/.bin/codex \
 *     node scripts/capture-agent-sessions.ts
 */
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const FIXTURES = fileURLToPath(new URL("../test/fixtures/agent-sessions/", import.meta.url));
const MODEL = "long-chat-q8_0";
const TASK = "Read notes.txt, then list the files here, then say what you found.";
/** A CLI that has not finished by then is stopped: the script answers every turn at once. */
const RUN_TIMEOUT_MS = 180_000;

interface Recorded {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: unknown;
}

type Scripted = { kind: "tool"; name: string; input: Record<string, unknown> } | { kind: "text"; text: string };

/** Which step of the task a main-loop request is at: one step per tool result already in it. */
function step(toolResults: number, cwd: string, shellTool: string): Scripted {
  if (toolResults === 0) return shellTool === "Read" ? { kind: "tool", name: "Read", input: { file_path: join(cwd, "notes.txt") } } : shellCall(shellTool, "cat notes.txt");
  if (toolResults === 1) return shellTool === "Read" ? { kind: "tool", name: "Bash", input: { command: "ls", description: "List files" } } : shellCall(shellTool, "ls");
  return { kind: "text", text: "notes.txt says hello; the folder holds notes.txt only." };
}

function shellCall(tool: string, command: string): Scripted {
  return tool === "exec_command" ? { kind: "tool", name: tool, input: { cmd: command } } : { kind: "tool", name: tool, input: { command: ["bash", "-lc", command] } };
}

const sse = (response: ServerResponse, events: Array<[string, unknown]>) => {
  response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  for (const [event, data] of events) response.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  response.end();
};

/** Anthropic's Messages answer, streamed as Claude Code asks for it (or whole). */
function answerMessages(body: any, response: ServerResponse, cwd: string): void {
  const tools: string[] = (body.tools ?? []).map((tool: { name: string }) => tool.name);
  const results = (body.messages ?? []).flatMap((message: any) => (Array.isArray(message.content) ? message.content : [])).filter((block: any) => block.type === "tool_result").length;
  const scripted: Scripted = tools.includes("Read") && tools.includes("Bash") ? step(results, cwd, "Read") : { kind: "text", text: "A short title" };
  const id = `msg_${Date.now()}`;
  const block = scripted.kind === "text" ? { type: "text", text: scripted.text } : { type: "tool_use", id: `toolu_${Date.now()}`, name: scripted.name, input: scripted.input };
  const stopReason = scripted.kind === "text" ? "end_turn" : "tool_use";
  const usage = { input_tokens: 100, output_tokens: 10, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
  if (!body.stream) {
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ id, type: "message", role: "assistant", model: body.model, content: [block], stop_reason: stopReason, stop_sequence: null, usage }));
    return;
  }
  sse(response, [
    ["message_start", { type: "message_start", message: { id, type: "message", role: "assistant", model: body.model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 0 } } }],
    ["content_block_start", { type: "content_block_start", index: 0, content_block: block.type === "text" ? { type: "text", text: "" } : { ...block, input: {} } }],
    ["content_block_delta", { type: "content_block_delta", index: 0, delta: block.type === "text" ? { type: "text_delta", text: scripted.kind === "text" ? scripted.text : "" } : { type: "input_json_delta", partial_json: JSON.stringify(block.input) } }],
    ["content_block_stop", { type: "content_block_stop", index: 0 }],
    ["message_delta", { type: "message_delta", delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: 10 } }],
    ["message_stop", { type: "message_stop" }],
  ]);
}

/** OpenAI's Responses event stream, as Codex reads it. */
function answerResponses(body: any, response: ServerResponse, cwd: string): void {
  const tools: string[] = (body.tools ?? []).flatMap((tool: { name?: string }) => (tool.name ? [tool.name] : []));
  const shell = tools.includes("exec_command") ? "exec_command" : tools.includes("shell") ? "shell" : undefined;
  const results = (body.input ?? []).filter((item: any) => item.type === "function_call_output").length;
  const scripted: Scripted = shell ? step(results, cwd, shell) : { kind: "text", text: "A short title" };
  const id = `resp_${Date.now()}`;
  const item =
    scripted.kind === "text"
      ? { id: `msg_${Date.now()}`, type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text: scripted.text, annotations: [] }] }
      : { id: `fc_${Date.now()}`, type: "function_call", status: "completed", call_id: `call_${Date.now()}`, name: scripted.name, arguments: JSON.stringify(scripted.input) };
  const base = { id, object: "response", created_at: Math.floor(Date.now() / 1000), model: body.model, output: [] as unknown[] };
  const usage = { input_tokens: 100, input_tokens_details: { cached_tokens: 0 }, output_tokens: 10, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 110 };
  sse(response, [
    ["response.created", { type: "response.created", response: { ...base, status: "in_progress" } }],
    ["response.output_item.added", { type: "response.output_item.added", output_index: 0, item: { ...item, status: "in_progress" } }],
    ...(scripted.kind === "text" ? [["response.output_text.delta", { type: "response.output_text.delta", item_id: item.id, output_index: 0, content_index: 0, delta: scripted.text }] as [string, unknown]] : []),
    ["response.output_item.done", { type: "response.output_item.done", output_index: 0, item }],
    ["response.completed", { type: "response.completed", response: { ...base, status: "completed", output: [item], usage } }],
  ]);
}

async function readBody(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Headers worth keeping: what the API reads; never credentials or machine-specific ids. */
const KEPT_HEADERS = /^(anthropic-beta|anthropic-version|content-type|openai-beta|accept)$/;

async function recordingServer(cwd: string) {
  const recorded: Recorded[] = [];
  const server = createServer(async (request, response) => {
    const body = await readBody(request);
    const path = (request.url ?? "/").split("?")[0] as string;
    const headers = Object.fromEntries(Object.entries(request.headers).filter(([name]) => KEPT_HEADERS.test(name)).map(([name, value]) => [name, String(value)]));
    recorded.push({ method: request.method ?? "GET", path, headers, body });
    if (request.method === "POST" && path.endsWith("/messages")) return answerMessages(body, response, cwd);
    if (request.method === "POST" && path.endsWith("/messages/count_tokens")) {
      response.writeHead(200, { "content-type": "application/json" });
      return response.end(JSON.stringify({ input_tokens: 100 }));
    }
    if (request.method === "POST" && path.endsWith("/responses")) return answerResponses(body, response, cwd);
    response.writeHead(404, { "content-type": "application/json" });
    response.end(JSON.stringify({ error: { message: "not recorded" } }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, recorded, close: () => new Promise((resolve) => server.close(resolve)) };
}

function run(command: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ["ignore", "inherit", "inherit"] });
    const timer = setTimeout(() => child.kill("SIGTERM"), RUN_TIMEOUT_MS);
    child.once("error", reject);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** Replaces what differs per machine and run, so fixtures are stable and say nothing about who made them. */
function scrub(text: string, cwd: string, home: string): string {
  return text
    .replaceAll(cwd, "/work/project")
    // Claude Code names its per-project folder after the path, slashes as dashes.
    .replaceAll(cwd.replaceAll("/", "-"), "-work-project")
    .replaceAll(home, "/home/user")
    .replace(/cch=[0-9a-f]+/g, "cch=00000")
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, "00000000-0000-4000-8000-000000000000")
    .replace(/(OS Version|Platform|Shell): [^\\"]*/g, "$1: (scrubbed)")
    .replace(/"device_id\\":\\"[0-9a-f]+/g, '"device_id\\":\\"0000')
    // Today's date, where the prompts give it; dated identifiers (betas, tool types) stay as they are.
    .replace(/(current_date>|Today's date is:? )\d{4}-\d{2}-\d{2}/g, "$12026-01-01");
}

async function capture(agent: "claude-code" | "codex", bin: string): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), `capture-${agent}-home-`));
  const cwd = await mkdtemp(join(tmpdir(), `capture-${agent}-work-`));
  await writeFile(join(cwd, "notes.txt"), "hello\n");
  const server = await recordingServer(cwd);
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, TERM: "dumb", LANG: "C.UTF-8" };
  let code: number | null;
  if (agent === "claude-code") {
    code = await run(bin, ["-p", TASK, "--allowedTools", "Read", "Bash(ls)", "Bash(ls:*)"], {
      cwd,
      env: {
        ...env,
        ANTHROPIC_BASE_URL: server.url,
        ANTHROPIC_AUTH_TOKEN: "capture",
        ANTHROPIC_MODEL: MODEL,
        ANTHROPIC_DEFAULT_HAIKU_MODEL: MODEL,
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
        DISABLE_TELEMETRY: "1",
        DISABLE_AUTOUPDATER: "1",
      },
    });
  } else {
    await mkdir(join(home, ".codex"), { recursive: true });
    await writeFile(
      join(home, ".codex", "config.toml"),
      [`model = "${MODEL}"`, `model_provider = "lmgate"`, "", "[model_providers.lmgate]", `name = "lmgate"`, `base_url = "${server.url}/v1"`, `env_key = "LMGATE_API_KEY"`, `wire_api = "responses"`, ""].join("\n"),
    );
    code = await run(bin, ["exec", "--skip-git-repo-check", "--sandbox", "read-only", TASK], { cwd, env: { ...env, LMGATE_API_KEY: "capture" } });
  }
  await server.close();
  console.log(`${agent} exited ${code}; ${server.recorded.length} requests`);
  const dir = join(FIXTURES, agent);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  let index = 0;
  for (const request of server.recorded) {
    if (request.method !== "POST") continue;
    const name = `${String(++index).padStart(2, "0")}-${request.path.replace(/^\/+/, "").replace(/\W+/g, "-")}.json`;
    await writeFile(join(dir, name), scrub(JSON.stringify(request, null, 2), cwd, home) + "\n");
  }
  console.log(`wrote ${(await readdir(dir)).length} fixtures to ${dir}`);
  await rm(home, { recursive: true, force: true });
  await rm(cwd, { recursive: true, force: true });
  if (code !== 0) process.exitCode = 1;
}

await capture("claude-code", process.env.CLAUDE_BIN ?? "claude");
await capture("codex", process.env.CODEX_BIN ?? "codex");
