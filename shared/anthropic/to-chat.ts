import { invalidRequest } from "../protocol/api-error.ts";
import { MAX_TOOLS, type ChatMessage, type ChatRequest, type Tool, type ToolChoice } from "../protocol/request-schemas.ts";
import type { ContentBlock, CountTokensRequest, MessageParam, MessagesRequest, ToolChoiceParam, ToolParam } from "./schemas.ts";

/**
 * Claude Code starts its system prompt with a line whose `cch=` value changes on every request;
 * left in, no two prompts share a prefix and the engine re-reads the whole prompt each turn. It
 * means nothing to a local model, so it is dropped.
 */
const BILLING_LINE = /^x-anthropic-billing-header:[^\n]*(\n|$)/;

/**
 * A Messages request as the Chat Completions request the backends run. The Messages schema has
 * validated every field this takes (with the chat request's own bounds where they differ), so
 * what is built here is a valid chat request without a second pass.
 */
export function toChatRequest(request: MessagesRequest): ChatRequest {
  return {
    ...promptOf(request),
    max_tokens: request.max_tokens,
    temperature: request.temperature,
    top_p: request.top_p,
    top_k: request.top_k,
    stop: request.stop_sequences,
    stream: request.stream,
    ...(request.output_config?.format ? { response_format: { type: "json_schema", json_schema: { name: "output", schema: request.output_config.format.schema } } } : {}),
  };
}

/** The parts of a request that make up the prompt (what `count_tokens` counts). */
export function promptOf(request: CountTokensRequest): Pick<ChatRequest, "model" | "messages" | "tools" | "tool_choice"> {
  const system = systemText(request.system);
  const loaded = referencedTools(request.messages);
  const tools = (request.tools ?? []).filter((tool) => isClientTool(tool) && (!tool.defer_loading || loaded.has(tool.name))).map(toTool);
  const messages: ChatMessage[] = [...(system === "" ? [] : [{ role: "system" as const, content: system }]), ...request.messages.flatMap(toMessages)];
  // What the Messages schema cannot see: turns of thinking alone leave no message, and deferred tools count once loaded.
  if (messages.length === 0) throw invalidRequest("Invalid 'messages': messages must not be empty", "messages");
  if (tools.length > MAX_TOOLS) throw invalidRequest(`Invalid 'tools': at most ${MAX_TOOLS} tools may reach the prompt.`, "tools");
  return {
    model: request.model,
    messages,
    ...(tools.length > 0 ? { tools, tool_choice: toToolChoice(request.tool_choice) } : {}),
  };
}

function systemText(system: CountTokensRequest["system"]): string {
  const blocks = typeof system === "string" ? [system] : (system ?? []).map((block) => block.text);
  if (blocks[0] !== undefined) blocks[0] = blocks[0].replace(BILLING_LINE, "");
  return blocks.filter((text) => text !== "").join("\n\n");
}

/** The deferred tools a tool search has loaded: those named by a `tool_reference` in a tool result. */
function referencedTools(messages: MessageParam[]): Set<string> {
  const names = new Set<string>();
  for (const message of messages) {
    if (typeof message.content === "string") continue;
    for (const block of message.content) {
      if (block.type !== "tool_result" || typeof block.content !== "object" || block.content === undefined) continue;
      for (const part of block.content) if (part.type === "tool_reference") names.add(part.tool_name);
    }
  }
  return names;
}

function toMessages(message: MessageParam, index: number): ChatMessage[] {
  if (message.role === "system") {
    const text = typeof message.content === "string" ? message.content : message.content.map((block) => block.text).join("\n\n");
    return [{ role: "system", content: text }];
  }
  if (typeof message.content === "string") return [{ role: message.role, content: message.content }];
  const text: string[] = [];
  const messages: ChatMessage[] = [];
  const toolCalls: Array<{ id: string; type: "function"; function: { name: string; arguments: string } }> = [];
  message.content.forEach((block, position) => {
    const where = `messages.${index}.content.${position}`;
    switch (block.type) {
      case "text":
        text.push(block.text);
        return;
      case "image":
      case "document":
        throw unreadable(block.type, where);
      case "thinking":
      case "redacted_thinking":
        return;
      case "tool_use":
        if (message.role !== "assistant") throw invalidRequest(`${where}: tool_use blocks belong in assistant messages.`, where);
        toolCalls.push({ id: block.id, type: "function", function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) } });
        return;
      case "tool_result":
        if (message.role !== "user") throw invalidRequest(`${where}: tool_result blocks belong in user messages.`, where);
        messages.push({ role: "tool", tool_call_id: block.tool_use_id, content: toolResultText(block, where) });
        return;
    }
  });
  if (message.role === "assistant") {
    return [{ role: "assistant", content: text.join(""), ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}) }];
  }
  // Tool results answer the previous assistant turn, so they come before the user's own words.
  return text.length > 0 ? [...messages, { role: "user", content: text.join("\n") }] : messages;
}

function toolResultText(block: Extract<ContentBlock, { type: "tool_result" }>, where: string): string {
  const content = block.content ?? "";
  const text =
    typeof content === "string"
      ? content
      : content
          .flatMap((part) => {
            if (part.type === "text") return [part.text];
            // The tool it names joins the prompt's tools (see referencedTools); it says nothing itself.
            if (part.type === "tool_reference") return [];
            throw unreadable(part.type, `${where}.content`);
          })
          .join("\n");
  return block.is_error ? `Error: ${text}` : text;
}

const unreadable = (type: string, where: string) =>
  invalidRequest(`${where}: ${type} blocks are not supported; the models this server runs read text only.`, where);

const isClientTool = (tool: ToolParam) => tool.type === undefined || tool.type === "custom";

function toTool(tool: ToolParam): Tool {
  return {
    type: "function",
    function: { name: tool.name, description: tool.description, parameters: tool.input_schema ?? { type: "object", properties: {} } },
  };
}

function toToolChoice(choice: ToolChoiceParam | undefined): ToolChoice {
  switch (choice?.type) {
    case undefined:
    case "auto":
      return "auto";
    case "any":
      return "required";
    case "none":
      return "none";
    case "tool":
      return { type: "function", function: { name: choice.name } };
  }
}
