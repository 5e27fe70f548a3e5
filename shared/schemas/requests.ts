import { z } from "zod";

/**
 * Request bodies of API.md. Unknown fields are stripped (clients send extras such as `user`,
 * `n` or vendor keys); a known field of the wrong type is a 400 naming the field.
 * `null` is accepted wherever a field is optional because many clients send `"stop": null`.
 */

const optional = <T extends z.ZodType>(schema: T) => schema.nullish().transform((value) => value ?? undefined);

const samplingFields = {
  model: z.string().min(1, "model is required"),
  max_tokens: optional(z.number().int().min(-1)),
  temperature: optional(z.number().min(0).max(2)),
  top_p: optional(z.number().min(0).max(1)),
  top_k: optional(z.number().int().min(0)),
  min_p: optional(z.number().min(0).max(1)),
  repeat_penalty: optional(z.number().min(0)),
  presence_penalty: optional(z.number().min(-2).max(2)),
  frequency_penalty: optional(z.number().min(-2).max(2)),
  seed: optional(z.number().int()),
  stop: optional(z.union([z.string(), z.array(z.string()).max(16)])),
  stream: optional(z.boolean()),
  stream_options: optional(z.object({ include_usage: optional(z.boolean()) })),
  logit_bias: optional(z.record(z.string(), z.number())),
  /** Seconds a model that this request loads stays loaded while idle. */
  ttl: optional(z.number().int().positive()),
};

const TextPart = z.object({ type: z.literal("text"), text: z.string() });
const MessageContent = z.union([z.string(), z.array(TextPart)]);

export const ToolCall = z.object({
  id: z.string(),
  type: z.literal("function"),
  function: z.object({ name: z.string(), arguments: z.string() }),
});
export type ToolCall = z.infer<typeof ToolCall>;

export const ChatMessage = z.discriminatedUnion("role", [
  z.object({ role: z.enum(["system", "developer"]), content: MessageContent }),
  z.object({ role: z.literal("user"), content: MessageContent }),
  z.object({
    role: z.literal("assistant"),
    content: optional(MessageContent),
    tool_calls: optional(z.array(ToolCall)),
  }),
  z.object({ role: z.literal("tool"), content: MessageContent, tool_call_id: z.string() }),
]);
export type ChatMessage = z.infer<typeof ChatMessage>;

const JsonSchemaObject = z.record(z.string(), z.unknown());

export const Tool = z.object({
  type: z.literal("function"),
  function: z.object({
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "function names are 1-64 letters, digits, _ or -"),
    description: optional(z.string()),
    parameters: optional(JsonSchemaObject),
  }),
});
export type Tool = z.infer<typeof Tool>;

export const ToolChoice = z.union([
  z.enum(["none", "auto", "required"]),
  z.object({ type: z.literal("function"), function: z.object({ name: z.string() }) }),
]);
export type ToolChoice = z.infer<typeof ToolChoice>;

export const ResponseFormat = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    json_schema: z.object({
      name: optional(z.string()),
      schema: JsonSchemaObject,
      strict: optional(z.boolean()),
    }),
  }),
]);
export type ResponseFormat = z.infer<typeof ResponseFormat>;

export const ChatRequest = z.object({
  ...samplingFields,
  messages: z.array(ChatMessage).min(1, "messages must not be empty"),
  max_completion_tokens: optional(z.number().int().min(-1)),
  response_format: optional(ResponseFormat),
  tools: optional(z.array(Tool).max(128)),
  tool_choice: optional(ToolChoice),
});
export type ChatRequest = z.infer<typeof ChatRequest>;

export const CompletionRequest = z.object({
  ...samplingFields,
  prompt: z.union([z.string(), z.array(z.string()).length(1, "only one prompt per request is supported")]),
});
export type CompletionRequest = z.infer<typeof CompletionRequest>;

export const EmbeddingsRequest = z.object({
  model: z.string().min(1, "model is required"),
  input: z.union([z.string(), z.array(z.string()).min(1, "input must not be empty").max(2048)]),
  /** `base64` is what the official openai client asks for by default. */
  encoding_format: optional(z.enum(["float", "base64"])),
  ttl: optional(z.number().int().positive()),
});
export type EmbeddingsRequest = z.infer<typeof EmbeddingsRequest>;

export const LoadRequest = z.object({
  model: z.string().min(1, "model is required"),
  context_length: optional(z.number().int().min(16)),
  /** Parallel slots (context sequences); LM Studio scripts send it as an extension. */
  parallel: optional(z.number().int().min(1).max(64)),
  ttl: optional(z.number().int().positive()),
  echo_load_config: optional(z.boolean()),
  /** Gateway only: the node to load it on (else the fleet places it). */
  node: z.string().min(1).optional(),
});
export type LoadRequest = z.infer<typeof LoadRequest>;

export const UnloadRequest = z
  // `node` (gateway only) unloads it there alone, instead of from every node that has it loaded.
  .object({ instance_id: optional(z.string().min(1)), model: optional(z.string().min(1)), node: z.string().min(1).optional() })
  .refine((body) => body.instance_id !== undefined || body.model !== undefined, {
    message: "instance_id is required",
    path: ["instance_id"],
  });
export type UnloadRequest = z.infer<typeof UnloadRequest>;
