import { Hono } from "hono";
import { DocumentedRoutes } from "../../../shared/documented-routes.ts";
import { ApiError } from "../../../shared/errors.ts";
import { NODE_TOKEN_HASH_HEADER, ROOT_NODE_TOKEN } from "../../fleet/access/caller.ts";
import { credentialKind, sha256Hex } from "../../fleet/access/credentials.ts";
import { fleetStub, type GatewayEnv } from "../../env.ts";
import { bearerToken, secretMatches } from "../middleware/secrets.ts";

/**
 * `GET /agent/connect`: a node agent's WebSocket. The Worker reads the node token and hands the
 * Fleet its hash (or says it is the deployment's own LMGATE_NODE_TOKEN, compared here in constant
 * time); the Fleet checks it against its stored tokens before accepting the socket. The Fleet's
 * 101 goes back untouched (its headers are immutable, and it carries the socket).
 */
export const agentRoutes = new Hono<GatewayEnv>();

new DocumentedRoutes(agentRoutes, { tag: "agent", security: "node" }).get("/connect", { summary: "A node agent's WebSocket (upgrade)", status: 101 }, async (c) => {
  if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
    throw new ApiError(426, "Node agents connect here with a WebSocket upgrade.", { code: "upgrade_required" });
  }
  const token = bearerToken(c.req.header("authorization"));
  if (token === undefined) throw unauthorized("Send the node token as 'Authorization: Bearer <token>'.");
  if (credentialKind(token) === "key" || (await secretMatches(token, c.env.LMGATE_API_KEY))) {
    throw unauthorized("That is an API key: only node tokens can connect as nodes.");
  }
  const tokenHash = (await secretMatches(token, c.env.LMGATE_NODE_TOKEN)) ? ROOT_NODE_TOKEN : await sha256Hex(token);
  // Set by the Worker alone: whatever a client sent under this name is overwritten.
  const headers = new Headers(c.req.raw.headers);
  headers.set(NODE_TOKEN_HASH_HEADER, tokenHash);
  return fleetStub(c.env).fetch(new Request(c.req.raw, { headers }));
});

const unauthorized = (message: string) => new ApiError(401, message, { code: "invalid_token" });
