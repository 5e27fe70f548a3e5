import type { NodeStatus } from "../../shared/protocol/frames.ts";

/**
 * The v1 model listing is the largest part of a status and changes rarely, while a running
 * download changes the status every few hundred milliseconds: on one connection, a status carries
 * `v1_models` only when it differs from the last one sent. The gateway keeps the last listing it
 * got when a status has none (an agent that sent one takes model management for the connection).
 */
export class StatusDelta {
  #lastListing: string | undefined;

  /** The status to send: `status` without `v1_models` when the gateway already has the same listing. */
  next(status: NodeStatus): NodeStatus {
    if (status.v1_models === undefined) return status;
    const listing = JSON.stringify(status.v1_models);
    if (listing === this.#lastListing) {
      const { v1_models: _unchanged, ...rest } = status;
      return rest;
    }
    this.#lastListing = listing;
    return status;
  }
}
