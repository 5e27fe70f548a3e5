import * as z from "zod";

/**
 * The request log (`GET /admin/requests`, a key's own rows in `GET /v1/key`): one row per finished
 * request, however it ended. Never the prompt or the answer: only who, where, how it ended and how fast.
 */

export const RequestRow = z.object({
  /** Increases with each row: the cursor for paging (`before`) and following (`after`). */
  seq: z.number().int().positive(),
  id: z.string(),
  /** When the request arrived (ISO 8601). */
  at: z.iso.datetime(),
  /** The API key's id (`root` for LMGATE_API_KEY and the admin token); null when the key was not recognised. */
  key_id: z.string().nullable(),
  key_name: z.string().nullable(),
  /** The API family of the route: openai, anthropic, lmstudio. */
  family: z.string().nullable(),
  /** Method and path pattern, e.g. `POST /v1/chat/completions`. */
  route: z.string().nullable(),
  /** The operation the fleet ran: chat, completion, embeddings, load, … */
  op: z.string(),
  model: z.string(),
  /** The node that last served or tried it; null when it reached none. */
  node: z.string().nullable(),
  /** The HTTP status it ended with; 499 when the client went away first. */
  status: z.number().int(),
  error_code: z.string().nullable(),
  prompt_tokens: z.number().int().nonnegative(),
  cached_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  queue_ms: z.number().int().nonnegative(),
  /** The node's own time to first token. */
  ttft_ms: z.number().nonnegative().nullable(),
  duration_ms: z.number().int().nonnegative(),
  tokens_per_second: z.number().nonnegative().nullable(),
  /** Times the request moved to another node after its node failed it. */
  retries: z.number().int().nonnegative(),
  traceparent: z.string().nullable(),
});
export type RequestRow = z.infer<typeof RequestRow>;

const Cursor = z.coerce.number().int().positive();

export const RequestQuery = z.object({
  key: z.string().optional(),
  model: z.string().optional(),
  node: z.string().optional(),
  /** An exact status (`429`) or a class (`4xx`, `5xx`). */
  status: z
    .string()
    .regex(/^(\d{3}|[1-5]xx)$/, "status is a code like 429, or a class like 4xx")
    .optional(),
  /** Rows of requests that arrived at or after this instant. */
  since: z.iso.datetime().optional(),
  /** Rows older than this `seq`: the next page. */
  before: Cursor.optional(),
  /** Rows newer than this `seq`, oldest first: what `--follow` asks. */
  after: Cursor.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
});
export type RequestQuery = z.infer<typeof RequestQuery>;

/** A page of rows, newest first (oldest first with `after`); `next` is the `before` of the following page. */
export const RequestPage = z.object({ data: z.array(RequestRow), next: z.number().int().positive().nullable() });
export type RequestPage = z.infer<typeof RequestPage>;
