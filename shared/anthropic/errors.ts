import type { ApiError } from "../protocol/api-error.ts";
import type { ErrorShape } from "../app/documented-routes.ts";
import { AnthropicErrorBody } from "./schemas.ts";

/** Anthropic's error type for a status: its SDK picks the exception class by status, clients read the type. */
function errorType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 413) return "request_too_large";
  if (status === 429) return "rate_limit_error";
  if (status === 503 || status === 529) return "overloaded_error";
  if (status === 504) return "timeout_error";
  if (status >= 500) return "api_error";
  return "invalid_request_error";
}

/** Matches `contextOverflow`'s message (shared/protocol/api-error.ts), the only carrier of its numbers across the wire. */
const OVERFLOW = /(\d+) tokens but the model is loaded with a context length of only (\d+) tokens/;

/**
 * Claude Code recognises a prompt over the context by Anthropic's own wording and then compacts
 * the conversation, so an overflow is said that way, followed by our advice.
 */
function messageOf(error: ApiError): string {
  const overflow = error.code === "context_length_exceeded" ? OVERFLOW.exec(error.message) : null;
  return overflow ? `prompt is too long: ${overflow[1]} tokens > ${overflow[2]} maximum. ${error.message}` : error.message;
}

export function anthropicErrorBody(error: ApiError): AnthropicErrorBody {
  return { type: "error", error: { type: errorType(error.status), message: messageOf(error) } };
}

/** The error shape the family's routes declare: Anthropic's SDK and Claude Code parse only this one. */
export const ANTHROPIC_ERRORS: ErrorShape = { schema: AnthropicErrorBody, description: "An Anthropic-shaped error", encode: anthropicErrorBody };
