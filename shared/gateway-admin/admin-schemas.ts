import * as z from "zod";
import { GoodbyeReason, Hardware, ModelFootprint, NodeMemory, NodeName } from "../protocol/frames.ts";
import { ModelObject } from "../protocol/model-schemas.ts";
import { DownloadJob } from "../protocol/download-schemas.ts";

/** The admin API under `/admin/*` (admin token only): keys, node tokens, usage, live nodes. */

const ModelGlob = z.string().min(1).max(200).regex(/^[\w.@/*?:-]+$/, "model patterns use letters, digits, . _ - / @ : and * ? as wildcards");

/**
 * What a key may change on the nodes, beyond using models: `load` (load and unload), `download`,
 * `delete`. Each is granted explicitly; the admin token and LMGATE_API_KEY may do all of them.
 */
export const KeyAction = z.enum(["load", "download", "delete"]);
export type KeyAction = z.infer<typeof KeyAction>;

export const KeyScopes = z.object({
  /** Globs of model ids the key may use; null = every model. */
  models: z.array(ModelGlob).max(100).nullable(),
  /** Requests per minute; null = unlimited. */
  rpm: z.number().int().positive().nullable(),
  /** Prompt + completion tokens per UTC day; null = unlimited. */
  tokens_per_day: z.number().int().positive().nullable(),
  /** ISO 8601 instant after which the key stops working; null = never. */
  expires_at: z.iso.datetime().nullable(),
  /** Model management the key may do; none by default. */
  can: z.array(KeyAction).max(KeyAction.options.length),
});
export type KeyScopes = z.infer<typeof KeyScopes>;

export const CreateKeyRequest = KeyScopes.partial().extend({ name: z.string().min(1).max(100) });
export type CreateKeyRequest = z.infer<typeof CreateKeyRequest>;

export const UpdateKeyRequest = KeyScopes.partial().extend({ name: z.string().min(1).max(100).optional() });
export type UpdateKeyRequest = z.infer<typeof UpdateKeyRequest>;

/** What the gateway keeps of any credential (a key, a node token): never the secret, only a prefix to recognise it by, and its dates. */
const credentialFields = {
  prefix: z.string(),
  created_at: z.iso.datetime(),
  last_used_at: z.iso.datetime().nullable(),
  revoked_at: z.iso.datetime().nullable(),
};

export const KeyRecord = KeyScopes.extend({
  id: z.string(),
  name: z.string(),
  ...credentialFields,
});
export type KeyRecord = z.infer<typeof KeyRecord>;

/** The only response that ever carries a secret: the one that creates it. */
export const CreatedKey = z.object({ key: z.string(), record: KeyRecord });
export type CreatedKey = z.infer<typeof CreatedKey>;

export const CreateNodeTokenRequest = z.object({
  node: NodeName,
  /** Globs of the model ids the node may serve (advertise and be sent); absent or null = every model. */
  models: z.array(ModelGlob).max(100).nullable().optional(),
});
export type CreateNodeTokenRequest = z.infer<typeof CreateNodeTokenRequest>;

export const NodeTokenRecord = z.object({
  id: z.string(),
  node: z.string(),
  /** Globs of the model ids the node may serve; null = every model. */
  models: z.array(z.string()).nullable(),
  ...credentialFields,
});
export type NodeTokenRecord = z.infer<typeof NodeTokenRecord>;

export const CreatedNodeToken = z.object({ token: z.string(), record: NodeTokenRecord });
export type CreatedNodeToken = z.infer<typeof CreatedNodeToken>;

/** What one key keeps of stored responses (`store`, `previous_response_id`), against its share. */
export const StoredResponsesUsage = z.object({
  key_id: z.string(),
  count: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  max_count: z.number().int().positive(),
  max_bytes: z.number().int().positive(),
});
export type StoredResponsesUsage = z.infer<typeof StoredResponsesUsage>;

export const UsageQuery = z.object({
  key: z.string().optional(),
  model: z.string().optional(),
  /** Inclusive UTC days, YYYY-MM-DD. */
  from: z.iso.date().optional(),
  to: z.iso.date().optional(),
});
export type UsageQuery = z.infer<typeof UsageQuery>;

export const UsageRow = z.object({
  key_id: z.string(),
  key_name: z.string(),
  model: z.string(),
  day: z.iso.date(),
  requests: z.number().int().nonnegative(),
  prompt_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  errors: z.number().int().nonnegative(),
});
export type UsageRow = z.infer<typeof UsageRow>;

/** One try at waking a node: the peer that sent the magic packet, and how it ended. */
export const WakeAttempt = z.object({
  node: z.string(),
  peer: z.string(),
  mac: z.string(),
  broadcast: z.string(),
  sent_at: z.iso.datetime(),
  /** When the node said hello again; null while it is awaited, or when it did not come. */
  back_at: z.iso.datetime().nullable(),
  /** Why it failed (the node did not come back in time); null otherwise. */
  failure: z.string().nullable(),
  /** How long the gateway waits for the node, in seconds. */
  timeout_s: z.number().int().positive(),
});
export type WakeAttempt = z.infer<typeof WakeAttempt>;

/** A node's Wake-on-LAN, as the admin sees it. */
export const NodeWake = z.object({
  /** Its owner lets the fleet wake it (`--wake-on-lan`). */
  wakeable: z.boolean(),
  /** It sends magic packets for other nodes (`--wake-peers`). */
  wakes_peers: z.boolean(),
  /** The latest wake of this node since the gateway last started; absent: none. */
  last: WakeAttempt.optional(),
});
export type NodeWake = z.infer<typeof NodeWake>;

export const NodeSummary = z.object({
  id: z.string(),
  name: z.string(),
  online: z.boolean(),
  connected_at: z.iso.datetime(),
  last_heartbeat_at: z.iso.datetime().nullable(),
  runtime: z.object({ name: z.string(), version: z.string() }),
  hardware: Hardware,
  slots_per_model: z.number().int(),
  in_flight: z.number().int().nonnegative(),
  models: z.array(ModelObject),
  /** The node's download jobs, running and finished (online nodes whose agent downloads). */
  downloads: z.array(DownloadJob).optional(),
  /** As the node last reported; absent for nodes that do not report it. */
  memory: NodeMemory.optional(),
  footprints: z.record(z.string(), ModelFootprint).optional(),
  /** Absent for nodes whose agent reports no Wake-on-LAN. */
  wake: NodeWake.optional(),
  /**
   * Offline nodes only: the goodbye it said going (`shutdown`: its agent stopped; `sleep`: its
   * machine suspended), or null when its connection was lost without one (a crash, the network, a
   * machine that suspended without a word).
   */
  left: GoodbyeReason.nullable().optional(),
});
export type NodeSummary = z.infer<typeof NodeSummary>;

export const ListOf = <T extends z.ZodType>(item: T) => z.object({ data: z.array(item) });

/** One bucket of fleet traffic, for the dashboard's charts. */
export const StatsBucket = z.object({
  /** Unix seconds at the start of the bucket. */
  t: z.number().int(),
  requests: z.number().int().nonnegative(),
  errors: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  /** Completion tokens per second over the bucket, across the fleet. */
  tokens_per_second: z.number().nonnegative(),
  /** Median time to first token of the bucket's requests, in ms; null without requests. */
  ttft_ms_p50: z.number().nonnegative().nullable(),
});
export type StatsBucket = z.infer<typeof StatsBucket>;

/** `GET /admin/stats`: the fleet now, plus the last 15 minutes in 10-second buckets, oldest first. */
export const FleetStats = z.object({
  at: z.iso.datetime(),
  nodes_online: z.number().int().nonnegative(),
  nodes_total: z.number().int().nonnegative(),
  in_flight: z.number().int().nonnegative(),
  queue_depth: z.number().int().nonnegative(),
  bucket_seconds: z.number().int().positive(),
  series: z.array(StatsBucket),
});
export type FleetStats = z.infer<typeof FleetStats>;
