import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ensureModel } from "../../node-agent/demo-models/demo-models.ts";
import { TINY_SPECULATIVE } from "../../node-agent/demo-models/speculative-pairs.ts";
import { startAgent, type AgentProcess } from "../harness/agent-process.ts";
import { startGateway, type GatewayProcess } from "../harness/gateway-process.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * LM Studio's `draft_model` on the four chat and completion routes, in direct mode and through
 * the real gateway, whose routing sends a request with a draft to a node that holds both models.
 * Node "both" holds the target and its agreeing draft; node "other" the target and a stranger.
 */

const TARGET = "spec-tiny-target-f32";
const DRAFT = "spec-tiny-draft-f32";
const STRANGER = "spec-tiny-stranger-f32";

let gateway: GatewayProcess;
let direct: AgentProcess;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  const root = await testModelsDir();
  const [both, other] = [join(root, "both"), join(root, "other")];
  await mkdir(both, { recursive: true });
  await mkdir(other, { recursive: true });
  for (const model of [TINY_SPECULATIVE.target, TINY_SPECULATIVE.draft]) await ensureModel(both, model);
  for (const model of [TINY_SPECULATIVE.target, TINY_SPECULATIVE.stranger]) await ensureModel(other, model);
  gateway = await startGateway();
  const node = { url: gateway.url, token: gateway.nodeToken };
  const started = await Promise.allSettled([
    startAgent({ models: [both] }),
    startAgent({ models: [both], gateway: node, name: "both" }),
    startAgent({ models: [other], gateway: node, name: "other" }),
  ]);
  agents.push(...started.flatMap((outcome) => (outcome.status === "fulfilled" ? [outcome.value] : [])));
  const failed = started.find((outcome) => outcome.status === "rejected");
  if (failed) throw failed.reason;
  direct = agents[0] as AgentProcess;
}, 180_000);
afterAll(async () => {
  await Promise.all(agents.map((agent) => agent.stop()));
  await gateway?.stop();
});

const targets = () => ({
  direct: { url: direct.url as string, key: "unused" },
  gateway: { url: gateway.url, key: gateway.apiKey },
});

const ROUTES = [
  { path: "/api/v0/chat/completions", chat: true, stats: true },
  { path: "/api/v0/completions", chat: false, stats: true },
  { path: "/v1/chat/completions", chat: true, stats: false },
  { path: "/v1/completions", chat: false, stats: false },
] as const;

async function post(target: { url: string; key: string }, path: string, body: Record<string, unknown>) {
  const response = await fetch(`${target.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${target.key}` },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

const bodyFor = (chat: boolean, extra: Record<string, unknown>) => ({
  model: TARGET,
  ...(chat ? { messages: [{ role: "user", content: "Tell me about the weather in the city" }] } : { prompt: "Once upon a time" }),
  temperature: 0,
  max_tokens: 32,
  repeat_penalty: 1,
  ...extra,
});
const textOf = (body: Record<string, any>) => body.choices[0].message?.content ?? body.choices[0].text;

describe.each(["direct", "gateway"] as const)("draft_model (%s)", (name) => {
  test.each(ROUTES)("$path: the greedy answer of the model alone, drafted, with LM Studio's counters in stats", async ({ path, chat, stats }) => {
    const target = targets()[name];
    const plain = await post(target, path, bodyFor(chat, {}));
    const drafted = await post(target, path, bodyFor(chat, { draft_model: DRAFT }));
    expect([plain.status, drafted.status]).toEqual([200, 200]);
    expect(textOf(drafted.body)).toBe(textOf(plain.body));
    if (name === "gateway") expect(drafted.body.gateway?.node).toBe("both");
    if (!stats) return;
    const counts = drafted.body.stats;
    expect(counts.draft_model).toBe(DRAFT);
    expect(counts.accepted_draft_tokens_count).toBeGreaterThan(0);
    expect(counts.total_draft_tokens_count).toBe(counts.accepted_draft_tokens_count + counts.rejected_draft_tokens_count + counts.ignored_draft_tokens_count);
  });

  test("/api/v1/chat (LM Studio's native chat) takes draft_model too", async () => {
    const target = targets()[name];
    const body = { model: TARGET, input: "Hello there", temperature: 0, max_output_tokens: 16, repeat_penalty: 1, store: false };
    const plain = await post(target, "/api/v1/chat", body);
    const drafted = await post(target, "/api/v1/chat", { ...body, draft_model: DRAFT });
    expect([plain.status, drafted.status]).toEqual([200, 200]);
    expect(drafted.body.output).toEqual(plain.body.output);
    const unknown = await post(target, "/api/v1/chat", { ...body, draft_model: "no-such-draft" });
    expect([unknown.status, unknown.body.error?.param, unknown.body.error?.code]).toEqual([404, "draft_model", "model_not_found"]);
  });

  test("the official openai client passes draft_model through", async () => {
    const target = targets()[name];
    const client = new OpenAI({ baseURL: `${target.url}/v1`, apiKey: target.key });
    const params = { model: TARGET, messages: [{ role: "user" as const, content: "Hello there" }], temperature: 0, max_tokens: 16 };
    const plain = await client.chat.completions.create(params);
    const drafted = await client.chat.completions.create({ ...params, draft_model: DRAFT } as typeof params);
    expect(drafted.choices[0]?.message.content).toBe(plain.choices[0]?.message.content);
  });
});

describe("routing a request with a draft through the gateway", () => {
  test("every request with a draft goes to the node that holds both models", async () => {
    for (let attempt = 0; attempt < 4; attempt++) {
      const { status, body } = await post(targets().gateway, "/api/v0/completions", bodyFor(false, { draft_model: DRAFT, max_tokens: 4 }));
      expect(status).toBe(200);
      expect(body.gateway?.node).toBe("both");
    }
  });

  test("when no node holds both, the gateway says so: a 400 naming both models (a 404 for a draft no node holds)", async () => {
    const { status, body } = await post(targets().gateway, "/api/v0/chat/completions", bodyFor(true, { draft_model: `${STRANGER}-nowhere` }));
    expect([status, body.error.param, body.error.code]).toEqual([404, "draft_model", "model_not_found"]);
    const split = await post(targets().gateway, "/api/v0/chat/completions", { ...bodyFor(true, {}), model: DRAFT, draft_model: STRANGER });
    expect([split.status, split.body.error.code]).toEqual([400, "draft_model_not_beside_model"]);
    expect(split.body.error.message).toContain(DRAFT);
    expect(split.body.error.message).toContain(STRANGER);
  });
});
