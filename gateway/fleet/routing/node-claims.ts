import type { WireError } from "../../../shared/protocol/frames.ts";
import type { FleetNode } from "../nodes/fleet-node.ts";

/**
 * What the fleet takes from a node's word, bounded. A node could otherwise claim any speed and
 * draw every request (and every prompt) to itself, or tell clients to come back in a year.
 */

/** The longest wait (Retry-After, seconds) a node's error may ask of a client: the fleet's own waits are seconds. */
const MAX_NODE_RETRY_AFTER_S = 30;

/** A node's error, its `retry_after` cut to what the fleet would ever ask of a client itself. */
export function boundedNodeError(error: WireError): WireError {
  if (error.retry_after === undefined) return error;
  return { ...error, retry_after: Math.min(MAX_NODE_RETRY_AFTER_S, Math.max(0, error.retry_after)) };
}

/**
 * Slots a node is believed to have before it has run more at once: the agent's default `--slots`,
 * so an honest node's first burst is served as it would be were it believed.
 */
const UNPROVEN_SLOTS = 4;

/**
 * The slots routing counts for a node: its claim, but at most twice the most requests it has been
 * seen to run at once (and never fewer than UNPROVEN_SLOTS). Routing ranks by busy/slots first, so
 * a believed claim of 64 would draw nearly every concurrent request (and its prompt) to one node;
 * a node earns its slots by holding that many and finishing them, and so grows in a few bursts to
 * what it really runs.
 */
export function believedSlots(node: FleetNode): number {
  return Math.min(node.info.slots_per_model, Math.max(UNPROVEN_SLOTS, 2 * node.provenSlots));
}

/**
 * A generation of `model` finished well on `node`: the requests the gateway had running there for
 * that model at that moment (its own count, not the node's) is concurrency the node has shown.
 */
export function recordProvenSlots(node: FleetNode, model: string): void {
  node.provenSlots = Math.max(node.provenSlots, node.inFlight.get(model) ?? 0);
}

/** Generations shorter than this say little about decode speed (a first token, a batch boundary). */
const MIN_MEASURED_TOKENS = 16;
/** Weight of the newest generation in the running average. */
const SMOOTHING = 0.3;

/**
 * The speed routing ranks nodes by is the one the gateway measured itself, as the client sees it:
 * completion tokens from the first one relayed to the last. A node's own `speed` claims are shown
 * in listings but never rank it; before its first long generation a node has no speed (ties then
 * go round-robin).
 */
export function recordMeasuredSpeed(node: FleetNode, model: string, completionTokens: number, firstTokenAt: number | null, now: number): void {
  if (firstTokenAt === null || completionTokens < MIN_MEASURED_TOKENS || now <= firstTokenAt) return;
  const speed = (completionTokens - 1) / ((now - firstTokenAt) / 1000);
  const previous = node.measuredSpeed.get(model);
  node.measuredSpeed.set(model, previous === undefined ? speed : previous + SMOOTHING * (speed - previous));
}
