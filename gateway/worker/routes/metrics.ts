import { Hono } from "hono";
import { DocumentedRoutes } from "../../../shared/app/documented-routes.ts";
import { PROMETHEUS_TEXT } from "../../../shared/app/openapi-document.ts";
import { fleetOf, type GatewayEnv } from "../../env.ts";
import { PROMETHEUS_CONTENT_TYPE } from "../../fleet/metrics/registry.ts";
import { tokenAuth } from "../middleware/token-auth.ts";

/**
 * `GET /metrics`: the fleet's Prometheus metrics, for the admin token or `LMGATE_METRICS_TOKEN`
 * (a scraper's config then holds a token that can read metrics and do nothing else).
 */
export const metricsRoutes = new Hono<GatewayEnv>();

new DocumentedRoutes(metricsRoutes, { tag: "meta", security: "metrics" }).get(
  "/",
  { summary: "Prometheus metrics of the fleet", text: PROMETHEUS_TEXT },
  tokenAuth({
    label: "admin token or metrics token",
    secrets: (env) => [env.LMGATE_ADMIN_TOKEN, env.LMGATE_METRICS_TOKEN],
    refuse: (env) => [{ secret: env.LMGATE_API_KEY, message: "That is an API key: /metrics needs the admin token or LMGATE_METRICS_TOKEN." }],
  }),
  async (c) => c.body(await fleetOf(c.env).metrics(), 200, { "content-type": PROMETHEUS_CONTENT_TYPE, "cache-control": "no-store" }),
);
