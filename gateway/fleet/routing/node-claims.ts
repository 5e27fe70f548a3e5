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
