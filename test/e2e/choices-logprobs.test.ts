import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { AdminClient } from "../../cli/admin-client.ts";
import type { UsageRow } from "../../shared/gateway-admin/admin-schemas.ts";
import { ChatCompletion } from "../../shared/openai-completions/completion-schemas.ts";
import { startApiTargets, TARGETS, type ApiTargets } from "../harness/api-targets.ts";
import { countedCompletionTokens, startAgent } from "../harness/agent-process.ts";
import { connectIdleNode, simulatedModel } from "../harness/idle-node.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * `n` choices and token log probabilities as OpenAI defines them, with the official `openai`
 * client, against an agent in direct mode and through the real gateway with a real agent.
 */

const CHAT = "tiny-chat-f32";
const messages = [{ role: "user" as const, content: "Tell me about the sea." }];

let api: ApiTargets;
beforeAll(async () => {
  api = await startApiTargets(["node-a"]);
}, 180_000);
afterAll(() => api?.stop());

interface Scored {
  token: string;
  logprob: number;
  top: Array<{ token: string; logprob: number }>;
}

/** What holds for any token's numbers: log probabilities, best first, the chosen one among them when they cover it. */
function expectSound(tokens: Scored[], top: number): void {
  expect(tokens.length).toBeGreaterThan(0);
  for (const { token, logprob, top: alternatives } of tokens) {
    expect(logprob).toBeLessThanOrEqual(0);
    expect(alternatives.length).toBeLessThanOrEqual(top);
    const values = alternatives.map((alternative) => alternative.logprob);
    expect(values).toEqual([...values].sort((a, b) => b - a));
    expect(values.reduce((sum, value) => sum + Math.exp(value), 0)).toBeLessThanOrEqual(1 + 1e-5);
    // The chosen token is among the alternatives when it is at least as likely as the last of them.
    const last = values.at(-1);
    if (last !== undefined && logprob >= last + 1e-6) expect(alternatives.map((alternative) => alternative.token)).toContain(token);
  }
}

const chatScored = (content: OpenAI.Chat.Completions.ChatCompletionTokenLogprob[]): Scored[] =>
  content.map((entry) => ({ token: entry.token, logprob: entry.logprob, top: entry.top_logprobs }));

describe.each(TARGETS)("n and logprobs (%s)", (name) => {
  const client = () => new OpenAI({ baseURL: `${api.target(name).url}/v1`, apiKey: api.target(name).key, maxRetries: 0, timeout: 30_000 });

  test("chat logprobs: each token with its log probability and top_logprobs alternatives; streamed gives the same", async () => {
    const params = { model: CHAT, messages, max_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 5 } as const;
    const completion = await client().chat.completions.create(params);
    const choice = completion.choices[0];
    const content = choice?.logprobs?.content ?? [];
    expectSound(chatScored(content), 5);
    expect(content).toHaveLength(12);
    expect(completion.usage?.completion_tokens).toBe(12);
    // Greedy: the chosen token is the most likely one.
    for (const entry of content) expect(entry.top_logprobs[0]?.token).toBe(entry.token);
    expect(content.map((entry) => entry.token).join("")).toBe(choice?.message.content);
    for (const entry of content) expect(entry.bytes).toEqual([...new TextEncoder().encode(entry.token)]);
    // The same text as the same request without logprobs: one sampler, whichever loop runs it.
    const plain = await client().chat.completions.create({ model: CHAT, messages, max_tokens: 12, temperature: 0 });
    expect(choice?.message.content).toBe(plain.choices[0]?.message.content);

    const streamed: OpenAI.Chat.Completions.ChatCompletionTokenLogprob[] = [];
    let text = "";
    for await (const chunk of await client().chat.completions.create({ ...params, stream: true })) {
      for (const part of chunk.choices) {
        text += part.delta.content ?? "";
        streamed.push(...(part.logprobs?.content ?? []));
      }
    }
    expect(text).toBe(choice?.message.content);
    expect(streamed.map((entry) => entry.token)).toEqual(content.map((entry) => entry.token));
    streamed.forEach((entry, index) => expect(entry.logprob).toBeCloseTo(content[index]?.logprob ?? 0, 3));
  });

  test("chat logprobs without top_logprobs give the chosen tokens only; without logprobs, none", async () => {
    const completion = await client().chat.completions.create({ model: CHAT, messages, max_tokens: 4, temperature: 1, seed: 3, logprobs: true });
    const content = completion.choices[0]?.logprobs?.content ?? [];
    expectSound(chatScored(content), 0);
    expect(content.every((entry) => entry.top_logprobs.length === 0)).toBe(true);
    const plain = await client().chat.completions.create({ model: CHAT, messages, max_tokens: 4 });
    expect(plain.choices[0]?.logprobs).toBeNull();
  });

  test("completions logprobs: N gives tokens, token_logprobs, top_logprobs and text_offset, streamed too", async () => {
    const params = { model: CHAT, prompt: "The sea is", max_tokens: 8, temperature: 0, logprobs: 3 } as const;
    const completion = await client().completions.create(params);
    const logprobs = completion.choices[0]?.logprobs;
    const tokens = logprobs?.tokens ?? [];
    expect(tokens).toHaveLength(8);
    expect(tokens.join("")).toBe(completion.choices[0]?.text);
    expect(logprobs?.text_offset).toEqual(tokens.map((_, index) => tokens.slice(0, index).join("").length));
    expectSound(
      tokens.map((token, index) => ({
        token,
        logprob: logprobs?.token_logprobs?.[index] ?? 1,
        top: Object.entries(logprobs?.top_logprobs?.[index] ?? {}).map(([candidate, logprob]) => ({ token: candidate, logprob })),
      })),
      3,
    );

    const streamed: string[] = [];
    const offsets: number[] = [];
    for await (const chunk of await client().completions.create({ ...params, stream: true })) {
      streamed.push(...(chunk.choices[0]?.logprobs?.tokens ?? []));
      offsets.push(...(chunk.choices[0]?.logprobs?.text_offset ?? []));
    }
    expect(streamed).toEqual(tokens);
    expect(offsets).toEqual(logprobs?.text_offset);
  });

  test("n = 3 gives three different choices with indexes 0..2, usage summed with the prompt counted once", async () => {
    const params = { model: CHAT, messages, max_tokens: 6, temperature: 1.5, seed: 7, n: 3 } as const;
    const completion = await client().chat.completions.create(params);
    expect(completion.choices.map((choice) => choice.index)).toEqual([0, 1, 2]);
    const texts = completion.choices.map((choice) => choice.message.content);
    expect(new Set(texts).size).toBeGreaterThan(1);
    const single = await client().chat.completions.create({ ...params, n: 1 });
    expect(completion.usage?.prompt_tokens).toBe(single.usage?.prompt_tokens);
    // Each choice ends at max_tokens or earlier; the total is theirs together.
    const lengths = completion.choices.filter((choice) => choice.finish_reason === "length").length;
    expect(completion.usage?.completion_tokens).toBeGreaterThanOrEqual(lengths * 6);
    expect(completion.usage?.completion_tokens).toBeLessThanOrEqual(18);
    expect(completion.usage?.total_tokens).toBe((completion.usage?.prompt_tokens ?? 0) + (completion.usage?.completion_tokens ?? 0));

    const streamed = ["", "", ""];
    const finished: number[] = [];
    for await (const chunk of await client().chat.completions.create({ ...params, stream: true })) {
      for (const part of chunk.choices) {
        streamed[part.index] += part.delta.content ?? "";
        if (part.finish_reason) finished.push(part.index);
      }
    }
    expect(finished.sort()).toEqual([0, 1, 2]);
    expect(streamed.every((text) => text.length > 0)).toBe(true);
  });

  test("n with logprobs on completions: each choice its own text and numbers", async () => {
    const completion = await client().completions.create({ model: CHAT, prompt: "The sea is", max_tokens: 5, temperature: 1, seed: 1, n: 2, logprobs: 2 });
    expect(completion.choices.map((choice) => choice.index)).toEqual([0, 1]);
    for (const choice of completion.choices) expect(choice.logprobs?.tokens?.join("")).toBe(choice.text);
  });

  test("LM Studio's /api/v0 gives the same choices and logprobs, with its stats", async () => {
    const response = await fetch(`${api.target(name).url}/api/v0/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${api.target(name).key}` },
      body: JSON.stringify({ model: CHAT, messages, max_tokens: 4, temperature: 1, n: 2, logprobs: true, top_logprobs: 1 }),
    });
    expect(response.status).toBe(200);
    const body = ChatCompletion.parse(await response.json());
    expect(body.choices.map((choice) => choice.index)).toEqual([0, 1]);
    for (const choice of body.choices) expect(choice.logprobs?.content.map((entry) => entry.token).join("")).toBe(choice.message.content);
    expect(body.stats?.tokens_per_second).toBeGreaterThanOrEqual(0);
  });

  test("what cannot be honoured is a 400 naming the field", async () => {
    const refused = async (body: Record<string, unknown>) => {
      const error = await client()
        .chat.completions.create({ model: CHAT, messages, max_tokens: 4, ...body } as never)
        .then(() => undefined, (caught: unknown) => caught);
      expect(error, JSON.stringify(body)).toBeInstanceOf(OpenAI.BadRequestError);
      return (error as InstanceType<typeof OpenAI.BadRequestError>).param;
    };
    expect(await refused({ n: 9 })).toBe("n");
    expect(await refused({ top_logprobs: 21, logprobs: true })).toBe("top_logprobs");
    expect(await refused({ top_logprobs: 2 })).toBe("top_logprobs");
    const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: {} } } }];
    expect(await refused({ logprobs: true, tools })).toBe("logprobs");
    expect(await refused({ logprobs: true, response_format: { type: "json_object" } })).toBe("logprobs");
  });
});

test("through the gateway, n and logprobs are refused with a 400 naming the field when only agents from before them hold the model", async () => {
  // An idle node says hello as an agent from before these features did: no generation_features.
  const old = await connectIdleNode({ url: api.gateway.url, token: api.gateway.nodeToken, name: "old-agent", models: [simulatedModel("old-model", true)] });
  try {
    const client = new OpenAI({ baseURL: `${api.gateway.url}/v1`, apiKey: api.gateway.apiKey, maxRetries: 0, timeout: 30_000 });
    const refused = (body: Record<string, unknown>) =>
      client.chat.completions.create({ model: "old-model", messages, max_tokens: 4, ...body } as never).then(
        () => undefined,
        (error: unknown) => error,
      );
    const many = await refused({ n: 2 });
    expect(many).toBeInstanceOf(OpenAI.BadRequestError);
    expect((many as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("n");
    const scored = await refused({ logprobs: true });
    expect((scored as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("logprobs");
  } finally {
    await old.close();
  }
});

test("a client that leaves a stream of several choices with logprobs stops every choice and is billed for what they made", async () => {
  const admin = new AdminClient(api.gateway.url, api.gateway.adminToken);
  const { key, record } = await admin.createKey({ name: "leaver" });
  const client = new OpenAI({ baseURL: `${api.gateway.url}/v1`, apiKey: key, maxRetries: 0, timeout: 30_000 });
  // Token "a" at +100 keeps every choice writing until max_tokens.
  const request = { model: CHAT, messages, max_tokens: 1_500, n: 2, logprobs: true, top_logprobs: 3, logit_bias: { "395": 100 }, stream: true } as const;
  const node = api.nodes.get("node-a")!;
  const countedBefore = await countedCompletionTokens(node, CHAT);
  for await (const chunk of await client.chat.completions.create(request)) {
    expect(chunk.choices[0]?.finish_reason ?? null).toBeNull();
    break; // leaving the loop aborts the request
  }
  const rows: UsageRow[] = await vi.waitFor(
    async () => {
      const found = await admin.usage({ key: record.id });
      expect(found).not.toEqual([]);
      return found;
    },
    { timeout: 20_000, interval: 50 },
  );
  expect(rows[0]?.completion_tokens).toBeGreaterThan(0);
  expect(rows[0]?.completion_tokens).toBeLessThan(2 * 1_500);
  // Billed exactly what the node's engine counted over both choices.
  await vi.waitFor(async () => expect((await countedCompletionTokens(node, CHAT)) - countedBefore).toBe(rows[0]?.completion_tokens), { timeout: 20_000, interval: 50 });
  await vi.waitFor(async () => expect((await admin.listNodes()).every((entry) => entry.in_flight === 0)).toBe(true), { timeout: 20_000, interval: 50 });
});

test("more choices than free slots run one after another instead of overflowing the model's queue", async () => {
  const agent = await startAgent({ models: [await testModelsDir()], extraArgs: ["--slots", "1", "--max-queue", "0"] });
  try {
    const client = new OpenAI({ baseURL: `${agent.url}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
    const completion = await client.chat.completions.create({ model: CHAT, messages, max_tokens: 5, temperature: 1, n: 3, logprobs: true });
    expect(completion.choices.map((choice) => choice.index)).toEqual([0, 1, 2]);
    for (const choice of completion.choices) expect(choice.logprobs?.content?.length).toBeGreaterThan(0);
  } finally {
    await agent.stop();
  }
});
