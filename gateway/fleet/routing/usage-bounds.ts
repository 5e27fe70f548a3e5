import type { Operation } from "../../../shared/protocol/frames.ts";
import type { Usage } from "../../../shared/protocol/generation-events.ts";
import type { ModelObject } from "../../../shared/protocol/model-schemas.ts";

/**
 * Tokens a chat template may add around the request's own text (role markers, BOS, a default
 * system prompt): generous, as it only has to stop absurd counts.
 */
const TEMPLATE_TOKENS = 1_024;

/**
 * Usage a node reports, bounded by what the request asked for, so a rogue node cannot spend a
 * key's budget with made-up counts: a prompt is at most one token per byte of the request (a
 * byte-fallback tokenizer's worst case) plus a template's share; a completion at most its
 * `max_tokens`, else the model's context; cached prompt tokens at most the prompt.
 */
export function boundedUsage(operation: Operation, model: ModelObject | undefined, usage: Usage): Usage {
  const prompt = boundedPromptTokens(operation, usage.prompt_tokens);
  const completion = Math.min(usage.completion_tokens, completionLimit(operation, model));
  const cached = usage.prompt_tokens_details?.cached_tokens;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    ...(cached === undefined ? {} : { prompt_tokens_details: { cached_tokens: Math.min(cached, prompt) } }),
  };
}

/** A prompt's token count a node reports (usage, the start event, count_tokens), bounded the same way. */
export function boundedPromptTokens(operation: Operation, promptTokens: number): number {
  return Math.min(promptTokens, promptLimit(operation));
}

/** Each request's limit, measured once: a generation reports its prompt at the start and again at the end, and a body may be 1 MiB. */
const promptLimits = new WeakMap<Operation, number>();

function promptLimit(operation: Operation): number {
  let limit = promptLimits.get(operation);
  if (limit === undefined) {
    limit = new TextEncoder().encode(JSON.stringify(operation.body)).length + TEMPLATE_TOKENS;
    promptLimits.set(operation, limit);
  }
  return limit;
}

function completionLimit(operation: Operation, model: ModelObject | undefined): number {
  if (operation.op !== "chat" && operation.op !== "completion") return 0;
  const asked = (operation.op === "chat" ? operation.body.max_completion_tokens : undefined) ?? operation.body.max_tokens;
  // Each of `n` choices may use the whole limit.
  const choices = operation.body.n ?? 1;
  if (asked !== undefined && asked >= 0) return asked * choices;
  return (model?.loaded_context_length ?? model?.max_context_length ?? Number.MAX_SAFE_INTEGER) * choices;
}
