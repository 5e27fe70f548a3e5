import * as z from "zod";

/**
 * Request bodies of the API (docs/api.md). Unknown fields are stripped (clients send extras such as `user`
 * or vendor keys); a known field of the wrong type is a 400 naming the field.
 * `null` is accepted wherever a field is optional because many clients send `"stop": null`.
 */

/** An optional field that also takes `null`, read as absent. */
export const optional = <T extends z.ZodType>(schema: T) => schema.nullish().transform((value) => value ?? undefined).optional();

/**
 * A boolean, or the string "true"/"false": LM Studio takes both, and its own structured-output
 * example sends `"strict": "true"`. Any other string is still a 400.
 */
const flag = z.union([z.boolean(), z.enum(["true", "false"])], { error: "expected a boolean" }).transform((value) => value === true || value === "true");

/**
 * A sampling number, or a string of plain decimal digits ("0.7", "256") as clients that build
 * bodies from text settings send them. Messages, tools and ids stay strict.
 */
const numeric = (schema: z.ZodNumber) =>
  z.union([z.number(), z.string().regex(/^-?\d+(\.\d+)?$/, "expected a number")]).transform(Number).pipe(schema);

/** Choices per request: each is a generation of its own, so the count is kept small. */
export const MAX_CHOICES = 8;
const choiceCount = numeric(z.number().int().min(1).max(MAX_CHOICES, `n is at most ${MAX_CHOICES}; send several requests for more.`));

/**
 * Sanity bounds, so absurd numbers are a 400 here; the real limits (the model's trained context,
 * the node's memory) are the agent's, where loads run.
 */
const MAX_CONTEXT_LENGTH = 2 ** 24;
/** Most parallel slots (context sequences) one loaded model may have: a load's `parallel`, an agent's `--slots`, a node's claim. */
export const MAX_SLOTS_PER_MODEL = 64;
const MAX_TTL_SECONDS = 365 * 24 * 3600;
/** Seconds a model that a request loads stays loaded while idle. */
const Ttl = z.number().int().positive().max(MAX_TTL_SECONDS, `ttl is at most ${MAX_TTL_SECONDS} seconds (365 days)`);

const samplingFields = {
  model: z.string().min(1, "model is required"),
  max_tokens: optional(numeric(z.number().int().min(-1))),
  temperature: optional(numeric(z.number().min(0).max(2))),
  top_p: optional(numeric(z.number().min(0).max(1))),
  top_k: optional(numeric(z.number().int().min(0))),
  min_p: optional(numeric(z.number().min(0).max(1))),
  repeat_penalty: optional(numeric(z.number().min(0))),
  presence_penalty: optional(numeric(z.number().min(-2).max(2))),
  frequency_penalty: optional(numeric(z.number().min(-2).max(2))),
  seed: optional(numeric(z.number().int())),
  stop: optional(z.union([z.string(), z.array(z.string()).max(16)])),
  stream: optional(flag),
  stream_options: optional(z.object({ include_usage: optional(flag) })),
  logit_bias: optional(z.record(z.string(), z.number())),
  n: optional(choiceCount),
  ttl: optional(numeric(Ttl)),
  /** LM Studio's speculative decoding: a smaller model with this one's vocabulary drafts tokens that this one checks. */
  draft_model: optional(z.string().min(1, "draft_model must name a model")),
  /** lmgate's own: tokens are drafted from the prompt itself (prompt lookup), which pays off when the answer repeats it. */
  prompt_lookup: optional(flag),
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

/** A function's name, as chat templates and the tool-call parser take it. */
export const ToolName = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "function names are 1-64 letters, digits, _ or -");

/** Tools one request may offer the model. */
export const MAX_TOOLS = 128;

export const Tool = z.object({
  type: z.literal("function"),
  function: z.object({
    name: ToolName,
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
      strict: optional(flag),
    }),
  }),
]);
export type ResponseFormat = z.infer<typeof ResponseFormat>;

export const ChatRequest = z.object({
  ...samplingFields,
  messages: z.array(ChatMessage).min(1, "messages must not be empty"),
  max_completion_tokens: optional(numeric(z.number().int().min(-1))),
  response_format: optional(ResponseFormat),
  logprobs: optional(flag),
  /** OpenAI's bound; needs `logprobs: true`. */
  top_logprobs: optional(numeric(z.number().int().min(0).max(20))),
  tools: optional(z.array(Tool).max(MAX_TOOLS)),
  tool_choice: optional(ToolChoice),
});
export type ChatRequest = z.infer<typeof ChatRequest>;

export const CompletionRequest = z.object({
  ...samplingFields,
  prompt: z.union([z.string(), z.array(z.string()).length(1, "only one prompt per request is supported")]),
  /** The legacy API's form: log probabilities of each token and of this many alternatives (OpenAI's bound, 5). */
  logprobs: optional(numeric(z.number().int().min(0).max(5))),
});
export type CompletionRequest = z.infer<typeof CompletionRequest>;

export const EmbeddingsRequest = z.object({
  model: z.string().min(1, "model is required"),
  input: z.union([z.string(), z.array(z.string()).min(1, "input must not be empty").max(2048)]),
  /** `base64` is what the official openai client asks for by default. */
  encoding_format: optional(z.enum(["float", "base64"])),
  ttl: optional(Ttl),
});
export type EmbeddingsRequest = z.infer<typeof EmbeddingsRequest>;

export const LoadRequest = z.object({
  model: z.string().min(1, "model is required"),
  context_length: optional(z.number().int().min(16).max(MAX_CONTEXT_LENGTH)),
  /** Parallel slots (context sequences); LM Studio scripts send it as an extension. */
  parallel: optional(z.number().int().min(1).max(MAX_SLOTS_PER_MODEL)),
  ttl: optional(Ttl),
  echo_load_config: optional(flag),
  /** Gateway only: the node to load it on (else the fleet places it). */
  node: z.string().min(1).optional(),
});
export type LoadRequest = z.infer<typeof LoadRequest>;

export const UnloadRequest = z
  // `node` (gateway only) unloads it there alone, instead of from every node that has it loaded.
  .object({
    instance_id: optional(z.string().min(1)),
    model: optional(z.string().min(1)),
    node: z.string().min(1).optional(),
    // Gateway only, the deployment's own credentials only: unload at once, cutting the generations running on it.
    force: z.boolean().optional(),
  })
  .refine((body) => body.instance_id !== undefined || body.model !== undefined, {
    message: "instance_id is required",
    path: ["instance_id"],
  });
export type UnloadRequest = z.infer<typeof UnloadRequest>;
