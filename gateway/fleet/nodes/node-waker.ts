import { ApiError } from "../../../shared/protocol/api-error.ts";
import type { WakeInterface, WakeResult } from "../../../shared/protocol/frames.ts";
import type { WakeAttempt } from "../../../shared/gateway-admin/admin-schemas.ts";
import type { Outcome } from "../fleet-contract.ts";
import type { WakeFailure } from "../routing/dispatcher.ts";
import type { FleetNode } from "./fleet-node.ts";
import type { NodeRegistry } from "./node-registry.ts";

export interface NodeWakerParts {
  registry: NodeRegistry;
  /** Asks `peer` to send the magic packet for `target` (a `wake` call pinned to it). */
  sendWake: (peer: FleetNode, target: WakeInterface) => Promise<Outcome<WakeResult>>;
  /** How long a woken node has to say hello again. */
  timeoutMs: number;
  /** A wake ended (the node came back, or did not): waiting requests may move on. */
  onSettled: () => void;
}

interface Attempt {
  /** Set once a peer has sent the packet. */
  record?: WakeAttempt;
  /** Why this wake failed: no peer could send, or the node did not come back in time. */
  failure?: WakeFailure;
  /** While the wake is under way (sending, then awaiting the node): what every asker joins. */
  pending: Promise<WakeAttempt> | null;
  timer: ReturnType<typeof setTimeout> | null;
}

/**
 * Wakes sleeping nodes through a peer on their network: a magic packet must come from inside the
 * LAN, and an always-on node of the same owner there (started with `--wake-peers`) is already
 * connected. One wake per node at a time, however many requests or admins ask; each attempt is
 * kept (in memory) so the admin can see which peer sent the packet and when the node came back.
 */
export class NodeWaker {
  readonly #registry: NodeRegistry;
  readonly #sendWake: NodeWakerParts["sendWake"];
  readonly #timeoutMs: number;
  readonly #onSettled: () => void;
  readonly #attempts = new Map<string, Attempt>();

  constructor(parts: NodeWakerParts) {
    this.#registry = parts.registry;
    this.#sendWake = parts.sendWake;
    this.#timeoutMs = parts.timeoutMs;
    this.#onSettled = parts.onSettled;
  }

  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /** The latest attempt at waking `name` that reached a peer, if any. */
  last(name: string): WakeAttempt | undefined {
    return this.#attempts.get(name)?.record;
  }

  /**
   * Starts waking an offline node that holds `model` (or joins a wake under way): true when one is
   * being woken, so a request for it can wait instead of failing.
   */
  wakeFor(model: string): boolean {
    const holders = this.#registry.offlineHolders(model);
    if (holders.some((name) => this.#attempts.get(name)?.pending)) return true;
    const name = holders.find((holder) => Array.isArray(this.#plan(holder)));
    if (name === undefined) return false;
    // The outcome reaches waiting requests through `onSettled`; nobody awaits this promise.
    this.wake(name).catch(() => {});
    return true;
  }

  /** A wake of a node that holds `model` is under way. */
  pendingFor(model: string): boolean {
    return this.#registry.offlineHolders(model).some((name) => this.#attempts.get(name)?.pending);
  }

  /**
   * Why each offline holder of `model` is not awake: a node that could be woken tells how its
   * latest wake failed; one that cannot, why not (in the admin route's words and codes).
   */
  failuresFor(model: string): WakeFailure[] {
    return this.#registry.offlineHolders(model).flatMap((name): WakeFailure | WakeFailure[] => {
      const plan = this.#plan(name);
      if (Array.isArray(plan)) return this.#attempts.get(name)?.failure ?? [];
      // A node that cannot be woken is simply offline: no wake failed, so the request keeps the plain code.
      return [{ message: plan.message, code: plan.code === "not_wakeable" ? null : plan.code }];
    });
  }

  /**
   * Sends the magic packet for `name` through a peer on its network, or joins the wake under way;
   * resolves once a peer has sent it. Refusals are `ApiError`s that say what is missing.
   */
  wake(name: string): Promise<WakeAttempt> {
    const running = this.#attempts.get(name)?.pending;
    if (running) return running;
    const plan = this.#plan(name);
    if (plan instanceof ApiError) return Promise.reject(plan);
    const attempt: Attempt = { pending: null, timer: null };
    attempt.pending = this.#send(name, plan, attempt);
    this.#attempts.set(name, attempt);
    return attempt.pending;
  }

  /** A node said hello: a wake of it, if any, succeeded. */
  arrived(name: string, now: number): void {
    const attempt = this.#attempts.get(name);
    if (attempt?.record === undefined || attempt.timer === null) return;
    clearTimeout(attempt.timer);
    attempt.timer = null;
    attempt.pending = null;
    attempt.record = { ...attempt.record, back_at: new Date(now).toISOString() };
    this.#onSettled();
  }

  async #send(name: string, plan: Array<{ peer: FleetNode; target: WakeInterface }>, attempt: Attempt): Promise<WakeAttempt> {
    const failures: string[] = [];
    for (const { peer, target } of plan) {
      const outcome = await this.#sendWake(peer, target);
      if (!outcome.ok) {
        failures.push(`${peer.name}: ${outcome.error.body.error.message}`);
        continue;
      }
      const record: WakeAttempt = {
        node: name,
        peer: peer.name,
        mac: outcome.result.mac,
        broadcast: outcome.result.broadcast,
        sent_at: new Date(outcome.result.sent_at).toISOString(),
        back_at: null,
        failure: null,
        timeout_s: Math.round(this.#timeoutMs / 1000),
      };
      attempt.record = record;
      attempt.timer = setTimeout(() => {
        attempt.timer = null;
        attempt.pending = null;
        const message = `Node "${name}" did not come back within ${record.timeout_s} s of the wake packet ${peer.name} sent.`;
        attempt.failure = { message, code: "wake_timeout" };
        attempt.record = { ...record, failure: message };
        this.#onSettled();
      }, this.#timeoutMs);
      return record;
    }
    const error = new ApiError(502, `No peer could send the wake packet for node "${name}": ${failures.join("; ")}.`, { code: "wake_failed" });
    attempt.pending = null;
    attempt.failure = { message: error.message, code: "wake_failed" };
    this.#onSettled();
    throw error;
  }

  /** Which peer sends which packet to wake `name`, or why nobody can. */
  #plan(name: string): Array<{ peer: FleetNode; target: WakeInterface }> | ApiError {
    if (this.#registry.byName(name) !== undefined) {
      return new ApiError(409, `Node "${name}" is online; there is nothing to wake.`, { code: "node_online" });
    }
    const info = this.#registry.offlineInfo(name);
    if (info === undefined) return new ApiError(404, `No node named "${name}" is known to this gateway.`, { code: "not_found" });
    if (info.wake?.wakeable !== true || info.wake.interfaces.length === 0) {
      return new ApiError(409, `Node "${name}" cannot be woken: its agent did not report Wake-on-LAN (start it with --wake-on-lan).`, { code: "not_wakeable" });
    }
    const targets = info.wake.interfaces;
    const plan = this.#registry
      .alive()
      .filter((peer) => peer.info.wake?.wakes_peers === true)
      .flatMap((peer) => {
        const target = targets.find((wake) => peer.info.wake?.interfaces.some((own) => own.broadcast === wake.broadcast));
        return target === undefined ? [] : [{ peer, target }];
      });
    if (plan.length === 0) {
      const networks = [...new Set(targets.map((wake) => wake.broadcast))].join(", ");
      return new ApiError(
        503,
        `Node "${name}" is offline and no online node on its network (${networks}) may send wake packets: run an always-on agent there with --wake-peers.`,
        { code: "no_wake_peer", retryAfter: 30 },
      );
    }
    return plan;
  }
}
