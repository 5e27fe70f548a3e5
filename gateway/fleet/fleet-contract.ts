import type { ApiError } from "../../shared/protocol/api-error.ts";
import type { StoredResponse, StoredTurn } from "../../shared/openai-responses/store.ts";
import type {
  CreatedKey,
  CreatedNodeToken,
  CreateNodeTokenRequest,
  StoredResponsesUsage,
  WakeAttempt,
  CreateKeyRequest,
  FleetStats,
  KeyRecord,
  NodeSummary,
  NodeTokenRecord,
  UpdateKeyRequest,
  UsageQuery,
  UsageRow,
} from "../../shared/gateway-admin/admin-schemas.ts";
import { fromWire, toWire, type GoodbyeReason, type Operation, type WireError } from "../../shared/protocol/frames.ts";
import type { DeleteRequest, DeleteResult, DownloadJob, DownloadRequest } from "../../shared/protocol/download-schemas.ts";
import type { EmbeddingsResult } from "../../shared/protocol/generation-events.ts";
import type { RequestPage, RequestQuery } from "../../shared/gateway-admin/request-log-schemas.ts";
import type { KeyView } from "../../shared/gateway-admin/key-view-schemas.ts";
import type { LoadResult, ModelObject, UnloadResult } from "../../shared/protocol/model-schemas.ts";
import type { ChatRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "../../shared/protocol/request-schemas.ts";
import type { TokenCount } from "../../shared/protocol/token-count.ts";
import type { V1Model } from "../../shared/protocol/v1-model-schemas.ts";
import type { Lease, SettledRequest } from "../node/node-contract.ts";
import type { HelloFrame } from "./nodes/fleet-node.ts";
import type { StatusDelta } from "../node/status-deltas.ts";
import type { Caller } from "./access/caller.ts";
import type { Ending } from "./routing/settlement.ts";

/*
 * The contract between the Worker and the Fleet object: the API calls the Worker makes by RPC,
 * what they answer, and how a generation travels back. The Worker's side of the gateway knows
 * the fleet only through this module.
 */

export type GenerationOperation = Extract<Operation, { op: "chat" | "completion" }>;
export type CallOperation = Extract<Operation, { op: "embeddings" | "load" | "unload" | "download" | "cancel_download" | "delete" | "count_tokens" | "wake" }>;

/** The outcome of a one-shot call over RPC, where thrown errors lose their shape. */
export type Outcome<T> = { ok: true; result: T } | { ok: false; error: WireError };

export const failed = (error: ApiError): { ok: false; error: WireError } => ({ ok: false, error: toWire(error) });

/** The result, or the call's error thrown again as the `ApiError` it was in the Fleet. */
export function unwrap<T>(outcome: Outcome<T>): T {
  if (outcome.ok) return outcome.result;
  throw fromWire(outcome.error);
}

/**
 * The API's entry points into the Fleet, as the Worker calls them: every one authorizes `caller`
 * in the Fleet. The Worker holds a `DurableObjectStub<Fleet>` as `FleetBinding` (`fleetOf`), so each result is
 * typed here rather than derived through `Rpc.Result`, which turns any result holding an
 * `unknown` (a stored response's tool schemas) into `never` (workerd#5200).
 */
export interface FleetApi {
  listModels(caller: Caller): Promise<Outcome<ModelObject[]>>;
  /**
   * Admits a generation (the caller's key, limits and budget) and places it: resolves with the node
   * to run it on once it has a slot (it may wait in the queue first), or with why it cannot run.
   * `id` is the Worker's, so it can cancel a request still waiting.
   */
  admit(id: string, operation: GenerationOperation, caller: Caller): Promise<Outcome<Lease>>;
  /** The node (connection `conn`) failed the request before any text: place it again without that node, or end it with `error`. */
  retry(id: string, conn: string, error: WireError): Promise<Outcome<Lease>>;
  /** The client of a generation went away: stop it on its node and free the slot. */
  cancel(id: string): Promise<void>;
  /** An attempt ended and its node object could not say so (it was gone): the request's one settlement. */
  settle(id: string, attempt: number, ending: Ending, request: SettledRequest): Promise<void>;
  embeddings(body: EmbeddingsRequest, caller: Caller): Promise<Outcome<EmbeddingsResult>>;
  loadModel(body: LoadRequest, caller: Caller): Promise<Outcome<LoadResult>>;
  /** Null when every node that holds the model runs an agent too old to count. */
  countTokens(body: ChatRequest, caller: Caller): Promise<Outcome<TokenCount | null>>;
  unloadModel(body: UnloadRequest, caller: Caller): Promise<Outcome<UnloadResult>>;
  saveResponse(caller: Caller, turn: StoredTurn): Promise<Outcome<null>>;
  storedResponse(caller: Caller, id: string): Promise<Outcome<StoredResponse | null>>;
  deleteResponse(caller: Caller, id: string): Promise<Outcome<boolean>>;
  /** A 409 outcome when `bytes` more would not fit the caller's share of stored responses. */
  responseRoom(caller: Caller, bytes: number): Promise<Outcome<null>>;
  listModelsV1(caller: Caller): Promise<Outcome<V1Model[]>>;
  downloadModel(body: DownloadRequest, caller: Caller): Promise<Outcome<DownloadJob>>;
  downloadStatus(jobId: string, caller: Caller): Promise<Outcome<DownloadJob>>;
  cancelDownload(jobId: string, caller: Caller): Promise<Outcome<DownloadJob>>;
  deleteModel(body: DeleteRequest, caller: Caller): Promise<Outcome<DeleteResult>>;
  /** Whether the caller's key is good right now (unknown, revoked, expired: its 401), counting no request. */
  authenticate(caller: Caller): Promise<Outcome<null>>;
  /** The caller's own key: limits, usage, recent requests, the models it may use (`GET /v1/key`). */
  keyInfo(caller: Caller): Promise<Outcome<KeyView>>;
}

/** The admin API's and `/metrics`' entry points into the Fleet (the admin token is checked in the Worker). */
export interface FleetAdminApi {
  /** The Prometheus text. */
  metrics(): Promise<string>;
  listNodes(): Promise<NodeSummary[]>;
  stats(): Promise<FleetStats>;
  createKey(request: CreateKeyRequest): Promise<CreatedKey>;
  listKeys(): Promise<KeyRecord[]>;
  updateKey(id: string, update: UpdateKeyRequest): Promise<KeyRecord | null>;
  revokeKey(id: string): Promise<KeyRecord | null>;
  createNodeToken(request: CreateNodeTokenRequest): Promise<CreatedNodeToken>;
  listNodeTokens(): Promise<NodeTokenRecord[]>;
  revokeNodeToken(id: string): Promise<NodeTokenRecord | null>;
  /** A key's stored responses against its share; null for an unknown key. */
  storedResponses(keyId: string): Promise<StoredResponsesUsage | null>;
  clearStoredResponses(keyId: string): Promise<StoredResponsesUsage | null>;
  usage(query: UsageQuery): Promise<UsageRow[]>;
  /** Sends the magic packet for an offline node through a peer on its network. */
  wakeNode(name: string): Promise<Outcome<WakeAttempt>>;
  /** The request log, filtered and paged (`/admin/requests`). */
  requests(query: RequestQuery): Promise<RequestPage>;
  /** A wrong admin, metrics or node token from `address`: seconds it must wait (429), or null (401). */
  failedAttempt(address: string): Promise<number | null>;
}

/** The node token an agent's upgrade carried, as the Fleet knows it: its id, and the one node name it serves (if made for one). */
export interface NodeAdmission {
  tokenId?: string;
  tokenNode?: string;
  /** The shared token dialled as a name that has a node token of its own: the hello is refused. */
  nameOwned?: true;
  /** The socket's place among its token's pending ones (fleet/nodes/pending-dials.ts), until it joins or closes. */
  dial?: string;
}

/**
 * What the node objects (and, for the upgrade, the Worker) tell the Fleet: never a token or a
 * frame of a generation, only what placement needs and each request's end.
 */
export interface FleetNodeApi {
  /**
   * Checks a node token's hash (or `ROOT_NODE_TOKEN`) before the agent's socket is accepted, for
   * the name it dials as; a wrong token counts against `address` (the wrong-credential brake).
   */
  admitNode(tokenHash: string, name: string, address: string): Promise<Outcome<NodeAdmission>>;
  /** The node said hello on connection `conn` (its object already replaced any older one); its dial is no longer pending. */
  nodeJoined(conn: string, hello: HelloFrame, tokenId: string | undefined, dial: string | undefined): Promise<void>;
  /** A socket admitted as `dial` went (or was refused) without saying hello. */
  dialEnded(dial: string): Promise<void>;
  /** What changed in the node's status: slots as they go busy or free, the catalog when it changes. */
  nodeStatus(conn: string, delta: StatusDelta): Promise<void>;
  nodeLeft(conn: string): Promise<void>;
  /** The node said why it is going (`sleep`: its machine suspends and can be woken), just before it leaves. */
  nodeGoodbye(conn: string, reason: GoodbyeReason): Promise<void>;
  /** An attempt of a generation ended for good, with these counts: the request's one settlement. */
  settle(id: string, attempt: number, ending: Ending, request: SettledRequest): Promise<void>;
}

/** The Fleet as the Worker and the node objects hold it: every call typed here, none derived or cast. */
export type FleetBinding = FleetApi & FleetAdminApi & FleetNodeApi;

/** The same entry points as the Fleet serves them: an RPC result may be ready at once. */
export type Serving<Api> = {
  [K in keyof Api]: Api[K] extends (...args: infer A) => Promise<infer R> ? (...args: A) => R | Promise<R> : never;
};
