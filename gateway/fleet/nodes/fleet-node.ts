import type { NodeStatus, ToGatewayFrame } from "../../../shared/protocol/frames.ts";
import type { NodeApi } from "../../node/node-contract.ts";
import type { StatusDelta } from "../../node/status-deltas.ts";
import type { ModelNodeInfo, ModelObject } from "../../../shared/protocol/model-schemas.ts";
import { fitsIn } from "../../../shared/protocol/memory-fit.ts";
import type { Candidate } from "../routing/routing.ts";
import { believedSlots } from "../routing/node-claims.ts";

export type HelloFrame = Extract<ToGatewayFrame, { type: "hello" }>;
export type NodeInfo = HelloFrame["node"];

/**
 * One connected node as the Fleet sees it: what it said in `hello` and its latest `status`,
 * plus what only the gateway knows — the requests it has running there right now.
 */
export class FleetNode {
  readonly id: string;
  readonly name: string;
  readonly connectedAt: number;
  /** The node's object, where its socket ends: calls go there. */
  readonly link: NodeApi;
  /** The node token it joined with (absent for LMGATE_NODE_TOKEN, and after the Fleet woke: unknown). */
  readonly tokenId: string | undefined;
  info: NodeInfo;
  status: NodeStatus;
  /** Requests the gateway has running here, per model. Empty after a wake: nothing runs while hibernated. */
  readonly inFlight = new Map<string, number>();
  lastDispatchAt = 0;
  /** Models an unload is waiting to take off this node (routing/unload-drain.ts): no new requests go to them here. */
  readonly unloading = new Set<string>();
  /** Tokens/s per model as the gateway measured it here (routing/node-claims.ts): what routing ranks by, never the node's claim. */
  readonly measuredSpeed = new Map<string, number>();
  /**
   * The most requests of one model it has been seen to run at once and finish (routing/node-claims.ts):
   * what its slots are believed by. Not saved: after the Fleet is evicted a node earns it again.
   */
  provenSlots = 0;

  /** The last time the node's object reported a change (or the node joined). */
  lastSeenAt: number;

  constructor(init: { id: string; name: string; connectedAt: number; link: NodeApi; tokenId?: string; info: NodeInfo; status: NodeStatus }) {
    this.id = init.id;
    this.name = init.name;
    this.connectedAt = init.connectedAt;
    this.lastSeenAt = init.connectedAt;
    this.link = init.link;
    this.tokenId = init.tokenId;
    this.info = init.info;
    this.status = init.status;
  }

  /** What changed in the node's status, as its object reports it. */
  apply(delta: StatusDelta, now: number): void {
    this.status = { ...this.status, ...delta };
    this.lastSeenAt = now;
  }

  model(id: string): ModelObject | undefined {
    return this.status.models.find((model) => model.id === id);
  }

  /**
   * The agent's count lags behind the gateway's (status is pushed after the fact) and the
   * gateway's misses work from elsewhere (direct-mode clients): the larger one is the truth.
   */
  busy(model: string): number {
    return Math.max(this.inFlight.get(model) ?? 0, this.status.busy[model] ?? 0);
  }

  /** Loaded, or about to be: a request the gateway sent is loading it right now. */
  isLoaded(model: string): boolean {
    return this.model(model)?.state === "loaded" || (this.inFlight.get(model) ?? 0) > 0;
  }

  totalInFlight(): number {
    let total = 0;
    for (const count of this.inFlight.values()) total += count;
    return total;
  }

  /** The models that hold slots here: loaded, or being loaded by a request the gateway sent. */
  loadedModels(): Set<string> {
    const loaded = new Set(this.status.models.filter((entry) => entry.state === "loaded").map((entry) => entry.id));
    for (const [id, count] of this.inFlight) if (count > 0) loaded.add(id);
    return loaded;
  }

  /** With a `draft` model (speculative decoding), the model counts as loaded only when the draft is, or has room beside it. */
  candidate(model: string, draft?: string): Candidate {
    const loadedModels = this.loadedModels();
    const draftReady = draft === undefined || this.isLoaded(draft) || this.#fits([draft], model);
    const slots = believedSlots(this);
    let nodeBusy = 0;
    for (const id of loadedModels) nodeBusy += this.busy(id);
    return {
      id: this.id,
      loaded: this.isLoaded(model) && draftReady,
      slots,
      busy: this.busy(model),
      nodeBusy,
      nodeSlots: Math.max(1, loadedModels.size) * slots,
      tokensPerSecond: this.measuredSpeed.get(model) ?? null,
      lastDispatchAt: this.lastDispatchAt,
      fits: this.hasRoomFor(model, draft),
    };
  }

  /**
   * The model fits in the memory the node reported free, plus what its idle loaded models take
   * (the agent unloads those to make room). A node that reports no figures is given the benefit
   * of the doubt: its agent still refuses a load that does not fit. A `draft` not loaded yet
   * loads beside the model, so it needs room too.
   */
  hasRoomFor(model: string, draft?: string): boolean {
    return this.#fits(draft === undefined || this.isLoaded(draft) ? [model] : [model, draft]);
  }

  /** `models` fit together, with every idle loaded model but them and `keep` unloaded for them. */
  #fits(models: string[], keep?: string): boolean {
    const footprints = this.status.footprints;
    const memory = this.status.memory;
    const needs = models.map((id) => footprints?.[id]);
    if (footprints === undefined || memory === undefined || needs.some((need) => need === undefined)) return true;
    let ram = memory.ram_free_bytes;
    let vram = memory.vram_free_bytes ?? 0;
    for (const id of this.loadedModels()) {
      if (models.includes(id) || id === keep || this.busy(id) > 0) continue;
      ram += footprints[id]?.ram_bytes ?? 0;
      vram += footprints[id]?.vram_bytes ?? 0;
    }
    const total = { ram_bytes: 0, vram_bytes: 0 };
    for (const need of needs) {
      total.ram_bytes += need?.ram_bytes ?? 0;
      total.vram_bytes += need?.vram_bytes ?? 0;
    }
    return fitsIn(total, { ram_free_bytes: ram, vram_free_bytes: vram });
  }

  acquire(model: string, now: number): void {
    this.inFlight.set(model, (this.inFlight.get(model) ?? 0) + 1);
    this.lastDispatchAt = now;
  }

  release(model: string): void {
    const count = (this.inFlight.get(model) ?? 0) - 1;
    if (count > 0) this.inFlight.set(model, count);
    else this.inFlight.delete(model);
  }

  /** This node's line in a model's `nodes` list: the state the node reports. */
  modelNodeInfo(model: ModelObject): ModelNodeInfo {
    const speed = this.status.speed[model.id];
    return {
      node: this.name,
      state: model.state,
      slots: this.info.slots_per_model,
      slots_busy: this.busy(model.id),
      tokens_per_second: speed?.tokens_per_second ?? null,
      time_to_first_token: speed?.time_to_first_token ?? null,
    };
  }
}
