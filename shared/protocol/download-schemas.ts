import * as z from "zod";

const optional = <T extends z.ZodType>(schema: T) => schema.nullish().transform((value) => value ?? undefined);

/**
 * LM Studio's `POST /api/v1/models/download`: `model` is a Hugging Face repo id
 * (`publisher/repo`), a Hugging Face URL, or a direct `https://…/file.gguf` URL; `quantization`
 * (`Q4_K_M`) picks the file of a repo. `node` is the gateway's extension: which node downloads.
 */
export const DownloadRequest = z.object({
  model: z.string().min(1, "model is required"),
  quantization: optional(z.string().min(1).max(32)),
  node: optional(z.string().min(1)),
});
export type DownloadRequest = z.infer<typeof DownloadRequest>;

export const DownloadStatus = z.enum(["downloading", "paused", "completed", "failed", "cancelled", "already_downloaded"]);
export type DownloadStatus = z.infer<typeof DownloadStatus>;

/** A download job as LM Studio reports it (download and status responses), plus where it runs and why it failed. */
export const DownloadJob = z.object({
  job_id: z.string().optional(),
  status: DownloadStatus,
  total_size_bytes: z.number().int().nonnegative(),
  downloaded_bytes: z.number().int().nonnegative(),
  bytes_per_second: z.number().nonnegative().optional(),
  /** ISO 8601, while downloading at a known speed. */
  estimated_completion: z.string().optional(),
  started_at: z.string(),
  completed_at: z.string().optional(),
  /** What is downloading: the first file's place in the models folder (`publisher/repo/file.gguf`). */
  model: z.string().optional(),
  /** The model key the files become once complete. */
  model_key: z.string().optional(),
  /** Why the job failed. */
  error: z.string().optional(),
  /** Gateway only: the node that downloads. */
  node: z.string().optional(),
});
export type DownloadJob = z.infer<typeof DownloadJob>;

export const DeleteRequest = z.object({
  model: z.string().min(1, "model is required"),
  /** Unloads the model first instead of refusing while it is loaded. */
  force: optional(z.boolean()),
  node: optional(z.string().min(1)),
});
export type DeleteRequest = z.infer<typeof DeleteRequest>;

export const DeleteResult = z.object({
  model: z.string(),
  deleted: z.literal(true),
  /** Files removed, relative to the models folder. */
  files: z.array(z.string()),
  node: z.string().optional(),
});
export type DeleteResult = z.infer<typeof DeleteResult>;
