import type { z } from "zod";
import type { ChatRequest } from "../protocol/request-schemas.ts";

/** English text and code average about four characters per token across common tokenizers. */
const CHARS_PER_TOKEN = 4;

/** What a chat template adds around each message (role markers, separators). */
const TOKENS_PER_MESSAGE = 4;

/**
 * An estimate of a prompt's tokens for `count_tokens`, used only when the backend cannot count
 * exactly (a gateway whose nodes holding the model are agents older than `count_tokens`).
 */
export function estimateTokens(prompt: Pick<z.input<typeof ChatRequest>, "messages" | "tools">): number {
  let characters = 0;
  for (const message of prompt.messages) {
    if (typeof message.content === "string") characters += message.content.length;
    else for (const part of message.content ?? []) characters += part.text.length;
    if (message.role === "assistant") characters += JSON.stringify(message.tool_calls ?? []).length;
  }
  characters += JSON.stringify(prompt.tools ?? []).length;
  return Math.ceil(characters / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * prompt.messages.length;
}
