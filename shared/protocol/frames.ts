import * as z from "zod";
import { ApiError, ErrorBody } from "./api-error.ts";
import { ChatRequest, CompletionRequest, EmbeddingsRequest, LoadRequest, MAX_SLOTS_PER_MODEL, UnloadRequest } from "./request-schemas.ts";
import { LoadResult, ModelObject, UnloadResult } from "./model-schemas.ts";
import { EmbeddingsResult, GenerationEvent } from "./generation-events.ts";
import { DeleteRequest, DeleteResult, DownloadJob, DownloadRequest } from "./download-schemas.ts";
import { CancelDownloadRequest, V1Model } from "./v1-model-schemas.ts";
import { TokenCount } from "./token-count.ts";
import { TRACEPARENT } from "./trace-context.ts";

/**
 * The wire protocol between a node agent and the gateway: JSON text frames over one WebSocket
 * that the agent dials out. Gateway and agent share only this module (and the API schemas).
 * Bump PROTOCOL_VERSION on any incompatible change; the gateway refuses other versions.
 */
export const PROTOCOL_VERSION = 2;

/**
 * The header an agent dials with, naming itself (protocol 2): the gateway ends each node's socket
 * in that node's own object, so it must know the name before the socket exists. Its `hello` must
 * say the same name. An agent without it speaks an older protocol and is told to upgrade.
 */
export const NODE_NAME_HEADER = "x-lmgate-node";

/** How long an agent gives its engine, after a `cancel`, to stop and report what it spent. */
export const CANCEL_USAGE_WAIT_MS = 2_000;

/** Text frames answered by the Durable Object's auto-response, without waking it. */
export const HEARTBEAT_PING = "ping";
export const HEARTBEAT_PONG = "pong";

/**
 * Close codes the gateway uses, so an agent can log why it was dropped. 1008 is the standard
 * "policy violation" (a frame that is not valid protocol); the 4xxx codes are lmgate's own.
 */
export const CLOSE_CODES = {
  badFrame: 1008,
  heartbeatTimeout: 4000,
  unsupportedProtocol: 4001,
  replaced: 4002,
  helloTimeout: 4003,
  revoked: 4004,
  /** The node token was made for another node name. */
  nameNotAllowed: 4005,
} as const;

/** A node's name: what admins see in listings, so plain characters only (no terminal escapes). */
export const NodeName = z.string().min(1).max(64).regex(/^[\w.-]+$/, "may use letters, digits, '.', '_' and '-'");

/** One LAN interface a magic packet can wake the node through: its MAC and its network's IPv4 broadcast address. */
export const WakeInterface = z.object({
  mac: z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/, "a MAC address in lower case, colon-separated"),
  broadcast: z.ipv4(),
});
export type WakeInterface = z.infer<typeof WakeInterface>;

/** Wake-on-LAN, as the node's owner allows it: how to wake this node, and whether it wakes others. */
export const WakeInfo = z.object({
  /** The node's LAN interfaces: which networks it is on, and the MACs to wake it by. */
  interfaces: z.array(WakeInterface).max(16),
  /** The owner lets the fleet wake this node (`--wake-on-lan`). */
  wakeable: z.boolean(),
  /** The node sends magic packets for other nodes on its networks (`--wake-peers`). */
  wakes_peers: z.boolean(),
});
export type WakeInfo = z.infer<typeof WakeInfo>;

/** What a peer sent for a `wake` operation. */
export const WakeResult = z.object({ mac: z.string(), broadcast: z.string(), ports: z.array(z.number().int()), sent_at: z.number() });
export type WakeResult = z.infer<typeof WakeResult>;

export const Hardware = z.object({
  cpu: z.string(),
  cores: z.number().int().positive(),
  memory_bytes: z.number().nonnegative(),
  gpu: z.string().nullable(),
  gpu_devices: z.array(z.string()),
  vram_bytes: z.number().nonnegative().nullable(),
});
export type Hardware = z.infer<typeof Hardware>;

/** Memory free on the node for models to load into; null VRAM = no GPU in use. */
export const NodeMemory = z.object({
  ram_free_bytes: z.number().nonnegative(),
  vram_free_bytes: z.number().nonnegative().nullable(),
});
export type NodeMemory = z.infer<typeof NodeMemory>;

/** What loading a model takes on the node (weights, context and its slots), as the node estimates it. */
export const ModelFootprint = z.object({ ram_bytes: z.number().nonnegative(), vram_bytes: z.number().nonnegative() });
export type ModelFootprint = z.infer<typeof ModelFootprint>;

export const NodeStatus = z.object({
  models: z.array(ModelObject),
  /** Slots busy per loaded model id. */
  busy: z.record(z.string(), z.number().int().nonnegative()),
  /** Recent measured speed per model id. */
  speed: z.record(z.string(), z.object({ tokens_per_second: z.number(), time_to_first_token: z.number() })),
  /**
   * LM Studio's v1 entries of the same models. Optional: an agent that sends them also takes the
   * `download`, `cancel_download` and `delete` operations; the gateway sends those to no other.
   */
  v1_models: z.array(V1Model).optional(),
  /** The node's download jobs, running and finished. */
  downloads: z.array(DownloadJob).optional(),
  /** Free memory, so the gateway places models only where they fit. Optional: older agents omit it. */
  memory: NodeMemory.optional(),
  /** Per model id the node holds. Optional, like `memory`. */
  footprints: z.record(z.string(), ModelFootprint).optional(),
  /** True from an agent that takes the `count_tokens` operation; the gateway sends it to no other. */
  counts_tokens: z.boolean().optional(),
});
export type NodeStatus = z.infer<typeof NodeStatus>;

/**
 * An `ApiError` as it crosses a boundary: from an agent in an `error` frame, and from the Fleet
 * object to the Worker in an outcome or a generation's last line. `toWire` and `fromWire` are its
 * only encoder and decoder.
 */
export const WireError = z.object({
  // Goes to the client as the HTTP status: anything but an error status (200, 1xx, 600…) is the sender's fault.
  status: z.number().int().transform((status) => (status >= 400 && status <= 599 ? status : 502)),
  body: ErrorBody,
  retry_after: z.number().optional(),
});
export type WireError = z.infer<typeof WireError>;

export const toWire = (error: ApiError): WireError => ({
  status: error.status,
  body: error.toBody(),
  ...(error.retryAfter !== undefined ? { retry_after: error.retryAfter } : {}),
});

export const fromWire = (error: WireError): ApiError => ApiError.fromBody(error.status, error.body, error.retry_after);

const Operation = z.discriminatedUnion("op", [
  z.object({ op: z.literal("chat"), body: ChatRequest }),
  z.object({ op: z.literal("completion"), body: CompletionRequest }),
  z.object({ op: z.literal("embeddings"), body: EmbeddingsRequest }),
  z.object({ op: z.literal("load"), body: LoadRequest }),
  z.object({ op: z.literal("unload"), body: UnloadRequest }),
  z.object({ op: z.literal("download"), body: DownloadRequest }),
  z.object({ op: z.literal("cancel_download"), body: CancelDownloadRequest }),
  z.object({ op: z.literal("delete"), body: DeleteRequest }),
  z.object({ op: z.literal("count_tokens"), body: ChatRequest }),
  /** Send a magic packet to another node of the fleet (only to an agent whose hello has `wake.wakes_peers`). */
  z.object({ op: z.literal("wake"), body: WakeInterface }),
]);
export type Operation = z.infer<typeof Operation>;

/** Frames the agent receives. */
export const ToAgentFrame = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("request"),
    id: z.string(),
    operation: Operation,
    /**
     * Flow control for `events`: at most this many frames of this request may be unacknowledged;
     * the agent stops pulling from its engine until an `ack` arrives. Absent = no limit.
     */
    window: z.number().int().positive().optional(),
    /**
     * Chat and completion: whether the client reads the text as it comes, so the agent sends the
     * first delta at once rather than batching from the start. Absent (older gateways): the body's `stream`.
     */
    stream: z.boolean().optional(),
    /** The W3C trace context the request runs in, for the agent's spans. Absent from older gateways. */
    traceparent: z.string().regex(TRACEPARENT).optional(),
  }),
  /**
   * The client went away: the agent stops the generation and, within `CANCEL_USAGE_WAIT_MS`,
   * sends its final `done` alone in an `events` frame, so the tokens it spent are counted.
   */
  z.object({ type: z.literal("cancel"), id: z.string() }),
  /** The gateway has passed on `frames` more `events` frames of this request to its client. */
  z.object({ type: z.literal("ack"), id: z.string(), frames: z.number().int().positive() }),
  z.object({
    type: z.literal("welcome"),
    node_id: z.string(),
    /** How often the gateway wants `HEARTBEAT_PING`; it drops nodes silent for a few of these. */
    heartbeat_interval_ms: z.number().int().positive().optional(),
  }),
]);
export type ToAgentFrame = z.infer<typeof ToAgentFrame>;

/** Generation events of one request, coalesced: the first delta goes alone, later ones in batches. */
export const EventsFrame = z.object({ type: z.literal("events"), id: z.string(), events: z.array(GenerationEvent).min(1) });
export type EventsFrame = z.infer<typeof EventsFrame>;

/** Most `events` frames one `batch` carries: an agent's running generations, with room to spare. */
export const MAX_BATCH_FRAMES = 1_024;

/**
 * Why an agent went away on purpose: `shutdown` when it stops (lmgate-agent says this on Ctrl+C or
 * a service stop); `sleep` when an agent knows its machine is about to suspend (lmgate-agent does
 * not: it is frozen with its machine, and the gateway finds it gone at the heartbeat timeout).
 */
export const GoodbyeReason = z.enum(["shutdown", "sleep"]);
export type GoodbyeReason = z.infer<typeof GoodbyeReason>;

/** Frames the gateway receives. */
export const ToGatewayFrame = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("hello"),
    protocol: z.number().int(),
    node: z.object({
      name: NodeName,
      agent_version: z.string(),
      runtime: z.object({ name: z.string(), version: z.string(), supported_formats: z.array(z.string()) }),
      hardware: Hardware,
      /** Bounded by the protocol; the gateway believes fewer until the node has run them (fleet/routing/node-claims.ts). */
      slots_per_model: z.number().int().positive().max(MAX_SLOTS_PER_MODEL),
      /** What the agent serves beyond plain generations (generation-features.ts); absent: none of it. */
      generation_features: z.array(z.string()).optional(),
      /** Absent: the node neither can be woken nor wakes others (older agents, or the owner's choice). */
      wake: WakeInfo.optional(),
    }),
    status: NodeStatus,
  }),
  z.object({ type: z.literal("status"), status: NodeStatus }),
  EventsFrame,
  /**
   * Protocol 2: the `events` frames of all the agent's running generations that are ready at one
   * flush, in one WebSocket message. Each counts as one frame of its request for flow control.
   */
  z.object({ type: z.literal("batch"), frames: z.array(EventsFrame).min(1).max(MAX_BATCH_FRAMES) }),
  /** The agent is going away on purpose (`GoodbyeReason`). Sent just before it closes the socket. */
  z.object({ type: z.literal("goodbye"), reason: GoodbyeReason }),
  z.object({
    type: z.literal("result"),
    id: z.string(),
    result: z.union([EmbeddingsResult, LoadResult, UnloadResult, DownloadJob, DeleteResult, TokenCount, WakeResult]),
  }),
  z.object({ type: z.literal("error"), id: z.string(), ...WireError.shape }),
]);
export type ToGatewayFrame = z.infer<typeof ToGatewayFrame>;

/** Returns the frame, or null for anything that is not a valid frame of this protocol. */
export function parseFrame<T extends z.ZodType>(schema: T, raw: string | ArrayBuffer): z.infer<T> | null {
  const text = typeof raw === "string" ? raw : new TextDecoder().decode(raw);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const parsed = schema.safeParse(value);
  return parsed.success ? parsed.data : null;
}
