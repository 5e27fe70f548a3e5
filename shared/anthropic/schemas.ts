import * as z from "zod";
import { GatewayInfo, Stats } from "../protocol/generation-events.ts";
import { optional, ToolName } from "../protocol/request-schemas.ts";

/**
 * Anthropic's Messages API (`POST /v1/messages`), as Claude Code sends it. Unknown fields are
 * stripped (`container`, `service_tier`, `cache_control` on any block, …): a local engine has no
 * use for them. What the engine cannot honour is accepted with the meaning Anthropic documents
 * (`thinking` on a model that does not think: answered without thinking blocks; `output_config`'s
 * `effort`; `context_management` edits of thinking there is none of) or refused by name (images,
 * documents).
 */

const TextBlock = z.object({ type: z.literal("text"), text: z.string() });

/** Blocks a text-only engine cannot read; kept apart so the refusal can say which. */
const UnreadableBlock = z.object({ type: z.enum(["image", "document"]) });

/** Earlier thinking that clients replay; dropped, since the engine does not think aloud. */
const ThinkingBlock = z.object({ type: z.enum(["thinking", "redacted_thinking"]) });

const ToolUseBlock = z.object({
  type: z.literal("tool_use"),
  id: z.string().min(1),
  name: z.string(),
  input: z.unknown(),
});

/** Tool search's answer: it loads a `defer_loading` tool into the prompt from then on. */
const ToolReferenceBlock = z.object({ type: z.literal("tool_reference"), tool_name: z.string().min(1) });

const ToolResultBlock = z.object({
  type: z.literal("tool_result"),
  tool_use_id: z.string().min(1),
  content: optional(z.union([z.string(), z.array(z.discriminatedUnion("type", [TextBlock, UnreadableBlock, ToolReferenceBlock]))])),
  is_error: optional(z.boolean()),
});

export const ContentBlock = z.discriminatedUnion("type", [TextBlock, UnreadableBlock, ThinkingBlock, ToolUseBlock, ToolResultBlock]);
export type ContentBlock = z.infer<typeof ContentBlock>;

/**
 * A turn. Claude Code also puts `system` messages inside the conversation (its environment block,
 * after the first user message); they stay where they stand, as system turns of the chat template.
 */
const MessageParam = z.discriminatedUnion("role", [
  z.object({ role: z.enum(["user", "assistant"]), content: z.union([z.string(), z.array(ContentBlock)]) }),
  z.object({ role: z.literal("system"), content: z.union([z.string(), z.array(TextBlock)]) }),
]);
export type MessageParam = z.infer<typeof MessageParam>;

/** A client tool; server tools carry a dated `type` (`web_search_20250305`, …) and run nowhere here. */
const ToolParam = z.object({
  type: optional(z.string()),
  name: ToolName,
  description: optional(z.string()),
  input_schema: optional(z.record(z.string(), z.unknown())),
  /** Left out of the prompt until a `tool_reference` in the conversation loads it (tool search). */
  defer_loading: optional(z.boolean()),
});
export type ToolParam = z.infer<typeof ToolParam>;

const ToolChoiceParam = z.discriminatedUnion("type", [
  z.object({ type: z.literal("auto"), disable_parallel_tool_use: optional(z.boolean()) }),
  z.object({ type: z.literal("any"), disable_parallel_tool_use: optional(z.boolean()) }),
  z.object({ type: z.literal("tool"), name: z.string(), disable_parallel_tool_use: optional(z.boolean()) }),
  z.object({ type: z.literal("none") }),
]);
export type ToolChoiceParam = z.infer<typeof ToolChoiceParam>;

const promptFields = {
  model: z.string().min(1, "model is required"),
  messages: z.array(MessageParam).min(1, "messages must not be empty"),
  system: optional(z.union([z.string(), z.array(TextBlock)])),
  tools: optional(z.array(ToolParam)),
  tool_choice: optional(ToolChoiceParam),
};

/** Extended thinking: how much the model may think first. A model that does not think answers without thinking blocks. */
const ThinkingConfig = z.discriminatedUnion("type", [
  z.object({ type: z.literal("enabled"), budget_tokens: z.number().int().min(1) }),
  z.object({ type: z.literal("adaptive") }),
  z.object({ type: z.literal("disabled") }),
]);

/** Server-side edits of the context (`clear_thinking_…`, `clear_tool_uses_…`): the shape is checked, the prompt is the conversation as sent. */
const ContextManagement = z.object({ edits: optional(z.array(z.looseObject({ type: z.string().min(1) }))) });

/** `effort` is for thinking, which these models do not do; `format` constrains the answer to a JSON schema. */
const OutputConfig = z.object({
  effort: optional(z.enum(["low", "medium", "high", "xhigh", "max"])),
  format: optional(z.object({ type: z.literal("json_schema"), schema: z.record(z.string(), z.unknown()) })),
});

export const CountTokensRequest = z.object({ ...promptFields, thinking: optional(ThinkingConfig) });
export type CountTokensRequest = z.infer<typeof CountTokensRequest>;

export const MessagesRequest = z.object({
  ...promptFields,
  max_tokens: z.number().int().min(1, "max_tokens must be at least 1"),
  stop_sequences: optional(z.array(z.string()).max(16)),
  stream: optional(z.boolean()),
  temperature: optional(z.number().min(0).max(1)),
  top_p: optional(z.number().min(0).max(1)),
  top_k: optional(z.number().int().min(0)),
  metadata: optional(z.object({ user_id: optional(z.string()) })),
  thinking: optional(ThinkingConfig),
  context_management: optional(ContextManagement),
  output_config: optional(OutputConfig),
});
export type MessagesRequest = z.infer<typeof MessagesRequest>;

export const StopReason = z.enum(["end_turn", "max_tokens", "stop_sequence", "tool_use"]);
export type StopReason = z.infer<typeof StopReason>;

export const MessageUsage = z.object({
  input_tokens: z.number().int().nonnegative(),
  output_tokens: z.number().int().nonnegative(),
  cache_creation_input_tokens: z.number().int().nonnegative(),
  cache_read_input_tokens: z.number().int().nonnegative(),
});
export type MessageUsage = z.infer<typeof MessageUsage>;

export const ResponseBlock = z.discriminatedUnion("type", [
  TextBlock,
  z.object({ type: z.literal("tool_use"), id: z.string(), name: z.string(), input: z.record(z.string(), z.unknown()) }),
]);
export type ResponseBlock = z.infer<typeof ResponseBlock>;

/** The response; `stats` (the engine's, as LM Studio reports them) and `gateway` are lmgate's additions. */
export const Message = z.object({
  id: z.string(),
  type: z.literal("message"),
  role: z.literal("assistant"),
  model: z.string(),
  content: z.array(ResponseBlock),
  stop_reason: StopReason.nullable(),
  stop_sequence: z.string().nullable(),
  usage: MessageUsage,
  stats: Stats.optional(),
  gateway: GatewayInfo.optional(),
});
export type Message = z.infer<typeof Message>;

export const TokenCount = z.object({ input_tokens: z.number().int().nonnegative() });

export const AnthropicErrorBody = z.object({
  type: z.literal("error"),
  error: z.object({ type: z.string(), message: z.string() }),
});
export type AnthropicErrorBody = z.infer<typeof AnthropicErrorBody>;
