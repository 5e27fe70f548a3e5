import type { z } from "zod";
import {
  CreatedKey,
  CreatedNodeToken,
  KeyRecord,
  ListOf,
  NodeSummary,
  NodeTokenRecord,
  StoredResponsesUsage,
  UsageRow,
  WakeAttempt,
  type CreateKeyRequest,
  type CreateNodeTokenRequest,
  type UpdateKeyRequest,
  type UsageQuery,
} from "../shared/gateway-admin/admin-schemas.ts";
import { RequestPage } from "../shared/gateway-admin/request-log-schemas.ts";
import { jsonRequest } from "./json-request.ts";

export { AdminApiError } from "./json-request.ts";

/** The admin API of one gateway, typed by the shared schemas. */
export class AdminClient {
  readonly #base: string;
  readonly #token: string;

  constructor(baseUrl: string, adminToken: string) {
    this.#base = baseUrl.replace(/\/+$/, "");
    this.#token = adminToken;
  }

  #call<T extends z.ZodType>(schema: T, method: string, path: string, body?: unknown): Promise<z.infer<T>> {
    return jsonRequest(this.#base, this.#token, schema, method, path, body);
  }

  createKey = (request: CreateKeyRequest) => this.#call(CreatedKey, "POST", "/admin/keys", request);
  listKeys = async () => (await this.#call(ListOf(KeyRecord), "GET", "/admin/keys")).data;
  updateKey = (id: string, request: UpdateKeyRequest) => this.#call(KeyRecord, "PATCH", `/admin/keys/${encodeURIComponent(id)}`, request);
  revokeKey = (id: string) => this.#call(KeyRecord, "DELETE", `/admin/keys/${encodeURIComponent(id)}`);
  storedResponses = (id: string) => this.#call(StoredResponsesUsage, "GET", `/admin/keys/${encodeURIComponent(id)}/responses`);
  clearStoredResponses = (id: string) => this.#call(StoredResponsesUsage, "DELETE", `/admin/keys/${encodeURIComponent(id)}/responses`);

  createNodeToken = (request: CreateNodeTokenRequest) => this.#call(CreatedNodeToken, "POST", "/admin/node-tokens", request);
  listNodeTokens = async () => (await this.#call(ListOf(NodeTokenRecord), "GET", "/admin/node-tokens")).data;
  revokeNodeToken = (id: string) => this.#call(NodeTokenRecord, "DELETE", `/admin/node-tokens/${encodeURIComponent(id)}`);

  listNodes = async () => (await this.#call(ListOf(NodeSummary), "GET", "/admin/nodes")).data;
  wakeNode = (name: string) => this.#call(WakeAttempt, "POST", `/admin/nodes/${encodeURIComponent(name)}/wake`);

  usage = async (query: UsageQuery) => (await this.#call(ListOf(UsageRow), "GET", `/admin/usage${searchOf(query)}`)).data;

  /** A page of the request log; the query's values as the route reads them (strings). */
  requests = (query: Record<string, string | number | undefined>) => this.#call(RequestPage, "GET", `/admin/requests${searchOf(query)}`);
}

/** `?a=1&b=2` of the query's set values, or nothing. */
function searchOf(query: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams(
    Object.entries(query)
      .filter((entry): entry is [string, string | number] => entry[1] !== undefined)
      .map(([name, value]) => [name, String(value)]),
  );
  return search.size > 0 ? `?${search}` : "";
}
