import type { Operation, WireError } from "../../shared/protocol/frames.ts";
import type { GenerationEvent } from "../../shared/protocol/generation-events.ts";
import type { ModelObject } from "../../shared/protocol/model-schemas.ts";
import type { RequestOrigin } from "../fleet/access/caller.ts";
import type { GenerationOperation } from "../fleet/fleet-contract.ts";

/*
 * The contract of a node object (`NodeObject`, one per node name): what the Worker and the Fleet
 * call on it, and how a generation travels from it to the Worker. The data plane: every token of
 * a node's generations passes its node object, never the Fleet.
 */

/**
 * The Fleet's decision for one attempt of a generation: run it on this node. The Worker hands it
 * to the node's object, which relays the generation and reports its end to the Fleet once.
 */
export interface Lease {
  readonly id: string;
  /** Counts the request's dispatches: the Fleet ignores the end of an attempt it already moved. */
  readonly attempt: number;
  /** The node's name (its object's) and the connection the Fleet chose there. */
  readonly node: string;
  readonly conn: string;
  /** The operation as admitted: `max_tokens` capped to the key's budget. */
  readonly operation: GenerationOperation;
  readonly window: number;
  /** Whether the client reads the text as it comes (the node then sends the first delta at once). */
  readonly stream: boolean;
  readonly receivedAt: number;
  readonly queueMs: number;
  readonly retries: number;
  /** The model as the node reported it, to bound the usage it reports. */
  readonly model: ModelObject | undefined;
  /** Whose request it is (a key id), so its settlement counts even where the Fleet forgot it (evicted meanwhile). */
  readonly caller: string | null;
  /** The route it came through and its trace (the request log's; the trace also goes to the node). */
  readonly origin: RequestOrigin | null;
}

/** What a settlement says about the request itself, for a Fleet that no longer has it in memory. */
export interface SettledRequest {
  readonly op: Operation["op"];
  readonly model: string;
  readonly caller: string | null;
  readonly receivedAt: number;
  readonly origin: RequestOrigin | null;
  /** The node it was last sent to; null when it reached none. */
  readonly node: string | null;
  readonly queueMs: number;
  readonly retries: number;
}

export const settledFrom = (lease: Lease): SettledRequest => ({
  op: lease.operation.op,
  model: lease.operation.body.model,
  caller: lease.caller,
  receivedAt: lease.receivedAt,
  origin: lease.origin,
  node: lease.node,
  queueMs: lease.queueMs,
  retries: lease.retries,
});

/**
 * One line of a generation's byte stream (Workers RPC only carries byte streams): an event, or
 * the error that ends it. `retryable`: the node failed before any text (503, or its connection
 * lost), so the Worker asks the Fleet for another node. The node object validated every event.
 */
export type RelayLine = { event: GenerationEvent } | { error: WireError; retryable?: boolean };

const encoder = new TextEncoder();

export const encodeLines = (lines: RelayLine[]): Uint8Array => encoder.encode(lines.map((line) => `${JSON.stringify(line)}\n`).join(""));

/** Splits a byte stream into lines; a line may arrive split over chunks. */
export class LineDecoder {
  readonly #decoder = new TextDecoder();
  #rest = "";

  push(chunk: Uint8Array): RelayLine[] {
    const text = this.#rest + this.#decoder.decode(chunk, { stream: true });
    const parts = text.split("\n");
    this.#rest = parts.pop() ?? "";
    return parts.filter((part) => part !== "").map((part) => JSON.parse(part) as RelayLine);
  }
}

/** A one-shot call's answer from the node; `lost` when the node's connection is gone before it answered. */
export type CallAnswer = { ok: true; result: unknown } | { ok: false; error: WireError } | { lost: true };

export interface NodeApi {
  /** Relays one attempt of a generation: NDJSON `RelayLine`s. */
  relay(lease: Lease): Promise<ReadableStream<Uint8Array>>;
  /** The client went away: the node stops, and the request settles with what it spent. */
  cancel(id: string): Promise<void>;
  /** A one-shot call (embeddings, load, …) on the connection `conn`. */
  call(conn: string, id: string, operation: Operation): Promise<CallAnswer>;
  /** Closes the sockets that joined with this (revoked) node token. */
  disconnectToken(tokenId: string): Promise<void>;
  /** Whether this object still holds the node's socket of connection `conn` (a restart loses it). */
  holds(conn: string): Promise<boolean>;
}
