import { afterEach, expect, test } from "vitest";
import { ErrorBody } from "../../shared/protocol/api-error.ts";
import { ChatCompletion, ChatCompletionChunk } from "../../shared/openai-completions/completion-schemas.ts";
import { startAgent, type AgentProcess } from "../harness/agent-process.ts";
import { untilFirstText } from "../harness/sse.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * Graceful shutdown of a real agent process (direct mode): SIGTERM stops new work, lets what runs
 * finish, and exits 0; the deadline and a second signal cut it short.
 */

const CHAT = "tiny-chat-f32";
/** Token "a": a +100 logit bias keeps the model writing it, so a generation lasts exactly max_tokens (~1 s per 1500 here). */
const TOKEN_A = "395";

let agent: AgentProcess | undefined;
afterEach(() => {
  agent?.kill("SIGKILL");
  agent = undefined;
});

const longChat = (maxTokens: number, extra: Record<string, unknown> = {}) => ({
  model: CHAT,
  messages: [{ role: "user", content: "a" }],
  max_tokens: maxTokens,
  logit_bias: { [TOKEN_A]: 100 },
  ...extra,
});

const post = (path: string, body: unknown) =>
  fetch(`${agent?.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms:\n${agent?.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function gauge(name: string): Promise<number> {
  const text = await (await fetch(`${agent?.url}/metrics`)).text();
  const match = new RegExp(`^${name}\\{model="${CHAT}"\\} (\\S+)$`, "m").exec(text);
  return match ? Number(match[1]) : 0;
}

test(
  "SIGTERM during a stream lets it and the request queued behind it finish, answers new requests 503 with Retry-After, then exits 0",
  async () => {
    agent = await startAgent({ models: [await testModelsDir()], extraArgs: ["--slots", "1", "--metrics"] });
    const response = await post("/api/v0/chat/completions", longChat(1500, { stream: true, stream_options: { include_usage: true } }));
    expect(response.status).toBe(200);
    const stream = await untilFirstText(response);
    expect(stream.first).toContain("chat.completion.chunk");
    // A second request, admitted before the signal, waits for the one slot.
    const queued = post("/v1/chat/completions", longChat(1200));
    await until(async () => (await gauge("lmgate_agent_queue_depth")) === 1);

    agent.kill("SIGTERM");
    await until(() => agent?.output().includes("SIGTERM: shutting down") ?? false);
    const refused = await post("/v1/chat/completions", longChat(4));
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(ErrorBody.parse(await refused.json()).error.code).toBe("shutting_down");

    // The stream ran to its end: the final chunk with finish_reason and stats, the usage chunk, [DONE].
    const { events, done } = await stream.rest();
    expect(done).toBe(true);
    const chunks = events.map((event) => ChatCompletionChunk.parse(event));
    const final = chunks.findLast((chunk) => chunk.choices.length > 0);
    expect(final?.choices[0]?.finish_reason).toBe("length");
    expect(final?.stats?.stop_reason).toBe("maxPredictedTokensReached");
    expect(chunks.at(-1)?.usage?.completion_tokens).toBe(1500);
    const text = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("");
    expect(text.length).toBeGreaterThanOrEqual(1500);

    const queuedAnswer = await queued;
    expect(queuedAnswer.status).toBe(200);
    expect(ChatCompletion.parse(await queuedAnswer.json()).usage.completion_tokens).toBe(1200);

    expect(await agent.exited).toBe(0);
    expect(agent.output()).toContain("lmgate-agent: stopped");
  },
);

test("past --shutdown-timeout a running stream is stopped, ending with a model_unloaded error (no [DONE], no finish_reason), and the agent exits 0", async () => {
  agent = await startAgent({ models: [await testModelsDir()], extraArgs: ["--shutdown-timeout", "0"] });
  const response = await post("/api/v0/chat/completions", longChat(2000, { stream: true }));
  const stream = await untilFirstText(response);
  agent.kill("SIGTERM");
  const { events, done } = await stream.rest();
  expect(done).toBe(false);
  expect(ErrorBody.parse(events.at(-1)).error.code).toBe("model_unloaded");
  const chunks = events.slice(0, -1).map((event) => ChatCompletionChunk.parse(event));
  expect(chunks.every((chunk) => chunk.choices.every((choice) => choice.finish_reason === null))).toBe(true);
  expect(await agent.exited).toBe(0);
  expect(agent.output()).toMatch(/1 request\(s\) still running after 0 s/);
});

test("a second signal exits at once, without waiting for running requests", async () => {
  agent = await startAgent({ models: [await testModelsDir()] });
  const response = await post("/api/v0/chat/completions", longChat(2000, { stream: true }));
  await untilFirstText(response);
  agent.kill("SIGINT");
  await until(() => agent?.output().includes("SIGINT: shutting down") ?? false);
  agent.kill("SIGTERM");
  expect(await agent.exited).toBe(128 + 15);
  expect(agent.output()).toContain("SIGTERM again: exiting now");
});
