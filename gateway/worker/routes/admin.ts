import { Hono } from "hono";
import { ApiError, unexpectedEndpoint } from "../../../shared/protocol/api-error.ts";
import { DocumentedRoutes } from "../../../shared/app/documented-routes.ts";
import {
  CreatedKey,
  CreatedNodeToken,
  CreateKeyRequest,
  CreateNodeTokenRequest,
  FleetStats,
  KeyRecord,
  ListOf,
  NodeSummary,
  NodeTokenRecord,
  StoredResponsesUsage,
  UpdateKeyRequest,
  UsageQuery,
  UsageRow,
  WakeAttempt,
} from "../../../shared/gateway-admin/admin-schemas.ts";
import { RequestPage, RequestQuery } from "../../../shared/gateway-admin/request-log-schemas.ts";
import { fleetOf, type GatewayEnv } from "../../env.ts";
import { unwrap } from "../../fleet/fleet-contract.ts";
import { tokenAuth } from "../middleware/token-auth.ts";

/** What the Fleet answered for the id `what` names; null (it knows no such id) is a 404. */
async function found<T>(what: string, id: string, answer: Promise<T | null>): Promise<T> {
  const value = await answer;
  if (value === null) throw new ApiError(404, `No ${what} with id "${id}".`, { code: "not_found" });
  return value;
}

/** `/admin/*`: the admin token only. Keys, node tokens, usage, the live fleet. Secrets appear only in create responses. */
export const adminRoutes = new Hono<GatewayEnv>().use(
  tokenAuth({
    label: "admin token",
    secrets: (env) => [env.LMGATE_ADMIN_TOKEN],
    refuse: (env) => [{ secret: env.LMGATE_API_KEY, message: "That is an API key: the admin API needs the admin token." }],
  }),
);

new DocumentedRoutes(adminRoutes, { tag: "admin", security: "admin" })
  .get("/nodes", { summary: "Every node, online or not, with its models and load", response: ListOf(NodeSummary) }, async (c) => ({
    data: await fleetOf(c.env).listNodes(),
  }))
  .post(
    "/nodes/:name/wake",
    { summary: "Wake an offline node: a peer on its network sends the magic packet (answers once it is sent)", response: WakeAttempt },
    async (c) => unwrap(await fleetOf(c.env).wakeNode(c.req.param("name"))),
  )
  .get("/stats", { summary: "The fleet now, and its last 15 minutes of traffic", response: FleetStats }, async (c) => fleetOf(c.env).stats())
  .post("/keys", { summary: "Create an API key (its secret is shown only here)", body: CreateKeyRequest, status: 201, response: CreatedKey }, async (c, body) =>
    fleetOf(c.env).createKey(body),
  )
  .get("/keys", { summary: "Every API key, without secrets", response: ListOf(KeyRecord) }, async (c) => ({ data: await fleetOf(c.env).listKeys() }))
  .patch("/keys/:id", { summary: "Change a key's name or scopes", body: UpdateKeyRequest, response: KeyRecord }, async (c, body) =>
    found("key", c.req.param("id"), fleetOf(c.env).updateKey(c.req.param("id"), body)),
  )
  .delete("/keys/:id", { summary: "Revoke a key, from its next request on", response: KeyRecord }, async (c) =>
    found("key", c.req.param("id"), fleetOf(c.env).revokeKey(c.req.param("id"))),
  )
  .get("/keys/:id/responses", { summary: "A key's stored responses against its share", response: StoredResponsesUsage }, async (c) =>
    found("key", c.req.param("id"), fleetOf(c.env).storedResponses(c.req.param("id"))),
  )
  .delete("/keys/:id/responses", { summary: "Delete every response a key stored", response: StoredResponsesUsage }, async (c) =>
    found("key", c.req.param("id"), fleetOf(c.env).clearStoredResponses(c.req.param("id"))),
  )
  .post("/node-tokens", { summary: "Create a node token (its secret is shown only here)", body: CreateNodeTokenRequest, status: 201, response: CreatedNodeToken }, async (c, request) =>
    fleetOf(c.env).createNodeToken(request),
  )
  .get("/node-tokens", { summary: "Every node token, without secrets", response: ListOf(NodeTokenRecord) }, async (c) => ({
    data: await fleetOf(c.env).listNodeTokens(),
  }))
  .delete("/node-tokens/:id", { summary: "Revoke a node token and disconnect its nodes", response: NodeTokenRecord }, async (c) =>
    found("node token", c.req.param("id"), fleetOf(c.env).revokeNodeToken(c.req.param("id"))),
  )
  .get("/usage", { summary: "Usage per key, model and UTC day", query: UsageQuery, response: ListOf(UsageRow) }, async (c, _body, query) => ({
    data: await fleetOf(c.env).usage(query),
  }))
  .get("/requests", { summary: "The request log: one row per finished request, newest first, filtered and paged", query: RequestQuery, response: RequestPage }, async (c, _body, query) =>
    fleetOf(c.env).requests(query),
  );

adminRoutes.all("*", (c) => {
  throw unexpectedEndpoint(c.req.raw);
});
