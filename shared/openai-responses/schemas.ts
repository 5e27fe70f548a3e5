import * as z from "zod";
import { GatewayInfo, Stats } from "../protocol/generation-events.ts";
import { optional } from "../protocol/request-schemas.ts";

/**
 * OpenAI's Responses API (`POST /v1/responses`). Unknown fields are stripped: Codex and the SDK
 * send `reasoning`, `include`, `prompt_cache_key`, `client_metadata`, … that a local engine has no
 * use for. Items and tools the engine cannot serve are dropped (reasoning, hosted tools) or
 * refused by name (images, files).
 */

const TextPart = z.object({ type: z.enum(["input_text", "output_text"]), text: z.string() });
const UnreadablePart = z.object({ type: z.enum(["input_image", "input_file", "input_audio"]) });
const RefusalPart = z.object({ type: z.literal("refusal"), refusal: z.string() });
export const ContentPart = z.discriminatedUnion("type", [TextPart, UnreadablePart, RefusalPart]);
export type ContentPart = z.infer<typeof ContentPart>;

const MessageItem = z.object({
  type: optional(z.literal("message")),
  role: z.enum(["user", "assistant", "system", "developer"]),
  content: z.union([z.string(), z.array(ContentPart)]),
});

const FunctionCallItem = z.object({
  type: z.literal("function_call"),
  call_id: z.string().min(1),
  name: z.string(),
  arguments: z.string(),
});

const FunctionCallOutputItem = z.object({
  type: z.literal("function_call_output"),
  call_id: z.string().min(1),
  output: z.union([z.string(), z.array(ContentPart)]),
});

/** Reasoning a client replays from an earlier turn; dropped, since the engine does not reason aloud. */
const ReasoningItem = z.object({ type: z.literal("reasoning") });

export const InputItem = z.union([MessageItem, FunctionCallItem, FunctionCallOutputItem, ReasoningItem]);
export type InputItem = z.infer<typeof InputItem>;

/** A function tool (flat, unlike Chat Completions'); hosted tools (`web_search`, `local_shell`, …) run nowhere here. */
const ToolParam = z.looseObject({
  type: z.string(),
  name: optional(z.string()),
  description: optional(z.string()),
  parameters: optional(z.record(z.string(), z.unknown())),
});
export type ToolParam = z.infer<typeof ToolParam>;

const ToolChoiceParam = z.union([z.enum(["none", "auto", "required"]), z.object({ type: z.literal("function"), name: z.string() })]);

const TextFormat = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({ type: z.literal("json_schema"), name: optional(z.string()), schema: z.record(z.string(), z.unknown()), strict: optional(z.boolean()) }),
]);

export const ResponsesRequest = z.object({
  model: z.string().min(1, "model is required"),
  input: z.union([z.string(), z.array(InputItem)]),
  instructions: optional(z.string()),
  tools: optional(z.array(ToolParam)),
  tool_choice: optional(ToolChoiceParam),
  text: optional(z.object({ format: optional(TextFormat) })),
  max_output_tokens: optional(z.number().int().min(1)),
  temperature: optional(z.number().min(0).max(2)),
  top_p: optional(z.number().min(0).max(1)),
  store: optional(z.boolean()),
  previous_response_id: optional(z.string().min(1)),
  stream: optional(z.boolean()),
  metadata: optional(z.record(z.string(), z.string())),
});
export type ResponsesRequest = z.infer<typeof ResponsesRequest>;

const OutputMessage = z.object({
  id: z.string(),
  type: z.literal("message"),
  role: z.literal("assistant"),
  status: z.enum(["in_progress", "completed", "incomplete"]),
  content: z.array(z.object({ type: z.literal("output_text"), text: z.string(), annotations: z.array(z.unknown()) })),
});

const OutputFunctionCall = z.object({
  id: z.string(),
  type: z.literal("function_call"),
  status: z.enum(["in_progress", "completed"]),
  call_id: z.string(),
  name: z.string(),
  arguments: z.string(),
});

export const OutputItem = z.discriminatedUnion("type", [OutputMessage, OutputFunctionCall]);
export type OutputItem = z.infer<typeof OutputItem>;

export const ResponseUsage = z.object({
  input_tokens: z.number().int().nonnegative(),
  input_tokens_details: z.object({ cached_tokens: z.number().int().nonnegative() }),
  output_tokens: z.number().int().nonnegative(),
  output_tokens_details: z.object({ reasoning_tokens: z.number().int().nonnegative() }),
  total_tokens: z.number().int().nonnegative(),
});

/** The response object; `stats` (the engine's, as LM Studio reports them) and `gateway` are lmgate's additions. */
export const ResponseObject = z.object({
  id: z.string(),
  object: z.literal("response"),
  created_at: z.number().int(),
  status: z.enum(["in_progress", "completed", "incomplete"]),
  model: z.string(),
  output: z.array(OutputItem),
  usage: ResponseUsage.nullable(),
  incomplete_details: z.object({ reason: z.string() }).nullable(),
  error: z.null(),
  instructions: z.string().nullable(),
  max_output_tokens: z.number().int().nullable(),
  previous_response_id: z.string().nullable(),
  store: z.boolean(),
  temperature: z.number().nullable(),
  top_p: z.number().nullable(),
  tool_choice: z.unknown(),
  tools: z.array(z.unknown()),
  parallel_tool_calls: z.boolean(),
  text: z.object({ format: z.unknown() }),
  metadata: z.record(z.string(), z.string()),
  stats: Stats.optional(),
  gateway: GatewayInfo.optional(),
});
export type ResponseObject = z.infer<typeof ResponseObject>;

export const DeletedResponse = z.object({ id: z.string(), object: z.literal("response.deleted"), deleted: z.literal(true) });
