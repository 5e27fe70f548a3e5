import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import type { GatewayEnv } from "../../env.ts";

/**
 * What the official SDKs send from a browser: the key (Bearer, or `x-api-key` with Anthropic's),
 * Anthropic's version and beta headers and its browser opt-in, and both SDKs' platform headers
 * and `user-agent` (which Firefox lets a page set, and then asks about).
 */
const SDK_HEADERS = [
  "authorization",
  "content-type",
  "x-api-key",
  "anthropic-version",
  "anthropic-beta",
  "anthropic-dangerous-direct-browser-access",
  "x-stainless-arch",
  "x-stainless-lang",
  "x-stainless-os",
  "x-stainless-package-version",
  "x-stainless-retry-count",
  "x-stainless-runtime",
  "x-stainless-runtime-version",
  "x-stainless-timeout",
  "x-stainless-helper-method",
  "user-agent",
];

/**
 * CORS is off unless `LMGATE_CORS_ORIGINS` lists the origins allowed to call the gateway from a
 * browser (comma-separated, or `*`). Off by default because a browser page that can reach the
 * gateway could otherwise spend a key pasted into it; the dashboard needs none (same origin).
 */
export function corsFromEnv(): MiddlewareHandler<GatewayEnv> {
  let configured: { setting: string; handler: MiddlewareHandler } | undefined;
  return async function corsFromEnv(c, next) {
    const setting = c.env.LMGATE_CORS_ORIGINS?.trim() ?? "";
    if (setting === "") return next();
    if (configured?.setting !== setting) {
      const origins = setting.split(",").map((origin) => origin.trim()).filter((origin) => origin !== "");
      const handler = cors({
        origin: origins.includes("*") ? "*" : origins,
        allowMethods: ["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        allowHeaders: SDK_HEADERS,
        maxAge: 600,
      });
      configured = { setting, handler };
    }
    return configured.handler(c, next);
  };
}
