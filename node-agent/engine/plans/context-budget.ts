import { contextOverflow, invalidRequest } from "../../../shared/protocol/api-error.ts";

export interface ContextBudget {
  maxTokens: number;
  /** The limit is the end of the context, not the request's max_tokens. */
  limitIsContextEnd: boolean;
}

/**
 * Tokens the answer may use. Without max_tokens (or -1) it runs to the end of the context; the
 * context is never shifted, which would silently drop the start of the conversation.
 */
export function contextBudget(contextLength: number, promptTokens: number, requested: number | undefined, promptParam = "messages"): ContextBudget {
  if (requested === 0) throw invalidRequest("max_tokens must be at least 1, or -1 for no limit.", "max_tokens");
  // node-llama-cpp keeps one cell free beyond the prompt before it would shift the context.
  const room = contextLength - promptTokens - 1;
  if (room < 1) throw contextOverflow(promptTokens, contextLength, promptParam);
  if (requested === undefined || requested < 0 || requested >= room) return { maxTokens: room, limitIsContextEnd: true };
  return { maxTokens: requested, limitIsContextEnd: false };
}
