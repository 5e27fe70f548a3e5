import * as z from "zod";

/** One loaded copy of a model, as LM Studio's `loaded_instances[]` lists it. */
export const V1LoadedInstance = z.object({
  id: z.string(),
  config: z.object({
    context_length: z.number().int().positive(),
    parallel: z.number().int().positive().optional(),
  }),
  /** Gateway only: the node it is loaded on. */
  node: z.string().optional(),
});
export type V1LoadedInstance = z.infer<typeof V1LoadedInstance>;

/** lmgate: how a node drafts for the model when a request does not say (its owner's per-model setting). */
export const ModelSpeculation = z.object({
  /** Speculative decoding with this draft model. */
  draft_model: z.string().optional(),
  /** Drafts from the prompt itself (prompt lookup). */
  prompt_lookup: z.literal(true).optional(),
});
export type ModelSpeculation = z.infer<typeof ModelSpeculation>;

/** Gateway only: a node that holds the model, and its instances there. */
export const V1ModelNode = z.object({ node: z.string(), loaded_instances: z.array(V1LoadedInstance) });
export type V1ModelNode = z.infer<typeof V1ModelNode>;

/** LM Studio 0.4's `GET /api/v1/models` entry. */
export const V1Model = z.object({
  type: z.enum(["llm", "embedding"]),
  publisher: z.string(),
  key: z.string(),
  display_name: z.string(),
  /** LM Studio leaves it out for embedding models. */
  architecture: z.string().nullable().optional(),
  quantization: z.object({ name: z.string().nullable(), bits_per_weight: z.number().nullable() }),
  size_bytes: z.number().int().nonnegative(),
  params_string: z.string().nullable(),
  loaded_instances: z.array(V1LoadedInstance),
  max_context_length: z.number().int().positive(),
  format: z.enum(["gguf", "mlx"]).nullable(),
  /** LLMs only. */
  capabilities: z.object({ vision: z.boolean(), trained_for_tool_use: z.boolean() }).optional(),
  description: z.string().nullable().optional(),
  speculative: ModelSpeculation.optional(),
  nodes: z.array(V1ModelNode).optional(),
});
export type V1Model = z.infer<typeof V1Model>;

export const V1ModelList = z.object({ models: z.array(V1Model) });

export const CancelDownloadRequest = z.object({ job_id: z.string().min(1, "job_id is required") });
