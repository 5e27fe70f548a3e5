import type { MiddlewareHandler } from "hono";
import { ApiError } from "../../../shared/errors.ts";
import type { GatewayBindings, GatewayEnv } from "../../env.ts";
import { FailedAttempts } from "./failed-attempts.ts";
import { bearerToken, secretMatches } from "./secrets.ts";

export interface TokenAuthOptions {
  /** What the token is called in error messages, e.g. "node token". */
  label: string;
  /** The tokens accepted here; missing ones accept nothing (with none configured, everything is refused). */
  secrets: (env: GatewayBindings) => Array<string | undefined>;
  /** Other secrets that must never be accepted here, with what to tell whoever presents them. */
  refuse?: (env: GatewayBindings) => Array<{ secret: string | undefined; message: string }>;
}

/** Wrong tokens one client address may present per minute before it has to wait. */
const MAX_FAILED_ATTEMPTS = 10;
const ATTEMPT_WINDOW_MS = 60_000;

/**
 * Requires `Authorization: Bearer <token>` equal (in constant time) to one of the configured
 * secrets. An address that presented too many wrong ones gets 429 until its window passes.
 */
export function tokenAuth(options: TokenAuthOptions): MiddlewareHandler<GatewayEnv> {
  const failures = new FailedAttempts(MAX_FAILED_ATTEMPTS, ATTEMPT_WINDOW_MS);
  return async (c, next) => {
    // Set by Cloudflare's edge; absent only in local development.
    const address = c.req.header("cf-connecting-ip") ?? "local";
    const wait = failures.blockedFor(address, Date.now());
    if (wait !== null) {
      throw new ApiError(429, `Too many wrong ${options.label}s from this address; try again in ${Math.ceil(wait)} s.`, {
        code: "too_many_attempts",
        retryAfter: wait,
      });
    }
    const token = bearerToken(c.req.header("authorization"));
    if (token === undefined) throw unauthorized(`Send the ${options.label} as 'Authorization: Bearer <token>'.`);
    // Every secret is compared, so the time taken does not say which one matched.
    const matches = await Promise.all(options.secrets(c.env).map((secret) => secretMatches(token, secret)));
    if (!matches.includes(true)) {
      failures.fail(address, Date.now());
      for (const refused of options.refuse?.(c.env) ?? []) {
        if (await secretMatches(token, refused.secret)) throw unauthorized(refused.message);
      }
      throw unauthorized(`Invalid ${options.label}.`);
    }
    await next();
  };
}

const unauthorized = (message: string) => new ApiError(401, message, { code: "invalid_token" });
