import type { ChatHistoryItem, ChatModelFunctionCall, ChatModelResponse } from "node-llama-cpp";
import { invalidRequest } from "../../shared/protocol/api-error.ts";
import type { ChatMessage } from "../../shared/protocol/request-schemas.ts";

type Content = Extract<ChatMessage, { role: "user" }>["content"];

/**
 * OpenAI messages → node-llama-cpp chat history, ending with the model turn to generate.
 * node-llama-cpp keeps a tool round trip inside one model turn (the call, its result, then the
 * model carries on), so an assistant message with `tool_calls` and the `tool` messages answering it
 * become one `model` item with `functionCall` entries, and the assistant text that follows the
 * results joins that same turn.
 */
export function toChatHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  const unanswered = new Map<string, ChatModelFunctionCall>();

  messages.forEach((message, index) => {
    switch (message.role) {
      case "system":
      case "developer":
        history.push({ type: "system", text: textOf(message.content) });
        break;
      case "user":
        history.push({ type: "user", text: textOf(message.content) });
        break;
      case "assistant": {
        const turn = continuedTurn(history) ?? pushTurn(history);
        const text = message.content === undefined ? "" : textOf(message.content);
        if (text !== "") turn.response.push(text);
        for (const call of message.tool_calls ?? []) {
          const item: ChatModelFunctionCall = {
            type: "functionCall",
            name: call.function.name,
            params: parseArguments(call.function.arguments, index),
            result: undefined,
          };
          unanswered.set(call.id, item);
          turn.response.push(item);
        }
        break;
      }
      case "tool": {
        const call = unanswered.get(message.tool_call_id);
        if (!call) {
          throw invalidRequest(
            `messages[${index}] answers tool_call_id "${message.tool_call_id}", which no earlier assistant message made (or another tool message already answered).`,
            "messages",
          );
        }
        call.result = textOf(message.content);
        unanswered.delete(message.tool_call_id);
        break;
      }
    }
  });

  if (unanswered.size > 0) {
    throw invalidRequest(`Every assistant tool call needs a tool message with its result; missing: ${[...unanswered.keys()].join(", ")}.`, "messages");
  }
  if (!continuedTurn(history)) pushTurn(history);
  return history;
}

/** The last model turn when it ends in a tool result, i.e. the model is to carry on after it. */
function continuedTurn(history: ChatHistoryItem[]): ChatModelResponse | undefined {
  const last = history.at(-1);
  if (last?.type !== "model") return undefined;
  const lastPart = last.response.at(-1);
  return typeof lastPart === "object" && lastPart.type === "functionCall" ? last : undefined;
}

function pushTurn(history: ChatHistoryItem[]): ChatModelResponse {
  const turn: ChatModelResponse = { type: "model", response: [] };
  history.push(turn);
  return turn;
}

function textOf(content: Content): string {
  return typeof content === "string" ? content : content.map((part) => part.text).join("\n");
}

function parseArguments(text: string, index: number): unknown {
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch {
    throw invalidRequest(`messages[${index}].tool_calls has arguments that are not valid JSON.`, "messages");
  }
}
