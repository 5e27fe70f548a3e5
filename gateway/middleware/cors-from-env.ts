import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import type { GatewayEnv } from "../env.ts";

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
        allowHeaders: ["authorization", "content-type", "x-api-key"],
        maxAge: 600,
      });
      configured = { setting, handler };
    }
    return configured.handler(c, next);
  };
}
