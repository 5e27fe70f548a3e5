import * as z from "zod";

export const ModelType = z.enum(["llm", "vlm", "embeddings"]);
export type ModelType = z.infer<typeof ModelType>;

export const ModelState = z.enum(["loaded", "not-loaded"]);
export type ModelState = z.infer<typeof ModelState>;

/** Where a model lives in the fleet: the gateway's extension to LM Studio's model object. */
export const ModelNodeInfo = z.object({
  node: z.string(),
  state: ModelState,
  slots: z.number().int().nonnegative(),
  slots_busy: z.number().int().nonnegative(),
  tokens_per_second: z.number().nullable(),
  time_to_first_token: z.number().nullable(),
});
export type ModelNodeInfo = z.infer<typeof ModelNodeInfo>;

/** LM Studio's `/api/v0/models` object. */
export const ModelObject = z.object({
  id: z.string(),
  object: z.literal("model"),
  type: ModelType,
  publisher: z.string(),
  arch: z.string(),
  compatibility_type: z.literal("gguf"),
  quantization: z.string(),
  state: ModelState,
  max_context_length: z.number().int().positive(),
  loaded_context_length: z.number().int().positive().optional(),
  capabilities: z.array(z.string()).optional(),
  nodes: z.array(ModelNodeInfo).optional(),
});
export type ModelObject = z.infer<typeof ModelObject>;

export const ModelList = z.object({ object: z.literal("list"), data: z.array(ModelObject) });

/** OpenAI's `/v1/models` object, plus `context_length`, which users ask for. */
export const OpenAIModelObject = z.object({
  id: z.string(),
  object: z.literal("model"),
  created: z.number().int(),
  owned_by: z.string(),
  context_length: z.number().int().positive(),
});
export type OpenAIModelObject = z.infer<typeof OpenAIModelObject>;

export const LoadResult = z.object({
  type: z.enum(["llm", "embedding"]),
  instance_id: z.string(),
  load_time_seconds: z.number().nonnegative(),
  status: z.literal("loaded"),
  load_config: z.object({ context_length: z.number().int().positive(), parallel: z.number().int().positive() }).optional(),
});
export type LoadResult = z.infer<typeof LoadResult>;

/** What a gateway's unload waited for: the generations running on the model, let finish (bounded) unless forced. */
export const UnloadDrain = z.object({
  /** Generations running on the model when the unload came. */
  generations: z.number().int().nonnegative(),
  waited_seconds: z.number().nonnegative(),
  /** Generations still running when the wait ran out (or `force` was set): cut by the unload. */
  cut: z.number().int().nonnegative(),
});
export type UnloadDrain = z.infer<typeof UnloadDrain>;

export const UnloadResult = z.object({ instance_id: z.string(), drained: UnloadDrain.optional() });
export type UnloadResult = z.infer<typeof UnloadResult>;
