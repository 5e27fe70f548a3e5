import type { GenerationOperation } from "../fleet-contract.ts";

/**
 * Characters per token of ordinary text. The exact count is the node's (it reads the prompt with
 * the model's tokenizer, after admission); before admission the budget holds this estimate, and
 * the request settles to the node's count (bounded, routing/usage-bounds.ts).
 */
const CHARS_PER_TOKEN = 4;

/**
 * About how many tokens the prompt of a generation is, from its text alone (the message contents,
 * tool calls included, or the completion prompt), so a key's tokens per day count its prompt
 * before the request runs, not only after.
 */
export function estimatedPromptTokens(operation: GenerationOperation): number {
  const text = operation.op === "chat" ? operation.body.messages : operation.body.prompt;
  return Math.floor(charactersOf(text) / CHARS_PER_TOKEN);
}

function charactersOf(value: unknown): number {
  if (typeof value === "string") return value.length;
  if (Array.isArray(value)) return value.reduce<number>((sum, item) => sum + charactersOf(item), 0);
  if (typeof value === "object" && value !== null) {
    // Roles and part types are a few template tokens each: only what the caller wrote counts here.
    const { role: _role, type: _type, ...rest } = value as Record<string, unknown>;
    return charactersOf(Object.values(rest));
  }
  return 0;
}
