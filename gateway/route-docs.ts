import * as z from "zod";
import { metricsRouteDoc, type OpenApiOptions, type RouteDoc } from "../shared/openapi.ts";
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
  UpdateKeyRequest,
  UsageQuery,
  UsageRow,
} from "../shared/schemas/admin.ts";

/** `/admin/*` (routes/admin.ts), for `/openapi.json`. */
const ADMIN_ROUTE_DOCS: RouteDoc[] = [
  { method: "get", path: "/admin/nodes", summary: "Every node, online or not, with its models and load", tag: "admin", security: "admin", response: ListOf(NodeSummary) },
  { method: "get", path: "/admin/stats", summary: "The fleet now, and its last 15 minutes of traffic", tag: "admin", security: "admin", response: FleetStats },
  { method: "post", path: "/admin/keys", summary: "Create an API key (its secret is shown only here)", tag: "admin", security: "admin", body: CreateKeyRequest, status: 201, response: CreatedKey },
  { method: "get", path: "/admin/keys", summary: "Every API key, without secrets", tag: "admin", security: "admin", response: ListOf(KeyRecord) },
  { method: "patch", path: "/admin/keys/{id}", summary: "Change a key's name or scopes", tag: "admin", security: "admin", body: UpdateKeyRequest, response: KeyRecord },
  { method: "delete", path: "/admin/keys/{id}", summary: "Revoke a key, from its next request on", tag: "admin", security: "admin", response: KeyRecord },
  {
    method: "post",
    path: "/admin/node-tokens",
    summary: "Create a node token (its secret is shown only here)",
    tag: "admin",
    security: "admin",
    body: CreateNodeTokenRequest,
    status: 201,
    response: CreatedNodeToken,
  },
  { method: "get", path: "/admin/node-tokens", summary: "Every node token, without secrets", tag: "admin", security: "admin", response: ListOf(NodeTokenRecord) },
  { method: "delete", path: "/admin/node-tokens/{id}", summary: "Revoke a node token and disconnect its nodes", tag: "admin", security: "admin", response: NodeTokenRecord },
  { method: "get", path: "/admin/usage", summary: "Usage per key, model and UTC day", tag: "admin", security: "admin", query: UsageQuery, response: ListOf(UsageRow) },
];

/** The gateway's own routes beside the API app's: health, metrics, the agents' socket, the admin API. */
const GATEWAY_ROUTE_DOCS: RouteDoc[] = [
  { method: "get", path: "/health", summary: "Liveness", tag: "meta", security: "public", response: z.object({ status: z.literal("ok") }) },
  metricsRouteDoc("Prometheus metrics of the fleet", "metrics"),
  { method: "get", path: "/agent/connect", summary: "A node agent's WebSocket (upgrade)", tag: "agent", security: "node", status: 101 },
  ...ADMIN_ROUTE_DOCS,
];

/** The gateway's `/openapi.json`: every API route needs a key; its own routes are listed above. */
export const GATEWAY_OPENAPI: OpenApiOptions = { title: "lmgate gateway", apiKeys: true, routes: GATEWAY_ROUTE_DOCS };
