import { pendingLimit, tokenTag } from "../../node/node-admission.ts";
import type { ApiError } from "../../../shared/protocol/api-error.ts";

interface Dial {
  /** The token's tag and the client's address: what the bound is counted by. */
  by: string;
  at: number;
}

/**
 * Agents' sockets that have not said hello yet, fleet-wide, by token and client address. Each node
 * object bounds those it holds (`pendingLimit`), but a token can dial as any number of names, each
 * a node object of its own: here the same bound holds across every name one token dials from one
 * address. A dial ends when its node joins or its socket closes (its node object says so); one
 * whose end was never heard of lapses once its object's hello sweep must have closed it.
 * In the Fleet's memory: a Fleet restart forgets dials whose sockets its node objects still hold,
 * for at most that long.
 */
export class PendingDials {
  readonly #dials = new Map<string, Dial>();
  readonly #lapseMs: number;

  constructor(lapseMs: number) {
    this.#lapseMs = lapseMs;
  }

  /** A new dial's id, or the 429 when this token already has as many pending from this address as it may. */
  open(tokenId: string | undefined, address: string, now: number): string | ApiError {
    for (const [id, dial] of this.#dials) if (now - dial.at > this.#lapseMs) this.#dials.delete(id);
    const by = `${tokenTag(tokenId)} ${address}`;
    const pending = [...this.#dials.values()].filter((dial) => dial.by === by).length;
    const refusal = pendingLimit(tokenId, pending);
    if (refusal !== null) return refusal;
    const id = crypto.randomUUID();
    this.#dials.set(id, { by, at: now });
    return id;
  }

  ended(id: string): void {
    this.#dials.delete(id);
  }
}
