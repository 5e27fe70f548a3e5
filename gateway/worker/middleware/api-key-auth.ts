import type { MiddlewareHandler } from "hono";
import { invalidApiKey } from "../../../shared/protocol/api-error.ts";
import type { Caller } from "../../fleet/access/caller.ts";
import { credentialKind, sha256Hex } from "../../fleet/access/credentials.ts";
import type { GatewayEnv } from "../../env.ts";
import { clientAddress } from "../../fleet/access/failed-attempts.ts";
import { requestOrigin } from "./request-origin.ts";
import { bearerToken, secretMatches } from "./secrets.ts";

/**
 * Requires an API key on every route it guards: `Authorization: Bearer <key>`, or `x-api-key`
 * (what the Anthropic family of clients sends). The Worker only works out who is calling; the
 * Fleet decides, in the same hop as routing, whether that key may make this request.
 * Failures are OpenAI's 401 `invalid_api_key`; a key nobody holds is counted by the Fleet against
 * the client's address, like a wrong admin token (fleet/access/failed-attempts.ts).
 */
export function apiKeyAuth(): MiddlewareHandler<GatewayEnv> {
  return async function apiKeyAuth(c, next) {
    const key = bearerToken(c.req.header("authorization")) ?? c.req.header("x-api-key");
    if (key === undefined || key === "") {
      throw invalidApiKey("You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.");
    }
    const caller = await callerOf(key, clientAddress(c.req.raw), c.env.LMGATE_API_KEY, c.env.LMGATE_ADMIN_TOKEN, c.env.LMGATE_NODE_TOKEN);
    const via = requestOrigin(c);
    c.set("caller", via === undefined ? caller : { ...caller, via });
    await next();
  };
}

async function callerOf(key: string, address: string, rootKey: string | undefined, adminToken: string | undefined, rootNodeToken: string | undefined): Promise<Caller> {
  // The admin token may do everything, model management through the API included. Both are compared, so timing does not say which matched.
  const [root, admin] = await Promise.all([secretMatches(key, rootKey), secretMatches(key, adminToken)]);
  if (root || admin) return { kind: "root" };
  // Said plainly, because handing an agent's token to an API client is an easy mistake to make.
  if (credentialKind(key) === "node" || (await secretMatches(key, rootNodeToken))) {
    throw invalidApiKey("That is a node token: node tokens connect agents and cannot call the API.");
  }
  return { kind: "key", hash: await sha256Hex(key), address };
}
