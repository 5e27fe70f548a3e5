import { Hono } from "hono";
import { ApiError } from "../../shared/errors.ts";
import { fleetStub, type GatewayEnv } from "../env.ts";
import { tokenAuth } from "../middleware/token-auth.ts";

/**
 * `GET /agent/connect`: a node agent's WebSocket. The node token is checked here, in the
 * stateless Worker, so an unauthenticated upgrade never reaches the Fleet object; the Fleet's
 * 101 goes back untouched (its headers are immutable, and it carries the socket).
 */
export const agentRoutes = new Hono<GatewayEnv>().get(
  "/connect",
  async (c, next) => {
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
      throw new ApiError(426, "Node agents connect here with a WebSocket upgrade.", { code: "upgrade_required" });
    }
    await next();
  },
  tokenAuth({
    label: "node token",
    secret: (env) => env.LMGATE_NODE_TOKEN,
    refuse: (env) => [{ secret: env.LMGATE_API_KEY, message: "That is an API key: only node tokens can connect as nodes." }],
  }),
  (c) => fleetStub(c.env).fetch(c.req.raw),
);
