import { Hono } from "hono";
import { except } from "hono/combine";
import { createApiApp } from "../shared/app.ts";
import { ApiError, toApiError } from "../shared/errors.ts";
import { fleetStub, type GatewayEnv } from "./env.ts";
import { FleetBackend } from "./fleet-backend.ts";
import { FleetModelAdmin } from "./fleet-model-admin.ts";
import { apiKeyAuth } from "./middleware/api-key-auth.ts";
import { corsFromEnv } from "./middleware/cors-from-env.ts";
import { GATEWAY_OPENAPI } from "./route-docs.ts";
import { adminRoutes } from "./routes/admin.ts";
import { agentRoutes } from "./routes/agent.ts";
import { metricsRoutes } from "./routes/metrics.ts";

export { Fleet } from "./fleet/fleet.ts";

const logUnexpected = (error: unknown) => console.error("lmgate gateway: unexpected error:", error);

const app = new Hono<GatewayEnv>();

// First, so a browser's preflight (which carries no key) gets its answer before any auth.
app.use("*", corsFromEnv());
// Public: health checks, the greeting LM Studio's tools probe before they have a key, and the API's description.
app.get("/health", (c) => c.json({ status: "ok" }));
app.route("/agent", agentRoutes);
app.route("/admin", adminRoutes);
app.route("/metrics", metricsRoutes);
app.use("*", except(["/lmstudio-greeting", "/openapi.json"], apiKeyAuth()));
app.route(
  "/",
  createApiApp<GatewayEnv>({
    backend: (c) => new FleetBackend(fleetStub(c.env), (promise) => c.executionCtx.waitUntil(promise), c.get("caller")),
    modelAdmin: (c) => new FleetModelAdmin(fleetStub(c.env), c.get("caller")),
    onUnexpectedError: logUnexpected,
    openApi: GATEWAY_OPENAPI,
  }),
);

app.notFound((c) =>
  new ApiError(404, `Unexpected endpoint or method. (${c.req.method} ${new URL(c.req.url).pathname})`, { code: "not_found" }).toResponse(),
);
app.onError((error) => {
  const apiError = toApiError(error);
  if (apiError.status >= 500 && !(error instanceof ApiError)) logUnexpected(error);
  return apiError.toResponse();
});

export default app;
