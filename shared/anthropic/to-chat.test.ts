import { expect, test } from "vitest";
import { MessagesRequest } from "./schemas.ts";
import { toChatRequest } from "./to-chat.ts";

const claudeCodeRequest = (cch: string) =>
  MessagesRequest.parse({
    model: "m",
    max_tokens: 32000,
    system: [
      { type: "text", text: `x-anthropic-billing-header: cc_version=2.1.0; cc_entrypoint=cli; cch=${cch};` },
      { type: "text", text: "You are Claude Code.", cache_control: { type: "ephemeral" } },
    ],
    messages: [{ role: "user", content: [{ type: "text", text: "Hi", cache_control: { type: "ephemeral" } }] }],
  });

test("Claude Code's per-request billing line is dropped, so consecutive requests share their prompt prefix", () => {
  const first = toChatRequest(claudeCodeRequest("3f9a1"));
  expect(first.messages[0]).toEqual({ role: "system", content: "You are Claude Code." });
  expect(toChatRequest(claudeCodeRequest("b07c2"))).toEqual(first);
});

test("a billing line further down the system prompt is the user's own text and stays", () => {
  const request = MessagesRequest.parse({
    model: "m",
    max_tokens: 8,
    system: "Rules.\nx-anthropic-billing-header: quoted",
    messages: [{ role: "user", content: "Hi" }],
  });
  expect(toChatRequest(request).messages[0]).toEqual({ role: "system", content: "Rules.\nx-anthropic-billing-header: quoted" });
});

test("tool_use and tool_result blocks become the assistant's tool call and the tool message answering it", () => {
  const request = MessagesRequest.parse({
    model: "m",
    max_tokens: 8,
    tools: [{ name: "get_weather", input_schema: { type: "object" } }, { type: "web_search_20250305", name: "web_search" }],
    tool_choice: { type: "any" },
    messages: [
      { role: "user", content: "Weather?" },
      { role: "assistant", content: [{ type: "text", text: "Checking." }, { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } }] },
      { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: [{ type: "text", text: "Sunny" }] }, { type: "text", text: "Thanks" }] },
    ],
  });
  const chat = toChatRequest(request);
  expect(chat.tools?.map((tool) => tool.function.name)).toEqual(["get_weather"]);
  expect(chat.tool_choice).toBe("required");
  expect(chat.messages.slice(1)).toEqual([
    { role: "assistant", content: "Checking.", tool_calls: [{ id: "toolu_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }] },
    { role: "tool", tool_call_id: "toolu_1", content: "Sunny" },
    { role: "user", content: "Thanks" },
  ]);
});

const turn = (extra: Record<string, unknown>) => ({ model: "m", max_tokens: 32000, messages: [{ role: "user", content: "Hi" }], ...extra });

test("a system message inside messages stays where it stands, as a system turn; its text blocks are joined", () => {
  const request = MessagesRequest.parse(
    turn({
      messages: [
        { role: "user", content: [{ type: "text", text: "Task" }] },
        { role: "system", content: [{ type: "text", text: "# Environment", cache_control: { type: "ephemeral" } }, { type: "text", text: "cwd: /p" }] },
        { role: "assistant", content: "Done." },
        { role: "system", content: "Later note" },
      ],
    }),
  );
  expect(toChatRequest(request).messages).toEqual([
    { role: "user", content: "Task" },
    { role: "system", content: "# Environment\n\ncwd: /p" },
    { role: "assistant", content: "Done." },
    { role: "system", content: "Later note" },
  ]);
  // Only text is a system message's content.
  expect(MessagesRequest.safeParse(turn({ messages: [{ role: "system", content: [{ type: "tool_use", id: "t", name: "x", input: {} }] }] })).success).toBe(false);
});

test("thinking in each of its forms, output_config and context_management are accepted; their shapes are checked", () => {
  for (const thinking of [{ type: "enabled", budget_tokens: 2048 }, { type: "adaptive", display: "omitted" }, { type: "disabled" }]) {
    const request = MessagesRequest.parse(turn({ thinking, output_config: { effort: "high" }, context_management: { edits: [{ type: "clear_thinking_20251015", keep: "all" }] } }));
    expect(toChatRequest(request).messages).toEqual([{ role: "user", content: "Hi" }]);
  }
  expect(MessagesRequest.safeParse(turn({ thinking: { type: "enabled" } })).error?.issues[0]?.path).toEqual(["thinking", "budget_tokens"]);
  expect(MessagesRequest.safeParse(turn({ thinking: { type: "sometimes" } })).success).toBe(false);
  expect(MessagesRequest.safeParse(turn({ output_config: { effort: "huge" } })).error?.issues[0]?.path).toEqual(["output_config", "effort"]);
  expect(MessagesRequest.safeParse(turn({ context_management: { edits: [{ keep: "all" }] } })).success).toBe(false);
});

test("output_config.format constrains the answer to its JSON schema", () => {
  const schema = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
  const chat = toChatRequest(MessagesRequest.parse(turn({ output_config: { format: { type: "json_schema", schema } } })));
  expect(chat.response_format).toEqual({ type: "json_schema", json_schema: { name: "output", schema } });
});

test("earlier thinking blocks are dropped from the history, not refused", () => {
  const request = MessagesRequest.parse(
    turn({
      messages: [
        { role: "user", content: "Hi" },
        { role: "assistant", content: [{ type: "thinking", thinking: "hmm", signature: "s" }, { type: "redacted_thinking", data: "x" }, { type: "text", text: "Hello" }] },
        { role: "user", content: "Again" },
      ],
    }),
  );
  expect(toChatRequest(request).messages).toEqual([
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hello" },
    { role: "user", content: "Again" },
  ]);
});

test("defer_loading tools stay out of the prompt until a tool_reference in a tool result loads them", () => {
  const tools = [
    { name: "ToolSearch", input_schema: { type: "object" } },
    { name: "NotebookEdit", input_schema: { type: "object" }, defer_loading: true },
    { name: "WebFetch", input_schema: { type: "object" }, defer_loading: true, cache_control: { type: "ephemeral" } },
  ];
  const names = (request: unknown) => toChatRequest(MessagesRequest.parse(request)).tools?.map((tool) => tool.function.name);
  expect(names(turn({ tools }))).toEqual(["ToolSearch"]);
  const searched = turn({
    tools,
    messages: [
      { role: "user", content: "Edit the notebook" },
      { role: "assistant", content: [{ type: "tool_use", id: "toolu_1", name: "ToolSearch", input: { query: "notebook" } }] },
      { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: [{ type: "tool_reference", tool_name: "NotebookEdit" }] }] },
    ],
  });
  expect(names(searched)).toEqual(["ToolSearch", "NotebookEdit"]);
  // The reference loads the tool; it adds no text to the result.
  expect(toChatRequest(MessagesRequest.parse(searched)).messages.at(-1)).toEqual({ role: "tool", tool_call_id: "toolu_1", content: "" });
});

test("an image for a text-only model is a 400 naming the block", () => {
  const request = MessagesRequest.parse(
    turn({ messages: [{ role: "user", content: [{ type: "text", text: "What is this?" }, { type: "image", source: { type: "base64", media_type: "image/png", data: "AA==" } }] }] }),
  );
  expect(() => toChatRequest(request)).toThrow(expect.objectContaining({ status: 400, message: expect.stringContaining("messages.0.content.1: image blocks are not supported") }));
});
