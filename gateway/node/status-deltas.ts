import type { NodeStatus } from "../../shared/protocol/frames.ts";

/** The parts of a node's status that changed since the Fleet last heard; a slot change is `busy` alone. */
export type StatusDelta = Partial<NodeStatus>;

/**
 * A node's status as the Fleet hears it: only what changed (a slot going busy or free is one small
 * `busy` field, the catalog only when it changed), and coalesced: while one report is on its way,
 * later changes merge into the next, so a busy node costs the Fleet at most one call at a time.
 */
export class StatusDeltas {
  readonly #report: (conn: string, delta: StatusDelta) => Promise<void>;
  /** The status the Fleet has (or will have once the report in flight lands), per field's JSON. */
  #known = new Map<keyof NodeStatus, string>();
  #conn: string | null = null;
  #pending: StatusDelta | null = null;
  #inFlight = false;

  constructor(report: (conn: string, delta: StatusDelta) => Promise<void>) {
    this.#report = report;
  }

  /** The node said hello with this status: the Fleet has it all. */
  joined(conn: string, status: NodeStatus): void {
    this.#conn = conn;
    this.#pending = null;
    this.#known = new Map(Object.entries(status).map(([field, value]) => [field as keyof NodeStatus, JSON.stringify(value)]));
  }

  left(conn: string): void {
    if (this.#conn !== conn) return;
    this.#conn = null;
    this.#pending = null;
  }

  update(conn: string, status: NodeStatus): void {
    if (conn !== this.#conn) {
      // The object woke from hibernation (its memory gone): the first status goes whole.
      this.#conn = conn;
      this.#pending = null;
      this.#known = new Map();
    }
    const delta: Record<string, unknown> = {};
    for (const [field, value] of Object.entries(status) as Array<[keyof NodeStatus, unknown]>) {
      const json = JSON.stringify(value);
      if (this.#known.get(field) === json) continue;
      this.#known.set(field, json);
      delta[field] = value;
    }
    if (Object.keys(delta).length === 0) return;
    this.#pending = { ...this.#pending, ...(delta as StatusDelta) };
    this.#flush();
  }

  #flush(): void {
    const conn = this.#conn;
    const delta = this.#pending;
    if (this.#inFlight || conn === null || delta === null) return;
    this.#pending = null;
    this.#inFlight = true;
    void this.#report(conn, delta)
      .catch(() => undefined)
      .finally(() => {
        this.#inFlight = false;
        this.#flush();
      });
  }
}
