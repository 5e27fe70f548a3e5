import * as z from "zod";
import { KeyAction, UsageRow } from "./admin-schemas.ts";
import { ModelObject } from "../protocol/model-schemas.ts";
import { RequestRow } from "./request-log-schemas.ts";

/**
 * `GET /v1/key`: what the calling key may see of itself (OpenRouter's `GET /api/v1/key`): its
 * scopes, what is left of its limits, its usage and recent requests, and the models it may use.
 * Nothing of other keys, and no secret.
 */

const Limit = z.object({
  limit: z.number().int().positive(),
  used: z.number().int().nonnegative(),
  remaining: z.number().int().nonnegative(),
  /** When `remaining` is back to `limit` at the latest (ISO 8601). */
  resets_at: z.iso.datetime(),
});

export const KeyView = z.object({
  /** `root` for the deployment's own key (LMGATE_API_KEY) and the admin token. */
  id: z.string(),
  name: z.string(),
  /** The start of the key, to recognise it by; empty for the deployment's own key. */
  prefix: z.string(),
  /** Globs of model ids the key may use; null = every model. */
  models: z.array(z.string()).nullable(),
  can: z.array(KeyAction),
  created_at: z.iso.datetime().nullable(),
  expires_at: z.iso.datetime().nullable(),
  limits: z.object({
    /** Requests in the last minute; null = unlimited. */
    requests_per_minute: Limit.nullable(),
    /** Prompt + completion tokens of the current UTC day; null = unlimited. */
    tokens_per_day: Limit.nullable(),
  }),
  /** Usage per model and UTC day, the last 30 days. */
  usage: z.array(UsageRow),
  /** The key's most recent requests, newest first. */
  requests: z.array(RequestRow),
  /** The models the key may use now, with the nodes serving them. */
  available_models: z.array(ModelObject),
});
export type KeyView = z.infer<typeof KeyView>;
