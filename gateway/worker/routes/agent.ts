import { Hono } from "hono";
import { DocumentedRoutes } from "../../../shared/app/documented-routes.ts";
import { ApiError } from "../../../shared/protocol/api-error.ts";
import { CLOSE_CODES, NODE_NAME_HEADER, NodeName } from "../../../shared/protocol/frames.ts";
import { ROOT_NODE_TOKEN } from "../../fleet/access/caller.ts";
import { credentialKind, sha256Hex } from "../../fleet/access/credentials.ts";
import { unwrap } from "../../fleet/fleet-contract.ts";
import { NODE_DIAL_HEADER, NODE_NAME_OWNED_HEADER, NODE_TOKEN_ID_HEADER, NODE_TOKEN_NODE_HEADER, upgradeAgentReason } from "../../node/node-admission.ts";
import { clientAddress } from "../../fleet/access/failed-attempts.ts";
import { fleetOf, nodeStub, type GatewayEnv } from "../../env.ts";
import { bearerToken, secretMatches } from "../middleware/secrets.ts";

/**
 * `GET /agent/connect`: a node agent's WebSocket, which ends in that node's own object. The Worker
 * reads the node token and has the Fleet check it (its hash, or the deployment's own
 * LMGATE_NODE_TOKEN, compared here in constant time), then hands the upgrade to the object named
 * by the agent's `x-lmgate-node` header, telling it the token and the name that token serves. The
 * object's 101 goes back untouched (its headers are immutable, and it carries the socket).
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
  const name = c.req.header(NODE_NAME_HEADER);
  const admission = unwrap(await fleetOf(c.env).admitNode(tokenHash, name ?? "", clientAddress(c.req.raw)));
  // An agent before protocol 2 does not name itself when it dials: it is told, as a close reason it logs, to upgrade.
  if (name === undefined) return closedAtOnce(CLOSE_CODES.unsupportedProtocol, upgradeAgentReason(1));
  if (!NodeName.safeParse(name).success) return closedAtOnce(CLOSE_CODES.badFrame, "invalid node name: letters, digits, '.', '_' and '-' only");
  // Set by the Worker alone: whatever a client sent under these names is dropped.
  const headers = new Headers(c.req.raw.headers);
  headers.delete(NODE_TOKEN_ID_HEADER);
  headers.delete(NODE_TOKEN_NODE_HEADER);
  headers.delete(NODE_NAME_OWNED_HEADER);
  headers.delete(NODE_DIAL_HEADER);
  if (admission.dial !== undefined) headers.set(NODE_DIAL_HEADER, admission.dial);
  if (admission.nameOwned) headers.set(NODE_NAME_OWNED_HEADER, "1");
  if (admission.tokenId !== undefined) headers.set(NODE_TOKEN_ID_HEADER, admission.tokenId);
  if (admission.tokenNode !== undefined) headers.set(NODE_TOKEN_NODE_HEADER, admission.tokenNode);
  const url = new URL("http://node/connect");
  url.searchParams.set("node", name);
  const upgraded = await nodeStub(c.env, name).fetch(new Request(url, { headers }));
  // Refused by the node object (its own bounds): no socket waits for a hello.
  if (upgraded.status !== 101 && admission.dial !== undefined) await fleetOf(c.env).dialEnded(admission.dial);
  return upgraded;
});

const unauthorized = (message: string) => new ApiError(401, message, { code: "invalid_token" });

/** Accepts the upgrade only to close it with a reason the agent logs: an HTTP error would reach it as a bare status. */
function closedAtOnce(code: number, reason: string): Response {
  const { 0: client, 1: server } = new WebSocketPair();
  server.accept();
  server.close(code, reason);
  return new Response(null, { status: 101, webSocket: client });
}
