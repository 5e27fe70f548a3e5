import type { z } from "zod";
import {
  CreatedKey,
  CreatedNodeToken,
  KeyRecord,
  ListOf,
  NodeSummary,
  NodeTokenRecord,
  UsageRow,
  WakeAttempt,
  type CreateKeyRequest,
  type UpdateKeyRequest,
  type UsageQuery,
} from "../shared/schemas/admin.ts";
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

  createNodeToken = (node: string) => this.#call(CreatedNodeToken, "POST", "/admin/node-tokens", { node });
  listNodeTokens = async () => (await this.#call(ListOf(NodeTokenRecord), "GET", "/admin/node-tokens")).data;
  revokeNodeToken = (id: string) => this.#call(NodeTokenRecord, "DELETE", `/admin/node-tokens/${encodeURIComponent(id)}`);

  listNodes = async () => (await this.#call(ListOf(NodeSummary), "GET", "/admin/nodes")).data;
  wakeNode = (name: string) => this.#call(WakeAttempt, "POST", `/admin/nodes/${encodeURIComponent(name)}/wake`);

  usage = async (query: UsageQuery) => {
    const search = new URLSearchParams(Object.entries(query).filter((entry): entry is [string, string] => entry[1] !== undefined));
    return (await this.#call(ListOf(UsageRow), "GET", `/admin/usage${search.size > 0 ? `?${search}` : ""}`)).data;
  };
}
