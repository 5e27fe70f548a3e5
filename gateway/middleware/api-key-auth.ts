import type { Context, MiddlewareHandler } from "hono";
import { ApiError, invalidApiKey } from "../../shared/errors.ts";
import type { GatewayEnv } from "../env.ts";
import { bearerToken, secretMatches } from "./secrets.ts";

export type KeyCheck = { ok: true } | { ok: false; message: string };

export interface ApiKeyAuthOptions {
  /**
   * Decides whether a presented key may call the API. This is the seam where real key
   * management (hashed keys with scopes in the Fleet's storage) replaces the one dev key.
   */
  verify: (key: string, c: Context<GatewayEnv>) => Promise<KeyCheck>;
}

/**
 * Requires an API key on every route it guards: `Authorization: Bearer <key>`, or `x-api-key`
 * (what the Anthropic family of clients sends). Failures are OpenAI's 401 `invalid_api_key`.
 */
export function apiKeyAuth(options: ApiKeyAuthOptions): MiddlewareHandler<GatewayEnv> {
  return async (c, next) => {
    const key = bearerToken(c.req.header("authorization")) ?? c.req.header("x-api-key");
    if (key === undefined || key === "") {
      throw invalidApiKey("You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.");
    }
    const check = await options.verify(key, c);
    if (!check.ok) throw invalidApiKey(check.message);
    await next();
  };
}

/** The single development key of `LMGATE_API_KEY`. */
export const devApiKey: ApiKeyAuthOptions["verify"] = async (key, c) => {
  const expected = c.env.LMGATE_API_KEY;
  if (expected === undefined || expected === "") {
    throw new ApiError(500, "The gateway has no API key configured (set the LMGATE_API_KEY secret).", {
      code: "gateway_misconfigured",
    });
  }
  if (await secretMatches(key, expected)) return { ok: true };
  // Said plainly, because handing an agent's token to an API client is an easy mistake to make.
  if (await secretMatches(key, c.env.LMGATE_NODE_TOKEN)) {
    return { ok: false, message: "That is a node token: node tokens connect agents and cannot call the API." };
  }
  return { ok: false, message: "Incorrect API key provided." };
};
