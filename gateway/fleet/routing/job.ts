import { WakeResult, type Operation } from "../../../shared/protocol/frames.ts";
import { DeleteResult, DownloadJob } from "../../../shared/protocol/download-schemas.ts";
import { EmbeddingsResult } from "../../../shared/protocol/generation-events.ts";
import { LoadResult, UnloadResult } from "../../../shared/protocol/model-schemas.ts";
import { TokenCount } from "../../../shared/protocol/token-count.ts";
import type * as z from "zod";
import type { RequestOrigin } from "../access/caller.ts";
import type { CallOperation, GenerationOperation, Outcome } from "../fleet-contract.ts";
import type { FleetNode } from "../nodes/fleet-node.ts";
import { PromptAffinity } from "./prompt-affinity.ts";
import type { Lease } from "../../node/node-contract.ts";

/** What a node answers each call with, checked on arrival. */
export const RESULT_SCHEMAS = {
  embeddings: EmbeddingsResult,
  load: LoadResult,
  unload: UnloadResult,
  download: DownloadJob,
  cancel_download: DownloadJob,
  delete: DeleteResult,
  count_tokens: TokenCount,
  wake: WakeResult,
} as const satisfies Record<CallOperation["op"], unknown>;

/** The result of each call, as its caller gets it. */
export type CallResults = { [Op in CallOperation["op"]]: z.infer<(typeof RESULT_SCHEMAS)[Op]> };
export type CallResult = CallResults[CallOperation["op"]];

/** A request in the fleet, from its arrival to its end: queued, on a node, or moved to another. */
export interface JobBase {
  readonly id: string;
  readonly caller: string | null;
  readonly operation: Operation;
  readonly model: string;
  readonly receivedAt: number;
  /** The route it came through and its trace, when the Worker said. */
  readonly origin: RequestOrigin | null;
  /** Connections that failed this request; it is not sent to them again. */
  readonly excluded: Set<string>;
  /** A call that must run on this node and nowhere else (unload). */
  readonly pinned: FleetNode | null;
  /** A chat's `PromptAffinity` keys; empty for other operations. */
  readonly prefixKeys: string[];
  node: FleetNode | null;
  /** The name of the node it was last sent to, kept after it leaves the node: the request log's. */
  lastNode: string | null;
  /** Counts dispatches, so credit for frames of an abandoned attempt is not granted to the next node. */
  attempt: number;
  retries: number;
  /** Time spent waiting for a slot, all waits together (`WaitQueue`). */
  queueMs: number;
}

/**
 * A generation: the Fleet places it and hears how it ended; its tokens flow through its node's
 * object, never here. `grant` answers the Worker's pending `admit` (or `retry`) once placed or failed.
 */
export interface GenerationJob extends JobBase {
  readonly kind: "generation";
  readonly operation: GenerationOperation;
  grant: ((outcome: Outcome<Lease>) => void) | null;
  /** Cancelled on its node: settles when the node object reports what it spent, or, past the wait, without. */
  cancelTimer: ReturnType<typeof setTimeout> | null;
}

export interface CallJob extends JobBase {
  readonly kind: "call";
  readonly operation: CallOperation;
  // A method, so `call` can hand in the resolver of its narrower outcome: every result it settles
  // with passed `RESULT_SCHEMAS` for the job's own operation.
  settle(outcome: Outcome<CallResult>): void;
}

export type Job = GenerationJob | CallJob;

/** A job's common part, as it arrives: not yet routed, tried or queued. */
export function newJob(operation: Operation, pinned: FleetNode | null, caller: string | null, origin: RequestOrigin | null = null): JobBase {
  return {
    id: crypto.randomUUID(),
    caller,
    operation,
    model: modelOf(operation),
    receivedAt: Date.now(),
    origin,
    excluded: new Set(),
    pinned,
    prefixKeys: operation.op === "chat" ? PromptAffinity.keys(operation.body.model, operation.body.messages) : [],
    node: null,
    lastNode: null,
    attempt: 0,
    retries: 0,
    queueMs: 0,
  };
}

function modelOf(operation: Operation): string {
  if (operation.op === "unload") return operation.body.instance_id ?? operation.body.model ?? "";
  if (operation.op === "cancel_download" || operation.op === "wake") return "";
  return operation.body.model;
}
