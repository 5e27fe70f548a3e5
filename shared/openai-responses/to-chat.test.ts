import { expect, test } from "vitest";
import { ResponsesRequest } from "./schemas.ts";
import { inputMessages, toChatRequest } from "./to-chat.ts";

/** A Codex 0.171 request in miniature: every field it sends, with one of each kind of tool. */
const codexRequest = ResponsesRequest.parse({
  model: "m",
  stream: true,
  store: false,
  include: ["reasoning.encrypted_content"],
  reasoning: { summary: "auto" },
  prompt_cache_key: "k",
  client_metadata: { "x-codex-turn-metadata": "{}" },
  parallel_tool_calls: true,
  tool_choice: "auto",
  tools: [
    { type: "function", name: "exec_command", description: "Run a command", strict: false, parameters: { type: "object", properties: { cmd: { type: "string" } } } },
    { type: "namespace", name: "multi_agent_v1", description: "Sub-agents", tools: [{ type: "function", name: "spawn_agent", parameters: { type: "object" } }] },
    { type: "web_search", external_web_access: false },
  ],
  input: [
    { type: "message", id: "msg_1", role: "developer", content: [{ type: "input_text", text: "You are Codex." }] },
    { type: "message", role: "user", content: [{ type: "input_text", text: "List the files." }] },
    { type: "function_call", id: "fc_1", status: "completed", name: "exec_command", arguments: '{"cmd":"ls"}', call_id: "call_1" },
    { type: "function_call_output", id: "fco_1", call_id: "call_1", output: "notes.txt" },
  ],
});

test("Codex's request is accepted; only the function tools reach the prompt (hosted and namespace tools are left out, not refused)", () => {
  const chat = toChatRequest(codexRequest, inputMessages(codexRequest.input));
  expect(chat.tools?.map((tool) => tool.function.name)).toEqual(["exec_command"]);
  expect(chat.tool_choice).toBe("auto");
  expect(chat.messages).toEqual([
    { role: "developer", content: "You are Codex." },
    { role: "user", content: "List the files." },
    { role: "assistant", content: "", tool_calls: [{ id: "call_1", type: "function", function: { name: "exec_command", arguments: '{"cmd":"ls"}' } }] },
    { role: "tool", tool_call_id: "call_1", content: "notes.txt" },
  ]);
  expect(codexRequest.store).toBe(false);
});

test("a request whose only tool is one the fleet cannot run has no tools in its prompt", () => {
  const request = ResponsesRequest.parse({ model: "m", input: "Hi", tools: [{ type: "web_search" }] });
  expect(toChatRequest(request, inputMessages(request.input)).tools).toBeUndefined();
});
