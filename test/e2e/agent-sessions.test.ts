import Anthropic from "@anthropic-ai/sdk";
import { readdirSync, readFileSync } from "node:fs";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ensureModel, LONG_CHAT_MODEL } from "../../node-agent/demo-models/demo-models.ts";
import { Message } from "../../shared/anthropic/schemas.ts";
import { ResponseObject } from "../../shared/openai-responses/schemas.ts";
import { startApiTargets, TARGETS, type ApiTargets } from "../harness/api-targets.ts";
import { testModelsDir } from "../harness/test-models.ts";

/**
 * Whole sessions of today's Claude Code and Codex, replayed turn by turn: the requests they really
 * sent (captured with scripts/capture-agent-sessions.ts: a task of three turns, reading a file and
 * listing a folder with their own tools, then answering) go, through the official SDKs, to an agent
 * in direct mode and to the gateway, served by the long-context demo model they would use under
 * `npm start`. Only the answer's length is changed (Claude Code asks for up to 32,000 tokens).
 * Then a call the model itself writes (forced, so it comes every time) goes back out through the
 * SDKs as a tool call, and the turn carrying its result is answered.
 */

const FIXTURES = new URL("../fixtures/agent-sessions/", import.meta.url);
const MODEL = "long-chat-q8_0";
/** Enough to see an answer in the family's shape; the random model's text means nothing. */
const ANSWER_TOKENS = 8;

interface Captured {
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

function session(agent: string): Captured[] {
  const dir = new URL(`${agent}/`, FIXTURES);
  return readdirSync(dir)
    .sort()
    .map((file) => JSON.parse(readFileSync(new URL(file, dir), "utf8")) as Captured);
}

const claudeCode = session("claude-code");
const codex = session("codex");

/** A Responses stream read to its end, as Codex reads it: the event types and the final response. */
async function streamed(client: OpenAI, params: OpenAI.Responses.ResponseCreateParamsStreaming): Promise<{ events: string[]; final: OpenAI.Responses.Response | undefined }> {
  const events: string[] = [];
  let final: OpenAI.Responses.Response | undefined;
  for await (const event of await client.responses.create(params)) {
    events.push(event.type);
    if (event.type === "response.completed" || event.type === "response.incomplete") final = event.response;
  }
  return { events, final };
}

let api: ApiTargets;
beforeAll(async () => {
  await ensureModel(await testModelsDir(), LONG_CHAT_MODEL);
  api = await startApiTargets(["node-a"]);
}, 180_000);
afterAll(() => api?.stop());

test("the captured sessions are what the replays claim: several turns, tool calls and their results, the fields of issue #20", () => {
  expect(claudeCode.length).toBeGreaterThanOrEqual(3);
  const last = claudeCode.at(-1)!.body as unknown as Anthropic.MessageCreateParams & Record<string, unknown>;
  const blocks = last.messages.flatMap((message) => (typeof message.content === "string" ? [] : message.content.map((block) => block.type)));
  expect(blocks).toEqual(expect.arrayContaining(["tool_use", "tool_result"]));
  expect(last.messages.map((message) => message.role)).toContain("system");
  expect(last).toMatchObject({ thinking: { type: "adaptive" }, output_config: { effort: "high" }, context_management: { edits: [expect.anything()] } });
  expect(last.tools?.some((tool) => "defer_loading" in tool && tool.defer_loading)).toBe(true);
  expect(claudeCode[0]!.headers["anthropic-beta"]).toContain("context-management-");

  expect(codex.length).toBeGreaterThanOrEqual(3);
  const turn = codex.at(-1)!.body as Record<string, any>;
  expect(turn.input.map((item: { type?: string }) => item.type)).toEqual(expect.arrayContaining(["function_call", "function_call_output"]));
  expect(turn.input.map((item: { role?: string }) => item.role)).toContain("developer");
  expect(turn).toMatchObject({ store: false, include: ["reasoning.encrypted_content"], reasoning: { summary: "auto" }, parallel_tool_calls: true });
  expect(turn.tools.map((tool: { type: string }) => tool.type)).toEqual(expect.arrayContaining(["function", "namespace", "web_search"]));
});

describe.each(TARGETS)("agent sessions replayed (%s)", (name) => {
  test("Claude Code: every turn answers 200 as an Anthropic Message stream; later turns read the earlier ones from the slot's cache", async () => {
    const client = new Anthropic({ baseURL: api.target(name).url, apiKey: api.target(name).key, maxRetries: 0, timeout: 240_000 });
    const prompts: number[] = [];
    for (const [turn, captured] of claudeCode.entries()) {
      const params = { ...captured.body, model: MODEL, max_tokens: ANSWER_TOKENS, stream: true } as unknown as Anthropic.MessageCreateParamsStreaming;
      const message = await client.messages.stream(params, { headers: { "anthropic-beta": captured.headers["anthropic-beta"] } }).finalMessage();
      Message.parse(message);
      expect(message.content.every((block) => block.type === "text" || block.type === "tool_use")).toBe(true);
      // A model that does not think answers without thinking blocks, whatever `thinking` asked.
      expect(message.content.some((block) => (block.type as string) === "thinking")).toBe(false);
      expect(["end_turn", "max_tokens", "tool_use"]).toContain(message.stop_reason);
      const prompt = message.usage.input_tokens + (message.usage.cache_read_input_tokens ?? 0);
      // The system prompt, Claude Code's tools and the conversation are all in it.
      expect(prompt).toBeGreaterThan(10_000);
      if (turn > 0) expect(message.usage.cache_read_input_tokens).toBeGreaterThan(prompts.at(-1)! / 2);
      prompts.push(prompt);
    }
    // Each turn adds the tool call and its result to the one before.
    expect(prompts).toEqual([...prompts].sort((a, b) => a - b));
  }, 600_000);

  test("Codex: every turn answers 200 as a Responses event stream ending in response.completed", async () => {
    const client = new OpenAI({ baseURL: `${api.target(name).url}/v1`, apiKey: api.target(name).key, maxRetries: 0, timeout: 240_000 });
    const prompts: number[] = [];
    for (const captured of codex) {
      const params = { ...captured.body, model: MODEL, max_output_tokens: ANSWER_TOKENS, stream: true } as unknown as OpenAI.Responses.ResponseCreateParamsStreaming;
      const { events, final } = await streamed(client, params);
      expect(events[0]).toBe("response.created");
      // Codex keeps nothing on the server (store: false) and says so.
      expect(ResponseObject.parse(final).store).toBe(false);
      expect(final!.output.every((item) => item.type === "message" || item.type === "function_call")).toBe(true);
      prompts.push(final!.usage!.input_tokens);
    }
    expect(prompts[0]).toBeGreaterThan(10_000);
    expect(prompts).toEqual([...prompts].sort((a, b) => a - b));
  }, 600_000);

  test("Claude Code: a forced tool call comes back as a tool_use block, and the tool_result turn after it answers 200", async () => {
    const client = new Anthropic({ baseURL: api.target(name).url, apiKey: api.target(name).key, maxRetries: 0, timeout: 240_000 });
    const captured = claudeCode[0]!;
    const body = captured.body as unknown as Anthropic.MessageCreateParamsStreaming;
    const options = { headers: { "anthropic-beta": captured.headers["anthropic-beta"] } };
    // The random model would write a string forever (a closing quote is one token among tens of
    // thousands), and the grammar of a forced call writes every property: Read, forced, takes a
    // path of bounded length. `thinking` is off because Anthropic refuses it with a forced tool.
    const boundedRead = { type: "object" as const, properties: { file_path: { type: "string", maxLength: 12 } }, required: ["file_path"] };
    const tools = body.tools!.map((tool) => ("input_schema" in tool && tool.name === "Read" ? { ...tool, input_schema: boundedRead } : tool));
    const forced = await client.messages
      .stream({ ...body, model: MODEL, max_tokens: 200, stream: true, tools, thinking: { type: "disabled" }, tool_choice: { type: "tool", name: "Read" } }, options)
      .finalMessage();
    Message.parse(forced);
    expect(forced.stop_reason).toBe("tool_use");
    // The SDK put the call together from the stream's input_json_delta.
    const call = forced.content.find((block) => block.type === "tool_use");
    expect(call).toMatchObject({ type: "tool_use", name: "Read", input: { file_path: expect.any(String) } });

    const answer = (result: string, maxTokens: number) =>
      client.messages
        .stream(
          {
            ...body,
            model: MODEL,
            max_tokens: maxTokens,
            stream: true,
            messages: [
              ...body.messages,
              { role: "assistant", content: forced.content },
              { role: "user", content: [{ type: "tool_result", tool_use_id: call!.type === "tool_use" ? call!.id : "", content: result }] },
            ],
          },
          options,
        )
        .finalMessage();
    const answered = await answer("hello from notes.txt", ANSWER_TOKENS);
    Message.parse(answered);
    expect(["end_turn", "max_tokens", "tool_use"]).toContain(answered.stop_reason);
    // The call and its result are in the prompt the model read.
    const promptOf = (usage: Anthropic.Usage) => usage.input_tokens + (usage.cache_read_input_tokens ?? 0);
    expect(promptOf(answered.usage)).toBeGreaterThan(promptOf(forced.usage));
    // The result's own text, not only the call, reaches the prompt: a longer result reads longer.
    const longer = await answer(`hello from notes.txt\n${"another line of the file\n".repeat(40)}`, 1);
    expect(promptOf(longer.usage)).toBeGreaterThan(promptOf(answered.usage));
  }, 600_000);

  test("Codex: a forced tool call comes back as a function_call item, and the function_call_output turn after it answers 200", async () => {
    const client = new OpenAI({ baseURL: `${api.target(name).url}/v1`, apiKey: api.target(name).key, maxRetries: 0, timeout: 240_000 });
    const body = codex[0]!.body as unknown as OpenAI.Responses.ResponseCreateParamsStreaming & { input: OpenAI.Responses.ResponseInputItem[] };
    // get_goal, one of Codex's own tools, takes no arguments: the random model can finish its call
    // (it would write a string such as exec_command's `cmd` forever).
    const { events, final: forced } = await streamed(client, { ...body, model: MODEL, max_output_tokens: 200, stream: true, tool_choice: { type: "function", name: "get_goal" } });
    expect(events).toContain("response.function_call_arguments.done");
    ResponseObject.parse(forced);
    const call = forced!.output.find((item) => item.type === "function_call");
    expect(call).toMatchObject({ type: "function_call", name: "get_goal", arguments: "{}", call_id: expect.any(String) });

    const answer = async (output: string, maxTokens: number) =>
      (
        await streamed(client, {
          ...body,
          model: MODEL,
          max_output_tokens: maxTokens,
          stream: true,
          input: [...body.input, call!, { type: "function_call_output", call_id: call!.type === "function_call" ? call!.call_id : "", output }],
        })
      ).final;
    const answered = await answer("no goal is set", ANSWER_TOKENS);
    ResponseObject.parse(answered);
    expect(["completed", "incomplete"]).toContain(answered!.status);
    expect(answered!.output.every((item) => item.type === "message" || item.type === "function_call")).toBe(true);
    expect(answered!.usage!.input_tokens).toBeGreaterThan(forced!.usage!.input_tokens);
    // The output's own text, not only the call, reaches the prompt: a longer output reads longer.
    const longer = await answer(`no goal is set\n${"another line of the output\n".repeat(40)}`, 16);
    expect(longer!.usage!.input_tokens).toBeGreaterThan(answered!.usage!.input_tokens);
  }, 600_000);

  test("the long-context model is loaded with all the context it was trained for", async () => {
    const url = name === "direct" ? api.target(name).url : api.gateway.url;
    const response = await fetch(`${url}/api/v0/models/${MODEL}`, { headers: { authorization: `Bearer ${api.target(name).key}` } });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ max_context_length: 65536, loaded_context_length: 65536 });
  });
});
