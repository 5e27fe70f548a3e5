import { Hono } from "hono";
import { DocumentedRoutes } from "../../../shared/app/documented-routes.ts";
import { KeyView } from "../../../shared/gateway-admin/key-view-schemas.ts";
import { fleetOf, type GatewayEnv } from "../../env.ts";
import { unwrap } from "../../fleet/fleet-contract.ts";

/**
 * `GET /v1/key` (OpenRouter's `GET /api/v1/key`): a key holder's own view of their key. Behind the
 * API key check like the API; the Fleet answers from the caller's own rows only.
 */
export const keyRoutes = new Hono<GatewayEnv>();

new DocumentedRoutes(keyRoutes, { tag: "key", security: "apiKey" }).get(
  "/v1/key",
  { summary: "The calling key: scopes, limits and what is left, usage by model and day, recent requests, models it may use", response: KeyView },
  async (c) => unwrap(await fleetOf(c.env).keyInfo(c.get("caller"))),
);
