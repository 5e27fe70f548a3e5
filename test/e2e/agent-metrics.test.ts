import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ChatCompletion, ChatCompletionChunk, EmbeddingsResponse, TextCompletion } from "../../shared/openai-completions/completion-schemas.ts";
import { startAgent, type AgentProcess } from "../harness/agent-process.ts";
import { parsePrometheus, series } from "../harness/prometheus-text.ts";
import { readSse } from "../harness/sse.ts";
import { testModelsDir } from "../harness/test-models.ts";

/** `lmgate-agent --serve --metrics`: Prometheus text at `/metrics` on the API port, counting real traffic. */

const CHAT = "tiny-chat-f32";
const EMBED = "tiny-embed-f32";

describe("direct mode with --metrics", () => {
  let agent: AgentProcess;
  beforeAll(async () => {
    agent = await startAgent({ models: [await testModelsDir()], extraArgs: ["--metrics"] });
  });
  afterAll(async () => {
    expect(await agent?.stop()).toBe(0);
  });

  const scrape = async () => {
    const response = await fetch(`${agent.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    return parsePrometheus(await response.text());
  };
  const post = (path: string, body: unknown) => fetch(`${agent.url}${path}`, { method: "POST", body: JSON.stringify(body) });
  const messages = [{ role: "user", content: "Count the waves." }];

  test("/metrics parses as Prometheus text and its counters move by exactly what known traffic adds", async () => {
    const before = await scrape();
    expect(agent.output()).toContain(`lmgate-agent: metrics on ${agent.url}/metrics`);

    // Three chats (two plain, one streamed with usage), one completion, one embedding, one unknown model.
    const completionTokens: number[] = [];
    const promptTokens = { chat: 0, embed: 0 };
    for (const maxTokens of [5, 9]) {
      const response = await post("/v1/chat/completions", { model: CHAT, messages, max_tokens: maxTokens, temperature: 0 });
      const { usage } = ChatCompletion.parse(await response.json());
      completionTokens.push(usage.completion_tokens);
      promptTokens.chat += usage.prompt_tokens;
    }
    const streamed = await readSse(
      await post("/api/v0/chat/completions", { model: CHAT, messages, max_tokens: 7, temperature: 0, stream: true, stream_options: { include_usage: true } }),
    );
    const streamUsage = ChatCompletionChunk.parse(streamed.events.at(-1)).usage;
    completionTokens.push(streamUsage?.completion_tokens ?? NaN);
    promptTokens.chat += streamUsage?.prompt_tokens ?? NaN;
    const completion = TextCompletion.parse(await (await post("/v1/completions", { model: CHAT, prompt: "Once", max_tokens: 4, temperature: 0 })).json());
    completionTokens.push(completion.usage.completion_tokens);
    promptTokens.chat += completion.usage.prompt_tokens;
    const embedding = EmbeddingsResponse.parse(await (await post("/v1/embeddings", { model: EMBED, input: ["sea", "salt water"] })).json());
    promptTokens.embed += embedding.usage.prompt_tokens;
    expect((await post("/v1/chat/completions", { model: "no-such-model", messages })).status).toBe(404);

    const after = await scrape();
    const delta = (key: string) => (after.samples.get(key) ?? 0) - (before.samples.get(key) ?? 0);
    const requests = (route: string, model: string, status: string) => delta(series("lmgate_agent_requests_total", { route, model, status }));

    expect(after.types.get("lmgate_agent_requests_total")).toBe("counter");
    expect(requests("chat/completions", CHAT, "200")).toBe(3);
    expect(requests("completions", CHAT, "200")).toBe(1);
    expect(requests("embeddings", EMBED, "200")).toBe(1);
    // A model id nobody has never becomes a label value: callers could mint unbounded series.
    expect(requests("chat/completions", "unknown", "404")).toBe(1);
    expect([...after.samples.keys()].some((key) => key.includes("no-such-model"))).toBe(false);

    expect(completionTokens.every((tokens) => tokens > 0)).toBe(true);
    expect(delta(series("lmgate_agent_completion_tokens_total", { model: CHAT }))).toBe(completionTokens.reduce((sum, tokens) => sum + tokens, 0));
    expect(delta(series("lmgate_agent_prompt_tokens_total", { model: CHAT }))).toBe(promptTokens.chat);
    expect(delta(series("lmgate_agent_prompt_tokens_total", { model: EMBED }))).toBe(promptTokens.embed);

    expect(after.types.get("lmgate_agent_time_to_first_token_seconds")).toBe("histogram");
    expect(delta(series("lmgate_agent_time_to_first_token_seconds_count", { model: CHAT }))).toBe(4);
    expect(delta(series("lmgate_agent_request_duration_seconds_count", { route: "chat/completions", model: CHAT }))).toBe(3);
    expect(delta(series("lmgate_agent_request_duration_seconds_count", { route: "embeddings", model: EMBED }))).toBe(1);
    // A decode speed needs two tokens or more.
    expect(delta(series("lmgate_agent_tokens_per_second_count", { model: CHAT }))).toBe(completionTokens.filter((tokens) => tokens >= 2).length);
    expect(delta(series("lmgate_agent_tokens_per_second_sum", { model: CHAT }))).toBeGreaterThan(0);

    // Gauges read from the engine at scrape time.
    expect(after.samples.get(series("lmgate_agent_models_loaded"))).toBe(2);
    expect(after.samples.get(series("lmgate_agent_slots", { model: CHAT }))).toBe(4);
    expect(after.samples.get(series("lmgate_agent_slots", { model: EMBED }))).toBe(1);
    expect(after.samples.get(series("lmgate_agent_slots_busy", { model: CHAT }))).toBe(0);
    expect(after.samples.get(series("lmgate_agent_queue_depth", { model: CHAT }))).toBe(0);
    // One request at a time: every decode carried one sequence, and each token needed one.
    expect(after.types.get("lmgate_agent_decodes_total")).toBe("counter");
    const decodes = delta(series("lmgate_agent_decodes_total", { model: CHAT }));
    expect(decodes).toBeGreaterThanOrEqual(completionTokens.reduce((sum, tokens) => sum + tokens, 0));
    expect(delta(series("lmgate_agent_decode_sequences_total", { model: CHAT }))).toBe(decodes);
    expect([...after.samples.keys()].some((key) => key.startsWith("lmgate_agent_decodes_total") && key.includes(EMBED))).toBe(false);
    expect(after.samples.get(series("lmgate_agent_requests_in_flight", { route: "chat/completions" }))).toBe(0);
    const info = [...after.samples].find(([key]) => key.startsWith("lmgate_agent_info{"));
    expect(info?.[0]).toMatch(/^lmgate_agent_info\{runtime="llama\.cpp-linux-[^"]+",version="\d+\.\d+\.\d+"\}$/);
    expect(info?.[1]).toBe(1);
    expect(after.types.get("process_resident_memory_bytes")).toBe("gauge");
  });

  test("/metrics answers GET only", async () => {
    const response = await fetch(`${agent.url}/metrics`, { method: "POST" });
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("GET, HEAD");
  });
});

test("--metrics-token guards /metrics (and only /metrics) behind a bearer token", async () => {
  const agent = await startAgent({ models: [await testModelsDir()], extraArgs: ["--metrics"], env: { LMGATE_METRICS_TOKEN: "scrape-me" } });
  try {
    const metrics = (authorization?: string) => fetch(`${agent.url}/metrics`, { headers: authorization ? { authorization } : {} });
    const missing = await metrics();
    expect(missing.status).toBe(401);
    expect(missing.headers.get("www-authenticate")).toContain("Bearer");
    expect((await metrics("Bearer wrong")).status).toBe(401);
    const allowed = await metrics("Bearer scrape-me");
    expect(allowed.status).toBe(200);
    expect(parsePrometheus(await allowed.text()).types.get("lmgate_agent_requests_total")).toBe("counter");
    expect((await fetch(`${agent.url}/v1/models`)).status).toBe(200);
    expect(agent.output()).toContain("(token required)");
    expect(agent.output()).not.toContain("scrape-me");
  } finally {
    expect(await agent.stop()).toBe(0);
  }
});
