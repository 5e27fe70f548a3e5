import type { MiddlewareHandler } from "hono";
import { ApiError } from "../../../shared/protocol/api-error.ts";
import type { GatewayBindings, GatewayEnv } from "../../env.ts";
import { clientAddress, tooManyAttempts } from "../../fleet/access/failed-attempts.ts";
import { fleetOf } from "../../env.ts";
import { bearerToken, secretMatches } from "./secrets.ts";

export interface TokenAuthOptions {
  /** What the token is called in error messages, e.g. "node token". */
  label: string;
  /** The tokens accepted here; missing ones accept nothing (with none configured, everything is refused). */
  secrets: (env: GatewayBindings) => Array<string | undefined>;
  /** Other secrets that must never be accepted here, with what to tell whoever presents them. */
  refuse?: (env: GatewayBindings) => Array<{ secret: string | undefined; message: string }>;
}

/**
 * Requires `Authorization: Bearer <token>` equal (in constant time) to one of the configured
 * secrets. A wrong one is counted by the Fleet (fleet/access/failed-attempts.ts): an address past
 * its allowance of wrong ones gets 429 for them until its window passes; the right one always passes.
 */
export function tokenAuth(options: TokenAuthOptions): MiddlewareHandler<GatewayEnv> {
  return async (c, next) => {
    const token = bearerToken(c.req.header("authorization"));
    if (token === undefined) throw unauthorized(`Send the ${options.label} as 'Authorization: Bearer <token>'.`);
    // Every secret is compared, so the time taken does not say which one matched.
    const matches = await Promise.all(options.secrets(c.env).map((secret) => secretMatches(token, secret)));
    if (!matches.includes(true)) {
      const wait = await fleetOf(c.env).failedAttempt(clientAddress(c.req.raw));
      if (wait !== null) throw tooManyAttempts(options.label, wait);
      for (const refused of options.refuse?.(c.env) ?? []) {
        if (await secretMatches(token, refused.secret)) throw unauthorized(refused.message);
      }
      throw unauthorized(`Invalid ${options.label}.`);
    }
    await next();
  };
}

const unauthorized = (message: string) => new ApiError(401, message, { code: "invalid_token" });
