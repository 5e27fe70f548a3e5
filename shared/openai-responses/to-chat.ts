import type { z } from "zod";
import { invalidRequest } from "../protocol/api-error.ts";
import { validate } from "../app/json-body.ts";
import { ChatRequest, type ChatMessage, type ResponseFormat, type Tool, type ToolChoice } from "../protocol/request-schemas.ts";
import type { ContentPart, InputItem, ResponsesRequest, ToolParam } from "./schemas.ts";

/** Chat messages as built here, validated when the chat request they go into is. */
export type MessageInput = z.input<typeof ChatMessage>;

/**
 * A Responses `input` as chat messages. A run of `function_call` items is one assistant turn
 * with several tool calls (joined to the assistant text just before it), and each
 * `function_call_output` is the tool message answering its call.
 */
export function inputMessages(input: ResponsesRequest["input"]): MessageInput[] {
  if (typeof input === "string") return [{ role: "user", content: input }];
  const messages: MessageInput[] = [];
  input.forEach((item, index) => {
    const where = `input.${index}`;
    const type = item.type ?? "message";
    if (type === "reasoning") return;
    if (item.type === "function_call") {
      const call = { id: item.call_id, type: "function" as const, function: { name: item.name, arguments: item.arguments } };
      const last = messages.at(-1);
      if (last?.role === "assistant") last.tool_calls = [...(last.tool_calls ?? []), call];
      else messages.push({ role: "assistant", content: "", tool_calls: [call] });
      return;
    }
    if (item.type === "function_call_output") {
      messages.push({ role: "tool", tool_call_id: item.call_id, content: textOf(item.output, `${where}.output`) });
      return;
    }
    const message = item as Extract<InputItem, { role: string }>;
    messages.push({ role: message.role, content: textOf(message.content, `${where}.content`) });
  });
  return messages;
}

function textOf(content: string | ContentPart[], where: string): string {
  if (typeof content === "string") return content;
  return content
    .map((part, index) => {
      if (part.type === "refusal") return part.refusal;
      if (part.type === "input_text" || part.type === "output_text") return part.text;
      throw invalidRequest(`${where}.${index}: ${part.type} parts are not supported; the models this server runs read text only.`, `${where}.${index}`);
    })
    .join("\n");
}

/** The chat request a Responses request runs as: instructions, then the conversation so far. */
export function toChatRequest(request: ResponsesRequest, conversation: MessageInput[]): ChatRequest {
  const tools = (request.tools ?? []).flatMap(toTool);
  return validate(ChatRequest, {
    model: request.model,
    messages: [...(request.instructions ? [{ role: "system" as const, content: request.instructions }] : []), ...conversation],
    max_tokens: request.max_output_tokens,
    temperature: request.temperature,
    top_p: request.top_p,
    response_format: toResponseFormat(request.text?.format),
    stream: request.stream,
    ...(tools.length > 0 ? { tools, tool_choice: toToolChoice(request.tool_choice) } : {}),
  });
}

function toTool(tool: ToolParam): Tool[] {
  if (tool.type !== "function") return [];
  if (tool.name === undefined) throw invalidRequest("A function tool needs a name.", "tools");
  return [{ type: "function", function: { name: tool.name, description: tool.description, parameters: tool.parameters ?? { type: "object", properties: {} } } }];
}

function toToolChoice(choice: ResponsesRequest["tool_choice"]): ToolChoice {
  if (choice === undefined || typeof choice === "string") return choice ?? "auto";
  return { type: "function", function: { name: choice.name } };
}

function toResponseFormat(format: NonNullable<ResponsesRequest["text"]>["format"]): ResponseFormat | undefined {
  if (format?.type !== "json_schema") return format;
  return { type: "json_schema", json_schema: { name: format.name, schema: format.schema, strict: format.strict } };
}
