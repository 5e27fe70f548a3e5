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
