import { Hono } from "hono";
import { except } from "hono/combine";
import * as z from "zod";
import { createApiApp } from "../../shared/app/api-app.ts";
import { DocumentedRoutes, publicPaths } from "../../shared/app/documented-routes.ts";
import { errorResponse } from "../../shared/app/error-response.ts";
import { ApiError, toApiError, unexpectedEndpoint } from "../../shared/protocol/api-error.ts";
import type { Caller } from "../fleet/access/caller.ts";
import { fleetOf, nodeOf, type GatewayEnv } from "../env.ts";
import { positiveInt } from "../vars.ts";
import { FleetBackend } from "./clients/fleet-backend.ts";
import { FleetModelAdmin } from "./clients/fleet-model-admin.ts";
import { FleetResponseStore } from "./clients/fleet-response-store.ts";
import { apiKeyAuth } from "./middleware/api-key-auth.ts";
import { keyFirst } from "./middleware/key-first.ts";
import { corsFromEnv } from "./middleware/cors-from-env.ts";
import { GATEWAY_OPENAPI } from "./openapi.ts";
import { adminRoutes } from "./routes/admin.ts";
import { agentRoutes } from "./routes/agent.ts";
import { keyRoutes } from "./routes/key.ts";
import { metricsRoutes } from "./routes/metrics.ts";

export { Fleet } from "../fleet/fleet.ts";
export { NodeObject } from "../node/node-object.ts";

/** A streamed request still waiting after this long gets its 200 and a comment line, and one more as often (LMGATE_STREAM_KEEPALIVE_MS). */
const STREAM_KEEPALIVE_MS = 10_000;

const logUnexpected = (error: unknown) => console.error("lmgate gateway: unexpected error:", error);

const app = new Hono<GatewayEnv>();

// First, so a browser's preflight (which carries no key) gets its answer before any auth.
app.use("*", corsFromEnv());
// Public: health checks.
new DocumentedRoutes(app, { tag: "meta", security: "public" }).get("/health", { summary: "Liveness", response: z.object({ status: z.literal("ok") }) }, () => ({
  status: "ok" as const,
}));
app.route("/agent", agentRoutes);
app.route("/admin", adminRoutes);
app.route("/metrics", metricsRoutes);
const api = createApiApp<GatewayEnv>({
  backend: (c) => new FleetBackend(fleetOf(c.env), (name) => nodeOf(c.env, name), (promise) => c.executionCtx.waitUntil(promise), c.get("caller")),
  responseStore: (c) => new FleetResponseStore(fleetOf(c.env), c.get("caller")),
  modelAdmin: (c) => new FleetModelAdmin(fleetOf(c.env), c.get("caller")),
  onUnexpectedError: logUnexpected,
  // The whole router's routes, the gateway's own with the API app's.
  openApi: { ...GATEWAY_OPENAPI, router: app },
  // Under `wrangler dev` a client that leaves is noticed only by writing to it.
  nonStreamedPulseMs: 100,
  // A stream may wait long for its first event (the queue, a node being woken): comments keep it alive.
  streamKeepAliveMs: (c) => positiveInt(c.env.LMGATE_STREAM_KEEPALIVE_MS, STREAM_KEEPALIVE_MS),
});
// The API routes documented as public (the greeting LM Studio's tools probe before they have a key, and
// the API's description) are the ones served without a key.
app.use("*", except(publicPaths(api.routes), apiKeyAuth(), keyFirst()));
app.route("/", keyRoutes);
app.route("/", api);

app.notFound(async (c) => {
  // The key is checked first (by the Fleet, as on every route), so a wrong one gets its 401 here too.
  const caller = c.get("caller") as Caller | undefined;
  if (caller?.kind === "key") await new FleetBackend(fleetOf(c.env), (name) => nodeOf(c.env, name), (promise) => c.executionCtx.waitUntil(promise), caller).listModels();
  return errorResponse(c, unexpectedEndpoint(c.req.raw));
});
app.onError((error, c) => {
  const apiError = toApiError(error);
  if (apiError.status >= 500 && !(error instanceof ApiError)) logUnexpected(error);
  return errorResponse(c, apiError);
});

export default app;
