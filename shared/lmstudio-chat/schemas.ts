import * as z from "zod";
import { GatewayInfo } from "../protocol/generation-events.ts";
import { optional } from "../protocol/request-schemas.ts";

/**
 * LM Studio's native chat (`POST /api/v1/chat`, LM Studio 0.4+). Unknown fields are stripped;
 * `reasoning` and `context_length` are accepted and ignored, images and `integrations` (MCP
 * plugins run by the server) are refused by name.
 */

const InputItem = z.discriminatedUnion("type", [
  z.object({ type: z.literal("message"), content: z.string() }),
  z.object({ type: z.literal("text"), content: optional(z.string()), text: optional(z.string()) }),
  z.object({ type: z.literal("image") }),
]);

export const LmChatRequest = z.object({
  model: z.string().min(1, "model is required"),
  input: z.union([z.string(), z.array(InputItem).min(1, "input must not be empty")]),
  system_prompt: optional(z.string()),
  integrations: optional(z.array(z.unknown())),
  stream: optional(z.boolean()),
  temperature: optional(z.number().min(0).max(1)),
  top_p: optional(z.number().min(0).max(1)),
  top_k: optional(z.number().int().min(0)),
  min_p: optional(z.number().min(0).max(1)),
  repeat_penalty: optional(z.number().min(0)),
  max_output_tokens: optional(z.number().int().min(1)),
  /** Speculative decoding, as on the chat completion routes. */
  draft_model: optional(z.string().min(1)),
  prompt_lookup: optional(z.boolean()),
  store: optional(z.boolean()),
  previous_response_id: optional(z.string().min(1)),
});
export type LmChatRequest = z.infer<typeof LmChatRequest>;

export const LmChatStats = z.object({
  input_tokens: z.number().int().nonnegative(),
  total_output_tokens: z.number().int().nonnegative(),
  reasoning_output_tokens: z.number().int().nonnegative(),
  tokens_per_second: z.number().nonnegative(),
  time_to_first_token_seconds: z.number().nonnegative(),
  /** Only when this request loaded the model. */
  model_load_time_seconds: z.number().nonnegative().optional(),
});

export const LmChatResponse = z.object({
  model_instance_id: z.string(),
  output: z.array(z.object({ type: z.literal("message"), content: z.string() })),
  stats: LmChatStats,
  /** Absent with `store: false`. */
  response_id: z.string().optional(),
  gateway: GatewayInfo.optional(),
});
export type LmChatResponse = z.infer<typeof LmChatResponse>;

/** LM Studio's native error shape (`/api/v1/*`). */
export const LmErrorBody = z.object({
  error: z.object({ type: z.string(), message: z.string(), code: z.string().optional(), param: z.string().optional() }),
});
export type LmErrorBody = z.infer<typeof LmErrorBody>;
