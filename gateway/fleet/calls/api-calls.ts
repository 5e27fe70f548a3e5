import { ApiError } from "../../../shared/protocol/api-error.ts";
import type { StoredResponse, StoredTurn } from "../../../shared/openai-responses/store.ts";
import type { WireError } from "../../../shared/protocol/frames.ts";
import type { KeyAction } from "../../../shared/gateway-admin/admin-schemas.ts";
import type { DeleteRequest, DeleteResult, DownloadJob, DownloadRequest } from "../../../shared/protocol/download-schemas.ts";
import type { EmbeddingsResult } from "../../../shared/protocol/generation-events.ts";
import type { LoadResult, ModelObject, UnloadResult } from "../../../shared/protocol/model-schemas.ts";
import type { ChatRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "../../../shared/protocol/request-schemas.ts";
import type { TokenCount } from "../../../shared/protocol/token-count.ts";
import type { V1Model } from "../../../shared/protocol/v1-model-schemas.ts";
import type { KeyView } from "../../../shared/gateway-admin/key-view-schemas.ts";
import type { KeyViews } from "./key-view.ts";
import type { AccessControl, Grant } from "../access/access-control.ts";
import type { AccessStore } from "../access/access-store.ts";
import { ROOT_CALLER_ID, type Caller } from "../access/caller.ts";
import { ModelScope } from "../access/model-scope.ts";
import { promptOverBudget, type TokenBudget } from "../access/token-budget.ts";
import { estimatedPromptTokens } from "../access/prompt-estimate.ts";
import type { UsageLedger } from "../access/usage-ledger.ts";
import type { ResponseTable } from "../state/response-table.ts";
import type { Lease, SettledRequest } from "../../node/node-contract.ts";
import { failed, type FleetApi, type GenerationOperation, type Outcome, type Serving } from "../fleet-contract.ts";
import type { Ending } from "../routing/settlement.ts";
import type { Dispatcher } from "../routing/dispatcher.ts";
import { drainThenUnload } from "../routing/unload-drain.ts";
import type { FleetNode } from "../nodes/fleet-node.ts";
import { fleetModels } from "../nodes/fleet-models.ts";
import { deleteTarget, downloadTarget, findDownload, fleetV1Models, namedNode } from "../nodes/model-management.ts";
import type { NodeRegistry } from "../nodes/node-registry.ts";

/** The request a refusal turned away: who, doing what, with which model (null: none in particular). */
export interface RefusedRequest {
  caller: Caller;
  op: string;
  model: string | null;
}

/** A refused request, told to the Fleet for its metrics and the request log. */
export interface Refusal extends RefusedRequest {
  error: ApiError;
  /** The caller's key id, when the key is known (`root` for the deployment's own key). */
  keyId: string | null;
}

export interface ApiCallsParts {
  registry: NodeRegistry;
  dispatcher: Dispatcher;
  access: AccessStore;
  control: AccessControl;
  ledger: UsageLedger;
  budget: TokenBudget;
  responses: ResponseTable;
  /** What a key sees of itself. */
  keyViews: KeyViews;
  /** A caller was turned away before routing (bad key, model out of scope, over a limit). */
  onRefused: (refusal: Refusal) => void;
}

/**
 * The API's entry points into the fleet (`FleetApi`, called by the Worker over RPC). Every call
 * authorizes its caller here, in the same hop as routing: a revocation, a scope change or a spent
 * budget holds from the very next request.
 */
export class ApiCalls implements Serving<FleetApi> {
  readonly #registry: NodeRegistry;
  readonly #dispatcher: Dispatcher;
  readonly #access: AccessStore;
  readonly #control: AccessControl;
  readonly #ledger: UsageLedger;
  readonly #budget: TokenBudget;
  readonly #responses: ResponseTable;
  readonly #onRefused: (refusal: Refusal) => void;
  readonly #keyViews: KeyViews;

  constructor(parts: ApiCallsParts) {
    this.#registry = parts.registry;
    this.#dispatcher = parts.dispatcher;
    this.#access = parts.access;
    this.#control = parts.control;
    this.#ledger = parts.ledger;
    this.#budget = parts.budget;
    this.#responses = parts.responses;
    this.#onRefused = parts.onRefused;
    this.#keyViews = parts.keyViews;
  }

  /** The caller's own key: its limits and what is left of them, its usage and requests (not counted against its rate). */
  keyInfo(caller: Caller): Outcome<KeyView> {
    return this.#asOwner(caller, "key_info", (owner) => this.#keyViews.of(owner, new Date()));
  }

  listModels(caller: Caller): Outcome<ModelObject[]> {
    return this.#outcome({ caller, op: "list_models", model: null }, () => {
      // A listing is a request like any other: it counts against requests per minute.
      const grant = this.#admit(caller, null);
      const models = fleetModels(this.#registry.alive());
      return grant === null ? models : models.filter((model) => grant.scope.allows(model.id));
    });
  }

  /** Authorizes the generation, caps it to the key's budget, and places it (`Dispatcher.admit`). */
  async admit(id: string, operation: GenerationOperation, caller: Caller): Promise<Outcome<Lease>> {
    let grant: Grant | null;
    let capped: GenerationOperation;
    try {
      grant = this.#admit(caller, operation.body.model);
      capped = grant === null ? operation : this.#withinBudget(id, grant, operation);
    } catch (error) {
      return failed(error instanceof ApiError ? this.#refused(error, { caller, op: operation.op, model: operation.body.model }) : new ApiError(500, "Authorization failed."));
    }
    return this.#dispatcher.admit(id, capped, grant?.key.id ?? ROOT_CALLER_ID, caller.via ?? null);
  }

  retry(id: string, conn: string, error: WireError): Promise<Outcome<Lease>> {
    return this.#dispatcher.retry(id, conn, error);
  }

  /** The client of a generation went away: stop it on its node and free the slot. */
  cancel(id: string): void {
    this.#dispatcher.cancel(id, (node) => void node.link.cancel(id).catch(() => undefined));
  }

  settle(id: string, attempt: number, ending: Ending, request: SettledRequest): void {
    this.#dispatcher.settle(id, attempt, ending, request);
  }

  async embeddings(body: EmbeddingsRequest, caller: Caller): Promise<Outcome<EmbeddingsResult>> {
    const callerId = this.#admitCall(caller, "embeddings", body.model);
    if (typeof callerId !== "string") return callerId;
    return this.#dispatcher.call({ op: "embeddings", body }, null, callerId, caller.via ?? null);
  }

  async loadModel(body: LoadRequest, caller: Caller): Promise<Outcome<LoadResult>> {
    const callerId = this.#admitCall(caller, "load", body.model, "load");
    if (typeof callerId !== "string") return callerId;
    const pinned = this.#outcome({ caller, op: "load", model: body.model }, () =>
      body.node === undefined ? null : namedNode(this.#registry.alive(), body.node),
    );
    if (!pinned.ok) return pinned;
    return this.#dispatcher.call({ op: "load", body }, pinned.result, callerId, caller.via ?? null);
  }

  /**
   * The prompt's exact count from a node that holds the model and takes `count_tokens` (one with
   * it loaded first: no load just to count). Null when every holder is an older agent.
   */
  async countTokens(body: ChatRequest, caller: Caller): Promise<Outcome<TokenCount | null>> {
    const callerId = this.#admitCall(caller, "count_tokens", body.model);
    if (typeof callerId !== "string") return callerId;
    const counters = this.#registry.alive().filter((node) => node.status.counts_tokens === true && node.model(body.model) !== undefined);
    const node = counters.find((candidate) => candidate.model(body.model)?.state === "loaded") ?? counters[0];
    if (node === undefined) {
      // Nobody holds it (a 404 in the dispatcher's words), or only agents too old to count.
      if (this.#registry.online().some((holder) => holder.model(body.model) !== undefined)) return { ok: true, result: null };
      return this.#dispatcher.call({ op: "count_tokens", body }, null, callerId, caller.via ?? null);
    }
    return this.#dispatcher.call({ op: "count_tokens", body }, node, callerId, caller.via ?? null);
  }

  /**
   * Unloads the model from every node that has it loaded, each once the generations running on it
   * there have finished (bounded); `force`, the deployment's own credentials only, cuts them.
   */
  async unloadModel(body: UnloadRequest, caller: Caller): Promise<Outcome<UnloadResult>> {
    const model = body.instance_id ?? body.model ?? "";
    const callerId = this.#admitCall(caller, "unload", model, "load");
    if (typeof callerId !== "string") return callerId;
    if (body.force === true && callerId !== ROOT_CALLER_ID) {
      return failed(this.#refused(new ApiError(403, "Only the deployment's own credentials may force an unload; without force it waits for running generations.", { code: "force_not_allowed", param: "force" }), { caller, op: "unload", model }));
    }
    // A node still loading the model for a running request counts: its generation is as much another key's as a loaded one's.
    const holding = (node: FleetNode) => node.model(model)?.state === "loaded" || node.busy(model) > 0;
    const [first, ...others] = this.#registry.online().filter((node) => holding(node) && (body.node === undefined || node.name === body.node));
    if (first === undefined) {
      // Let a node that holds it answer in its own words ("not loaded"), or say nobody holds it.
      return this.#dispatcher.call({ op: "unload", body }, null, callerId, caller.via ?? null);
    }
    const unloadOn = async (node: FleetNode): Promise<Outcome<UnloadResult>> => {
      const { outcome, drained } = await drainThenUnload(node, model, body.force === true, () => this.#dispatcher.call({ op: "unload", body }, node));
      return outcome.ok ? { ok: true, result: { ...outcome.result, drained } } : outcome;
    };
    const [firstOutcome, ...otherOutcomes] = await Promise.all([unloadOn(first), ...others.map(unloadOn)]);
    return [firstOutcome, ...otherOutcomes].find((outcome) => outcome.ok) ?? firstOutcome;
  }

  // Stored responses (/v1/responses, /api/v1/chat): each key reads, continues and deletes only its own.

  /** Its 409 when the caller's share is full (a parallel request filled it after `responseRoom`). */
  saveResponse(caller: Caller, turn: StoredTurn): Outcome<null> {
    const owner = this.#asOwner(caller, "save_response", (id) => id);
    return owner.ok ? this.#outcome({ caller, op: "save_response", model: null }, () => (this.#responses.save(owner.result, turn), null)) : owner;
  }

  storedResponse(caller: Caller, id: string): Outcome<StoredResponse | null> {
    return this.#asOwner(caller, "get_response", (owner) => this.#responses.get(owner, id));
  }

  /** 409 when the caller's stored responses already fill its share: checked before a generation that would store one. */
  responseRoom(caller: Caller, bytes: number): Outcome<null> {
    const owner = this.#asOwner(caller, "response_room", (id) => id);
    return owner.ok ? this.#outcome({ caller, op: "response_room", model: null }, () => (this.#responses.assertRoom(owner.result, bytes, Math.floor(Date.now() / 1000)), null)) : owner;
  }

  deleteResponse(caller: Caller, id: string): Outcome<boolean> {
    return this.#asOwner(caller, "delete_response", (owner) => this.#responses.delete(owner, id));
  }

  /** LM Studio's v1 listing of the whole fleet, within the caller's model scope. */
  listModelsV1(caller: Caller): Outcome<V1Model[]> {
    return this.#outcome({ caller, op: "list_models", model: null }, () => {
      const grant = this.#admit(caller, null);
      const models = fleetV1Models(this.#registry.alive());
      return grant === null ? models : models.filter((model) => grant.scope.allows(model.key));
    });
  }

  // Management calls count against the key's request rate but not in its usage: they use no model.
  async downloadModel(body: DownloadRequest, caller: Caller): Promise<Outcome<DownloadJob>> {
    const target = this.#outcome({ caller, op: "download", model: body.model }, () => {
      this.#admit(caller, null, "download");
      return downloadTarget(this.#registry.alive(), body.node);
    });
    if (!target.ok) return target;
    const outcome = await this.#dispatcher.call({ op: "download", body }, target.result);
    return outcome.ok ? { ok: true, result: { ...outcome.result, node: target.result.name } } : outcome;
  }

  downloadStatus(jobId: string, caller: Caller): Outcome<DownloadJob> {
    return this.#outcome({ caller, op: "download_status", model: null }, () => {
      this.#admit(caller, null, "download");
      return findDownload(this.#registry.alive(), jobId).job;
    });
  }

  async cancelDownload(jobId: string, caller: Caller): Promise<Outcome<DownloadJob>> {
    const found = this.#outcome({ caller, op: "cancel_download", model: null }, () => {
      this.#admit(caller, null, "download");
      return findDownload(this.#registry.alive(), jobId).node;
    });
    if (!found.ok) return found;
    const node = found.result;
    const outcome = await this.#dispatcher.call({ op: "cancel_download", body: { job_id: jobId } }, node);
    return outcome.ok ? { ok: true, result: { ...outcome.result, node: node.name } } : outcome;
  }

  async deleteModel(body: DeleteRequest, caller: Caller): Promise<Outcome<DeleteResult>> {
    const target = this.#outcome({ caller, op: "delete", model: body.model }, () => {
      this.#admit(caller, body.model, "delete");
      return deleteTarget(this.#registry.alive(), body.model, body.node);
    });
    if (!target.ok) return target;
    const outcome = await this.#dispatcher.call({ op: "delete", body }, target.result);
    return outcome.ok ? { ok: true, result: { ...outcome.result, node: target.result.name } } : outcome;
  }


  authenticate(caller: Caller): Outcome<null> {
    return this.#asOwner(caller, "authenticate", () => null);
  }

  /** The caller's grant; null for the deployment's own key, which has no scopes or limits. */
  #grant(caller: Caller): Grant | null {
    return caller.kind === "root" ? null : this.#control.authenticate(caller.hash, caller.address, new Date());
  }

  /** Which model ids the caller (a key id, as requests are accounted) may see. */
  scopeOf(callerId: string | null): (model: string) => boolean {
    const key = callerId === null || callerId === ROOT_CALLER_ID ? undefined : this.#access.key(callerId);
    if (key === undefined) return () => true;
    const scope = new ModelScope(key.models);
    return (model) => scope.allows(model);
  }

  /**
   * Authorizes one request for `model` (null: no particular model) and, for model management, the
   * `action`; counts it against the key's limits. Null for the deployment's own key.
   */
  #admit(caller: Caller, model: string | null, action?: KeyAction): Grant | null {
    const grant = this.#grant(caller);
    if (grant === null) return null;
    if (action !== undefined) this.#control.checkAction(grant, action);
    if (model !== null) this.#control.checkModel(grant, model);
    this.#control.admit(grant, new Date());
    return grant;
  }

  /**
   * A generation of a key with tokens per day may use only what the key has left: its prompt (an
   * estimate until the node counts it) and its `max_tokens` (or, unset, the model's context),
   * capped to what remains after the prompt, are held until it settles. A prompt that alone needs
   * more than is left is refused before it runs.
   */
  #withinBudget(id: string, grant: Grant, operation: GenerationOperation): GenerationOperation {
    const { key } = grant;
    if (key.tokens_per_day === null) return operation;
    const asked = (operation.op === "chat" ? operation.body.max_completion_tokens : undefined) ?? operation.body.max_tokens;
    // Each of n choices may produce max_tokens: the hold is for all of them, shared out evenly.
    const choices = operation.body.n ?? 1;
    // No live node holds the model yet (it may be loaded, woken or unknown): whatever is left may be used.
    const perChoice = asked !== undefined && asked >= 0 ? asked : this.#contextOf(operation.body.model) || Number.POSITIVE_INFINITY;
    const wanted = perChoice * choices;
    const prompt = estimatedPromptTokens(operation);
    const now = new Date();
    const held = this.#budget.hold(id, key, this.#ledger.tokensOn(key.id, now), prompt + wanted, now);
    if (held <= prompt) {
      this.#budget.release(id);
      throw promptOverBudget(prompt, held, key.tokens_per_day, now);
    }
    const allowed = Math.max(1, Math.floor((held - prompt) / choices));
    if (allowed === asked) return operation;
    return operation.op === "chat"
      ? { op: "chat", body: { ...operation.body, max_tokens: allowed, max_completion_tokens: allowed } }
      : { op: "completion", body: { ...operation.body, max_tokens: allowed } };
  }

  /** The most a generation of `model` can produce: the largest context a node holds it with. */
  #contextOf(model: string): number {
    const contexts = this.#registry.online().map((node) => node.model(model)).map((held) => held?.loaded_context_length ?? held?.max_context_length ?? 0);
    return Math.max(0, ...contexts);
  }

  /** Runs `action` as the key the caller holds (revoked and expired keys are refused). */
  #asOwner<T>(caller: Caller, op: string, action: (owner: string) => T): Outcome<T> {
    let owner: string;
    try {
      owner = this.#grant(caller)?.key.id ?? ROOT_CALLER_ID;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      return failed(this.#refused(error, { caller, op, model: null }));
    }
    return { ok: true, result: action(owner) };
  }

  #admitCall(caller: Caller, op: string, model: string, action?: KeyAction): string | Outcome<never> {
    try {
      return this.#admit(caller, model, action)?.key.id ?? ROOT_CALLER_ID;
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      return failed(this.#refused(error, { caller, op, model }));
    }
  }

  /** Runs a check or lookup for the request `of`; its `ApiError` becomes the call's outcome. */
  #outcome<T>(of: RefusedRequest, run: () => T): Outcome<T> {
    try {
      return { ok: true, result: run() };
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      return failed(this.#refused(error, of));
    }
  }

  /** A caller turned away before routing (bad key, model out of scope, over a limit): counted, then answered. */
  #refused(error: ApiError, of: RefusedRequest): ApiError {
    // The key as far as it is known: an unknown hash is no key at all.
    const keyId = of.caller.kind === "root" ? ROOT_CALLER_ID : (this.#access.keyByHash(of.caller.hash)?.id ?? null);
    this.#onRefused({ ...of, error, keyId });
    return error;
  }
}
