import { ApiError } from "../../../shared/protocol/api-error.ts";
import { NodeName, type GoodbyeReason } from "../../../shared/protocol/frames.ts";
import type { AccessStore } from "../access/access-store.ts";
import { tooManyAttempts, type FailedAttempts } from "../access/failed-attempts.ts";
import { scopedStatus } from "../access/node-model-scope.ts";
import { ROOT_NODE_TOKEN } from "../access/caller.ts";
import { failed, type NodeAdmission, type Outcome } from "../fleet-contract.ts";
import type { Dispatcher } from "../routing/dispatcher.ts";
import type { StatusDelta } from "../../node/status-deltas.ts";
import type { HelloFrame } from "./fleet-node.ts";
import type { NodeRegistry } from "./node-registry.ts";
import type { NodeWaker } from "./node-waker.ts";
import type { PendingDials } from "./pending-dials.ts";

export interface NodeLinksParts {
  registry: NodeRegistry;
  dispatcher: Dispatcher;
  access: AccessStore;
  /** Wrong node tokens count against the client's address like wrong admin tokens. */
  attempts: FailedAttempts;
  /** Sockets each token has open without hello, across every name it dials. */
  dials: PendingDials;
  /** Hears of every node that joins: a wake of it, if any, succeeded. */
  waker: NodeWaker;
  /** A node name the fleet already knew said hello again: an agent restart or a dropped link. */
  onReconnect: (name: string) => void;
}

/**
 * The Fleet's side of the node objects: a node token checked before an agent's socket is accepted,
 * and what each node object reports: the node joining, its status changes, its leaving.
 */
export class NodeLinks {
  readonly #registry: NodeRegistry;
  readonly #dispatcher: Dispatcher;
  readonly #access: AccessStore;
  readonly #attempts: FailedAttempts;
  readonly #dials: PendingDials;
  readonly #waker: NodeWaker;
  readonly #onReconnect: (name: string) => void;

  constructor(parts: NodeLinksParts) {
    this.#registry = parts.registry;
    this.#dispatcher = parts.dispatcher;
    this.#access = parts.access;
    this.#attempts = parts.attempts;
    this.#dials = parts.dials;
    this.#waker = parts.waker;
    this.#onReconnect = parts.onReconnect;
  }

  /**
   * The token an agent dials with, by its hash (or `ROOT_NODE_TOKEN`, compared by the Worker): known,
   * not revoked, and not already holding from `address` all the sockets without hello it may.
   */
  admit(tokenHash: string, name: string, address: string): Outcome<NodeAdmission> {
    const admission = this.#tokenAdmission(tokenHash, name, address);
    // A socket with no valid name is closed by the Worker at once: it never waits for a hello.
    if (!admission.ok || !NodeName.safeParse(name).success) return admission;
    const dial = this.#dials.open(admission.result.tokenId, address, Date.now());
    return typeof dial === "string" ? { ok: true, result: { ...admission.result, dial } } : failed(dial);
  }

  #tokenAdmission(tokenHash: string, name: string, address: string): Outcome<NodeAdmission> {
    // A name with a token of its own belongs to that token: the shared one may not displace it.
    if (tokenHash === ROOT_NODE_TOKEN) return { ok: true, result: this.#access.nameIsOwned(name) ? { nameOwned: true } : {} };
    const token = this.#access.useNodeToken(tokenHash, new Date());
    if (token === undefined || token.revoked_at !== null) {
      const wait = this.#attempts.fail(address, Date.now());
      if (wait !== null) return failed(tooManyAttempts("node token", wait));
      const message = token === undefined ? "Invalid node token." : "This node token has been revoked.";
      return failed(new ApiError(401, message, { code: "invalid_token" }));
    }
    return { ok: true, result: { tokenId: token.id, tokenNode: token.node } };
  }

  dialEnded(dial: string): void {
    this.#dials.ended(dial);
  }

  joined(conn: string, claimed: HelloFrame, tokenId: string | undefined, dial: string | undefined): void {
    if (dial !== undefined) this.#dials.ended(dial);
    const hello = { ...claimed, status: scopedStatus(claimed.status, this.#modelScope(tokenId)) };
    if (this.#registry.knows(hello.node.name)) this.#onReconnect(hello.node.name);
    // Its object closed the older connection already; here it only leaves the registry.
    const previous = this.#registry.byName(hello.node.name);
    if (previous !== undefined) this.left(previous.id);
    this.#registry.register(conn, hello, Date.now(), tokenId);
    this.#waker.arrived(hello.node.name, Date.now());
    this.#dispatcher.capacityChanged();
  }

  status(conn: string, delta: StatusDelta): void {
    const node = this.#registry.get(conn);
    if (node === undefined) return;
    const scope = this.#modelScope(node.tokenId);
    // Only the fields the delta carries, each cut to the token's scope (a catalog write stays a catalog change).
    const allowed = scope === null ? delta : scopedStatus({ ...node.status, ...delta }, scope);
    const scoped = Object.fromEntries(Object.keys(delta).map((field) => [field, allowed[field as keyof StatusDelta]])) as StatusDelta;
    this.#registry.updateStatus(node, scoped, Date.now());
    this.#dispatcher.capacityChanged();
  }

  goodbye(conn: string, reason: GoodbyeReason): void {
    const node = this.#registry.get(conn);
    if (node !== undefined) this.#registry.goodbye(node, reason);
  }

  left(conn: string): void {
    const node = this.#registry.remove(conn, Date.now());
    if (node !== undefined) this.#dispatcher.nodeLost(node);
  }

  /** The model globs the node token allows; null: every model (the shared token, or a token without globs). */
  #modelScope(tokenId: string | undefined): string[] | null {
    return tokenId === undefined ? null : (this.#access.nodeToken(tokenId)?.models ?? null);
  }

  /**
   * Forgets the connections the stored registry lists but their node objects no longer hold. After
   * the whole gateway restarted, those sockets are gone and nothing else would ever say so: the
   * nodes would stay listed online, and requests placed on them fail over. A Fleet that was only
   * evicted (its nodes' objects kept their sockets) finds every one held. A node object that does
   * not answer is taken to hold its socket: its own sweep is what closes a dead one.
   */
  async forgetLost(): Promise<void> {
    await Promise.all(
      this.#registry.online().map(async (node) => {
        if (!(await node.link.holds(node.id).catch(() => true))) this.left(node.id);
      }),
    );
  }

  /** Disconnects, at once, every node that joined with this (revoked) node token: each node object closes its sockets of it. */
  async disconnectToken(tokenId: string): Promise<void> {
    await Promise.all(this.#registry.online().map((node) => node.link.disconnectToken(tokenId).catch(() => undefined)));
  }
}
