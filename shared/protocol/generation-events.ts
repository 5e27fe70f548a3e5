import * as z from "zod";
import { ToolCall } from "./request-schemas.ts";

/**
 * What a backend reports about one generation. Field names are the API's own (snake_case) so the
 * objects go into responses unchanged, from the node's engine through the gateway to the client.
 */

export const StopReason = z.enum([
  "eosFound",
  "maxPredictedTokensReached",
  "stopStringFound",
  "toolCalls",
  "userStopped",
  "contextLengthReached",
  "modelUnloaded",
  "failed",
]);
export type StopReason = z.infer<typeof StopReason>;

export const FinishReason = z.enum(["stop", "length", "tool_calls"]);
export type FinishReason = z.infer<typeof FinishReason>;

export const Usage = z.object({
  prompt_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  total_tokens: z.number().int().nonnegative(),
  /** OpenAI's shape: prompt tokens the engine found already evaluated (its cache) and did not evaluate again. */
  prompt_tokens_details: z.object({ cached_tokens: z.number().int().nonnegative() }).optional(),
});
export type Usage = z.infer<typeof Usage>;

/**
 * Speculative decoding, as LM Studio reports it: drafted tokens the model checked (total) are
 * accepted (part of the answer), rejected (the model chose otherwise) or ignored (confirmed after
 * the answer had already ended). Present when the request drafted, by a draft model or by prompt
 * lookup; `draft_model` only with a draft model.
 */
export const DraftStats = z.object({
  draft_model: z.string().optional(),
  total_draft_tokens_count: z.number().int().nonnegative().optional(),
  accepted_draft_tokens_count: z.number().int().nonnegative().optional(),
  rejected_draft_tokens_count: z.number().int().nonnegative().optional(),
  ignored_draft_tokens_count: z.number().int().nonnegative().optional(),
});
export type DraftStats = z.infer<typeof DraftStats>;

export const Stats = z.object({
  /** Decode speed: tokens after the first, over the seconds after the first. */
  tokens_per_second: z.number().nonnegative(),
  /** Seconds from the engine starting the request (slot held, model loaded) to the first token. */
  time_to_first_token: z.number().nonnegative(),
  /** Seconds from the engine starting the request to its last token. */
  generation_time: z.number().nonnegative(),
  stop_reason: StopReason,
  /** Prompt tokens reused from the slot's cache; the rest of the prompt was evaluated. */
  cached_prompt_tokens: z.number().int().nonnegative().optional(),
  ...DraftStats.shape,
});
export type Stats = z.infer<typeof Stats>;

export const ModelInfo = z.object({
  arch: z.string(),
  quant: z.string(),
  format: z.literal("gguf"),
  context_length: z.number().int().positive(),
});
export type ModelInfo = z.infer<typeof ModelInfo>;

export const Runtime = z.object({
  name: z.string(),
  version: z.string(),
  supported_formats: z.array(z.string()),
});
export type Runtime = z.infer<typeof Runtime>;

/** Added by the gateway; one namespaced object rather than keys sprinkled over the response. */
export const GatewayInfo = z.object({
  node: z.string(),
  queue_ms: z.number().nonnegative(),
  overhead_ms: z.number().nonnegative(),
  retries: z.number().int().nonnegative(),
});
export type GatewayInfo = z.infer<typeof GatewayInfo>;

/** One candidate token and its log probability, in OpenAI's chat shape (`bytes`: its UTF-8 bytes). */
export const TopLogprob = z.object({ token: z.string(), logprob: z.number(), bytes: z.array(z.number().int()).nullable() });
export type TopLogprob = z.infer<typeof TopLogprob>;

/** A generated token with its log probability and the most likely alternatives at its position. */
export const TokenLogprob = TopLogprob.extend({ top_logprobs: z.array(TopLogprob) });
export type TokenLogprob = z.infer<typeof TokenLogprob>;

/** How one of several choices (`n` > 1) ended; the result's own fields describe choice 0. */
export const ChoiceEnd = z.object({
  index: z.number().int().nonnegative(),
  finish_reason: FinishReason,
  tool_calls: z.array(ToolCall).optional(),
  stop_string: z.string().optional(),
});
export type ChoiceEnd = z.infer<typeof ChoiceEnd>;

export const GenerationResult = z.object({
  finish_reason: FinishReason,
  usage: Usage,
  stats: Stats,
  model_info: ModelInfo,
  runtime: Runtime,
  tool_calls: z.array(ToolCall).optional(),
  /** With stop reason `stopStringFound`: which of the request's stop strings ended the text. */
  stop_string: z.string().optional(),
  /** With `n` > 1: every choice's end, index 0 included; `usage` is their sum, the prompt counted once. */
  choices: z.array(ChoiceEnd).optional(),
  gateway: GatewayInfo.optional(),
});
export type GenerationResult = z.infer<typeof GenerationResult>;

/**
 * A chat or completion run is a stream of these: `start` once the request holds a slot (so a
 * streaming response can commit to 200), `delta`s of text, then exactly one `done`. The optional
 * fields of `start` are additive: older agents leave them out and older gateways drop them.
 * A failure is a thrown `ApiError`, never an event.
 */
export const GenerationEvent = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("start"),
    model: z.string(),
    /** Tokens the prompt takes, as the engine counted it before evaluating it (newer agents). */
    prompt_tokens: z.number().int().nonnegative().optional(),
    /** Seconds this request waited for its model to load (JIT), when it did (newer agents). */
    load_seconds: z.number().nonnegative().optional(),
  }),
  z.object({
    type: z.literal("delta"),
    text: z.string(),
    /** The choice this text belongs to (`n` > 1); absent means 0. */
    index: z.number().int().nonnegative().optional(),
    /** With `logprobs` asked for: the tokens of this text. */
    logprobs: z.array(TokenLogprob).optional(),
  }),
  z.object({ type: z.literal("done"), result: GenerationResult }),
]);
export type GenerationEvent = z.infer<typeof GenerationEvent>;

export const EmbeddingsResult = z.object({
  model: z.string(),
  embeddings: z.array(z.array(z.number())),
  usage: z.object({ prompt_tokens: z.number().int().nonnegative(), total_tokens: z.number().int().nonnegative() }),
  gateway: GatewayInfo.optional(),
});
export type EmbeddingsResult = z.infer<typeof EmbeddingsResult>;
