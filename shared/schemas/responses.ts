import * as z from "zod";
import { ToolCall } from "./requests.ts";
import { FinishReason, GatewayInfo, ModelInfo, Runtime, Stats, Usage } from "./generation.ts";

/** Response bodies of the API (docs/api.md). `/api/v0/*` fills `stats`, `model_info` and `runtime`; `/v1/*` omits them. */

const lmstudioExtras = {
  stats: Stats.optional(),
  model_info: ModelInfo.optional(),
  runtime: Runtime.optional(),
  gateway: GatewayInfo.optional(),
};

const head = { id: z.string(), created: z.number().int(), model: z.string() };

export const ChatCompletion = z.object({
  ...head,
  object: z.literal("chat.completion"),
  choices: z.array(
    z.object({
      index: z.number().int(),
      logprobs: z.null(),
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
  choices: z.array(z.object({ index: z.number().int(), text: z.string(), logprobs: z.null(), finish_reason: FinishReason })),
  usage: Usage,
  ...lmstudioExtras,
});
export type TextCompletion = z.infer<typeof TextCompletion>;

const chunkChoice = { index: z.number().int(), logprobs: z.null(), finish_reason: FinishReason.nullable() };

export const ChatCompletionChunk = z.object({
  ...head,
  object: z.literal("chat.completion.chunk"),
  choices: z.array(
    z.object({
      ...chunkChoice,
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
  choices: z.array(z.object({ ...chunkChoice, text: z.string() })),
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
