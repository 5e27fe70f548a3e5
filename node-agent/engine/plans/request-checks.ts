import { invalidRequest } from "../../../shared/protocol/api-error.ts";
import type { ChatRequest } from "../../../shared/protocol/request-schemas.ts";
import type { ToolPlan } from "../tool-calls.ts";

/** Asks of a chat request that cannot go together, refused before anything is generated. */
export function checkChatRequest(request: ChatRequest, tools: ToolPlan): void {
  if (request.top_logprobs !== undefined && request.top_logprobs > 0 && request.logprobs !== true) {
    throw invalidRequest("top_logprobs needs logprobs: true.", "top_logprobs");
  }
  const format = request.response_format;
  if (tools.mode === "auto" && format !== undefined && format.type !== "text") {
    throw invalidRequest("response_format cannot be combined with tools the model may call (tool_choice auto).", "response_format");
  }
}

/** The log-probability loop samples without a grammar, which tools and response_format need. */
export function checkLogprobChat(request: ChatRequest, tools: ToolPlan): void {
  if (tools.mode !== "none") throw invalidRequest("logprobs cannot be combined with tools; send one or the other.", "logprobs");
  const format = request.response_format;
  if (format !== undefined && format.type !== "text") {
    throw invalidRequest("logprobs cannot be combined with response_format json_object or json_schema.", "logprobs");
  }
}
