import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { AdminClient } from "../../cli/admin-client.ts";
import { AnthropicErrorBody, Message } from "../../shared/anthropic/schemas.ts";
import type { UsageRow } from "../../shared/gateway-admin/admin-schemas.ts";
import { startApiTargets, TARGETS, type ApiTargets } from "../harness/api-targets.ts";

/**
 * Anthropic's Messages API with the official `@anthropic-ai/sdk`, unchanged, against an agent in
 * direct mode and against the real gateway with a real agent behind it.
 */

const CHAT = "tiny-chat-f32";

let api: ApiTargets;
beforeAll(async () => {
  api = await startApiTargets(["node-a"]);
}, 180_000);
afterAll(() => api?.stop());

// Bounded: a random model never closes an unbounded string by itself.
const weather = {
  name: "get_weather",
  description: "Weather for a city",
  input_schema: { type: "object" as const, properties: { city: { type: "string", maxLength: 16 } }, required: ["city"] },
};
/** Greedy sampling, for answers that repeat. The SDK's types dropped `temperature`; the API and Claude Code still send it. */
const GREEDY = { temperature: 0 };
/** Anthropic's `input_tokens` leaves out cache hits; the whole prompt is both. */
const promptTokens = (usage: Anthropic.Usage) => usage.input_tokens + (usage.cache_read_input_tokens ?? 0);
const question = [{ role: "user" as const, content: "Weather in Paris?" }];

describe.each(TARGETS)("Anthropic Messages (%s)", (name) => {
  const target = () => api.target(name);
  const client = (options: ConstructorParameters<typeof Anthropic>[0] = {}) =>
    new Anthropic({ baseURL: target().url, apiKey: target().key, maxRetries: 0, timeout: 30_000, ...options });

  test("create answers a Message with usage and stats; streaming gives the same text through the SDK's events", async () => {
    const params = { model: CHAT, max_tokens: 12, ...GREEDY, messages: [{ role: "user" as const, content: "Tell me about the sea." }] };
    const message = await client().messages.create(params);
    Message.parse(message);
    expect(message.id).toMatch(/^msg_/);
    expect(message.stop_reason).toBe("max_tokens");
    expect(message.usage.output_tokens).toBe(12);
    expect(message.usage.input_tokens).toBeGreaterThan(0);
    const text = message.content[0]?.type === "text" ? message.content[0].text : undefined;
    expect(text?.length).toBeGreaterThan(0);
    if (name === "gateway") expect((message as Message).gateway?.node).toBe("node-a");

    const stream = client().messages.stream(params);
    let streamed = "";
    let started: Anthropic.Usage | undefined;
    stream.on("text", (delta) => (streamed += delta));
    stream.on("streamEvent", (event) => {
      // Copied: the SDK goes on to update this object from message_delta.
      if (event.type === "message_start") started = { ...event.message.usage };
    });
    const final = await stream.finalMessage();
    expect(streamed).toBe(text);
    // message_start already has the prompt's size, for clients that read only it.
    expect(started?.input_tokens).toBe(promptTokens(final.usage));
    expect(final.stop_reason).toBe("max_tokens");
    expect(final.usage.output_tokens).toBe(12);
    expect(promptTokens(final.usage)).toBe(promptTokens(message.usage));
    // The same prompt again: the slot still holds it.
    expect(final.usage.cache_read_input_tokens).toBeGreaterThan(0);
  });

  test("stop_sequences end the text before the one that matched, and stop_sequence names it", async () => {
    const params = { model: CHAT, max_tokens: 24, ...GREEDY, messages: [{ role: "user" as const, content: "Tell me about the sea." }] };
    const full = await client().messages.create(params);
    const text = full.content[0]?.type === "text" ? full.content[0].text : "";
    const cut = text.slice(6, 9);
    const stopped = await client().messages.create({ ...params, stop_sequences: ["never-in-the-text", cut] });
    expect(stopped.stop_reason).toBe("stop_sequence");
    expect(stopped.stop_sequence).toBe(cut);
    expect(stopped.content[0]?.type === "text" ? stopped.content[0].text : undefined).toBe(text.slice(0, text.indexOf(cut)));
    const streamed = await client().messages.stream({ ...params, stop_sequences: ["never-in-the-text", cut] }).finalMessage();
    expect(streamed.stop_sequence).toBe(cut);
  });

  test("a tool round trip over two turns: tool_use with parsed input, then the tool_result is read", async () => {
    const first = await client().messages.create({
      model: CHAT,
      max_tokens: 120,
      ...GREEDY,
      tools: [weather],
      tool_choice: { type: "tool", name: "get_weather" },
      messages: question,
    });
    expect(first.stop_reason).toBe("tool_use");
    const call = first.content.find((block) => block.type === "tool_use");
    expect(call).toMatchObject({ name: "get_weather", input: { city: expect.any(String) } });

    // Streamed, the SDK assembles the call's input from input_json_delta.
    const streamed = await client()
      .messages.stream({ model: CHAT, max_tokens: 120, ...GREEDY, tools: [weather], tool_choice: { type: "any" }, messages: question })
      .finalMessage();
    expect(streamed.stop_reason).toBe("tool_use");
    expect(streamed.content.find((block) => block.type === "tool_use")).toMatchObject({ name: "get_weather", input: call?.type === "tool_use" ? call.input : {} });

    const second = await client().messages.create({
      model: CHAT,
      max_tokens: 8,
      ...GREEDY,
      tools: [weather],
      messages: [
        ...question,
        { role: "assistant", content: first.content },
        { role: "user", content: [{ type: "tool_result", tool_use_id: call?.type === "tool_use" ? call.id : "", content: "Sunny, 21 °C" }] },
      ],
    });
    expect(second.content[0]?.type).toBe("text");
    // The tool result is part of the prompt the model read.
    expect(promptTokens(second.usage)).toBeGreaterThan(promptTokens(first.usage));

    const unanswered = await client()
      .messages.create({ model: CHAT, max_tokens: 8, tools: [weather], messages: [...question, { role: "assistant", content: first.content }, { role: "user", content: "and?" }] })
      .catch((error: unknown) => error);
    expect(unanswered).toBeInstanceOf(Anthropic.BadRequestError);
    expect((unanswered as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
  });

  test("count_tokens counts exactly what create then reads (template and tools included), and refuses an unknown model", async () => {
    const short = await client().messages.countTokens({ model: CHAT, messages: [{ role: "user", content: "Hi" }] });
    const prompt = {
      model: CHAT,
      system: "You are a helpful assistant who answers in great detail.",
      tools: [weather],
      messages: [{ role: "user" as const, content: "Hi ".repeat(200) }],
    };
    const long = await client().messages.countTokens(prompt);
    expect(short.input_tokens).toBeGreaterThan(0);
    expect(long.input_tokens).toBeGreaterThan(short.input_tokens + 150);
    // The whole prompt (promptTokens): a prefix read from the slot's cache is in the count too.
    const shortCreated = await client().messages.create({ model: CHAT, max_tokens: 1, messages: [{ role: "user", content: "Hi" }] });
    expect(promptTokens(shortCreated.usage)).toBe(short.input_tokens);
    expect(promptTokens((await client().messages.create({ ...prompt, max_tokens: 1 })).usage)).toBe(long.input_tokens);
    // A forced call runs its prompt another way (LlamaCompletion, its own BOS); counted the same way.
    const forced = { ...prompt, tool_choice: { type: "tool" as const, name: "get_weather" } };
    expect(promptTokens((await client().messages.create({ ...forced, max_tokens: 1 })).usage)).toBe((await client().messages.countTokens(forced)).input_tokens);
    const failure = await client()
      .messages.countTokens({ model: "no-such-model", messages: [{ role: "user", content: "Hi" }] })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(Anthropic.NotFoundError);
  });

  test("errors come as the SDK's classes with Anthropic's error body", async () => {
    const unknown = await client()
      .messages.create({ model: "no-such-model", max_tokens: 8, messages: [{ role: "user", content: "Hi" }] })
      .catch((error: unknown) => error);
    expect(unknown).toBeInstanceOf(Anthropic.NotFoundError);
    const body = AnthropicErrorBody.parse((unknown as InstanceType<typeof Anthropic.APIError>).error);
    expect(body.error.type).toBe("not_found_error");
    expect(body.error.message).toContain("no-such-model");

    const image = await client()
      .messages.create({
        model: CHAT,
        max_tokens: 8,
        messages: [{ role: "user", content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } }] }],
      })
      .catch((error: unknown) => error);
    expect(image).toBeInstanceOf(Anthropic.BadRequestError);
    expect((image as InstanceType<typeof Anthropic.APIError>).message).toContain("read text only");

    // Claude Code compacts the conversation when it reads Anthropic's own wording for this.
    const overflow = await client()
      .messages.create({ model: CHAT, max_tokens: 8, messages: [{ role: "user", content: "word ".repeat(3_000) }] })
      .catch((error: unknown) => error);
    expect(overflow).toBeInstanceOf(Anthropic.BadRequestError);
    expect((overflow as InstanceType<typeof Anthropic.APIError>).message).toMatch(/prompt is too long: \d+ tokens > 2048 maximum/);

    if (name === "gateway") {
      const badKey = await client({ apiKey: "sk-wrong" })
        .messages.create({ model: CHAT, max_tokens: 8, messages: [{ role: "user", content: "Hi" }] })
        .catch((error: unknown) => error);
      expect(badKey).toBeInstanceOf(Anthropic.AuthenticationError);
      expect(AnthropicErrorBody.parse((badKey as InstanceType<typeof Anthropic.APIError>).error).error.type).toBe("authentication_error");
      // ANTHROPIC_AUTH_TOKEN: the key as a Bearer token instead of x-api-key.
      const bearer = await client({ apiKey: null, authToken: api.gateway.apiKey }).messages.create({ model: CHAT, max_tokens: 4, messages: [{ role: "user", content: "Hi" }] });
      // Random weights may end the answer early: what matters is that the key was taken.
      expect(bearer.type).toBe("message");
      expect(bearer.usage.output_tokens).toBeGreaterThan(0);
      expect(bearer.usage.output_tokens).toBeLessThanOrEqual(4);
    }
  });

  test("a Claude Code conversation's next turn reads the previous turn's prompt from the cache, although its billing line changed", async () => {
    const system = (cch: string) => [
      { type: "text" as const, text: `x-anthropic-billing-header: cc_version=2.1.0; cc_entrypoint=cli; cch=${cch};` },
      { type: "text" as const, text: "You are Claude Code, Anthropic's official CLI for Claude.", cache_control: { type: "ephemeral" as const } },
    ];
    const tools = [{ ...weather, cache_control: { type: "ephemeral" as const } }];
    const opening = [{ role: "user" as const, content: "List the files in this folder, please." }];
    const first = await client().messages.stream({ model: CHAT, max_tokens: 8, ...GREEDY, system: system("3f9a1"), tools, messages: opening }).finalMessage();
    const firstPrompt = promptTokens(first.usage);
    const second = await client()
      .messages.stream({
        model: CHAT,
        max_tokens: 8,
        ...GREEDY,
        system: system("b07c2"),
        tools,
        messages: [...opening, { role: "assistant", content: first.content }, { role: "user", content: "Go on." }],
      })
      .finalMessage();
    // All of the first turn's prompt but its last few template tokens is the second's prefix.
    expect(second.usage.cache_read_input_tokens).toBeGreaterThan(firstPrompt - 8);
    expect(second.usage.input_tokens).toBeGreaterThan(0);
  });

  test("a Claude Code-shaped request (?beta=true, billing line, cache_control, many tools, thinking, extras) streams Anthropic's events", async () => {
    // Several tools, small ones: the test model's context is 2,048 tokens of a small vocabulary.
    const tools = Array.from({ length: 5 }, (_, index) => ({
      name: index === 4 ? "mcp__files__read" : `Tool${index}`,
      description: `Tool ${index}.`,
      input_schema: { type: "object", properties: { path: { type: "string" } }, required: ["path"] },
      ...(index === 4 ? { cache_control: { type: "ephemeral" } } : {}),
    }));
    const response = await fetch(`${target().url}/v1/messages?beta=true`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-api-key": target().key,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
        "user-agent": "claude-cli/2.1.0 (external, cli)",
      },
      body: JSON.stringify({
        model: CHAT,
        max_tokens: 32000,
        temperature: 1,
        stream: true,
        system: [
          { type: "text", text: "x-anthropic-billing-header: cc_version=2.1.0; cc_entrypoint=cli; cch=3f9a1;" },
          { type: "text", text: "You are Claude Code, Anthropic's official CLI for Claude.", cache_control: { type: "ephemeral" } },
          { type: "text", text: "Answer briefly.", cache_control: { type: "ephemeral", ttl: "1h" } },
        ],
        tools,
        metadata: { user_id: JSON.stringify({ device_id: "d", session_id: "s" }) },
        thinking: { type: "enabled", budget_tokens: 1024 },
        context_management: { edits: [{ type: "clear_thinking_20251015" }] },
        messages: [
          { role: "user", content: [{ type: "text", text: "List the files.", cache_control: { type: "ephemeral" } }] },
          { role: "assistant", content: [{ type: "thinking", thinking: "Let me look.", signature: "abc" }, { type: "text", text: "Looking." }] },
          { role: "user", content: "Go on." },
        ],
      }),
    });
    expect(response.status, response.status === 200 ? "" : await response.text()).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/event-stream");
    const blocks = (await response.text()).split("\n\n").filter((block) => block !== "");
    const names = blocks.map((block) => /^event: (\S+)\ndata: /.exec(block)?.[1]);
    expect(names.slice(0, 2)).toEqual(["message_start", "ping"]);
    expect(names.slice(-2)).toEqual(["message_delta", "message_stop"]);
    expect(names.every((event) => event !== undefined)).toBe(true);
    const delta = JSON.parse(blocks.at(-2)?.split("data: ")[1] ?? "{}") as { delta: { stop_reason: string }; usage: { input_tokens: number } };
    expect(["end_turn", "max_tokens", "tool_use"]).toContain(delta.delta.stop_reason);
    expect(delta.usage.input_tokens).toBeGreaterThan(200);
  });
});

describe("the gateway's keys, scopes and usage on the Anthropic and Responses families", () => {
  test("a key scoped to other models is refused in each family's shape; what it may use is counted under it", async () => {
    const admin = new AdminClient(api.gateway.url, api.gateway.adminToken);
    const { key, record } = await admin.createKey({ name: "claude-code", models: [CHAT] });
    const anthropic = new Anthropic({ baseURL: api.gateway.url, apiKey: key, maxRetries: 0 });

    const outOfScope = await anthropic.messages
      .create({ model: "tiny-chat-q8_0", max_tokens: 4, messages: [{ role: "user", content: "Hi" }] })
      .catch((error: unknown) => error);
    expect(outOfScope).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect(AnthropicErrorBody.parse((outOfScope as InstanceType<typeof Anthropic.APIError>).error).error.type).toBe("permission_error");
    // Counting goes to a node holding the model, so it is scoped the same way.
    const countOutOfScope = await anthropic.messages.countTokens({ model: "tiny-chat-q8_0", messages: [{ role: "user", content: "Hi" }] }).catch((error: unknown) => error);
    expect(countOutOfScope).toBeInstanceOf(Anthropic.PermissionDeniedError);

    const message = await anthropic.messages.create({ model: CHAT, max_tokens: 4, messages: [{ role: "user", content: "Hi" }] });
    const openai = new OpenAI({ baseURL: `${api.gateway.url}/v1`, apiKey: key, maxRetries: 0 });
    const response = await openai.responses.create({ model: CHAT, input: "Hi", max_output_tokens: 4 });

    let rows: UsageRow[] = [];
    for (let attempt = 0; attempt < 100 && rows[0]?.requests !== 2; attempt++) {
      rows = await admin.usage({ key: record.id });
      if (rows[0]?.requests !== 2) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ model: CHAT, requests: 2, completion_tokens: 8 });
    expect(rows[0]?.prompt_tokens).toBe(message.usage.input_tokens + (message.usage.cache_read_input_tokens ?? 0) + (response.usage?.input_tokens ?? 0));
  });
});
