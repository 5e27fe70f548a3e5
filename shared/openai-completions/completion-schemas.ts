import * as z from "zod";
import { ToolCall } from "../protocol/request-schemas.ts";
import { FinishReason, GatewayInfo, ModelInfo, Runtime, Stats, TokenLogprob, Usage } from "../protocol/generation-events.ts";

/** Response bodies of the API (docs/api.md). `/api/v0/*` fills `stats`, `model_info` and `runtime`; `/v1/*` omits them. */

const lmstudioExtras = {
  stats: Stats.optional(),
  model_info: ModelInfo.optional(),
  runtime: Runtime.optional(),
  gateway: GatewayInfo.optional(),
};

const head = { id: z.string(), created: z.number().int(), model: z.string() };

/** A chat choice's `logprobs` when the request asked for them (`logprobs: true`), else null. */
export const ChatLogprobs = z.object({ content: z.array(TokenLogprob) }).nullable();

/** The legacy completions API's `logprobs` (with `logprobs: N`), else null. */
export const CompletionLogprobs = z.object({
  tokens: z.array(z.string()),
  token_logprobs: z.array(z.number()),
  top_logprobs: z.array(z.record(z.string(), z.number())),
  text_offset: z.array(z.number().int()),
});
export type CompletionLogprobs = z.infer<typeof CompletionLogprobs>;

export const ChatCompletion = z.object({
  ...head,
  object: z.literal("chat.completion"),
  choices: z.array(
    z.object({
      index: z.number().int(),
      logprobs: ChatLogprobs,
      finish_reason: FinishReason,
      message: z.object({
        role: z.literal("assistant"),
        content: z.string().nullable(),
        tool_calls: z.array(ToolCall).optional(),
      }),
    }),
  ),
  usage: Usage,
  ...lmstudioExtras,
});
export type ChatCompletion = z.infer<typeof ChatCompletion>;

export const TextCompletion = z.object({
  ...head,
  object: z.literal("text_completion"),
  choices: z.array(z.object({ index: z.number().int(), text: z.string(), logprobs: CompletionLogprobs.nullable(), finish_reason: FinishReason })),
  usage: Usage,
  ...lmstudioExtras,
});
export type TextCompletion = z.infer<typeof TextCompletion>;

const chunkChoice = { index: z.number().int(), finish_reason: FinishReason.nullable() };

export const ChatCompletionChunk = z.object({
  ...head,
  object: z.literal("chat.completion.chunk"),
  choices: z.array(
    z.object({
      ...chunkChoice,
      logprobs: ChatLogprobs,
      delta: z.object({
        role: z.literal("assistant").optional(),
        content: z.string().optional(),
        tool_calls: z.array(ToolCall.extend({ index: z.number().int() })).optional(),
      }),
    }),
  ),
  usage: Usage.optional(),
  ...lmstudioExtras,
});
export type ChatCompletionChunk = z.infer<typeof ChatCompletionChunk>;

export const TextCompletionChunk = z.object({
  ...head,
  object: z.literal("text_completion"),
  choices: z.array(z.object({ ...chunkChoice, logprobs: CompletionLogprobs.nullable(), text: z.string() })),
  usage: Usage.optional(),
  ...lmstudioExtras,
});
export type TextCompletionChunk = z.infer<typeof TextCompletionChunk>;

export const EmbeddingsResponse = z.object({
  object: z.literal("list"),
  data: z.array(
    z.object({ object: z.literal("embedding"), embedding: z.union([z.array(z.number()), z.string()]), index: z.number().int() }),
  ),
  model: z.string(),
  usage: z.object({ prompt_tokens: z.number().int(), total_tokens: z.number().int() }),
  gateway: GatewayInfo.optional(),
});
export type EmbeddingsResponse = z.infer<typeof EmbeddingsResponse>;
