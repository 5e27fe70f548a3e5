import { Hono } from "hono";
import { ApiError } from "../../shared/errors.ts";
import { fleetStub, type GatewayEnv } from "../env.ts";
import { tokenAuth } from "../middleware/token-auth.ts";

/** `/admin/*`: the admin token only. Today: the live node list. */
export const adminRoutes = new Hono<GatewayEnv>()
  .use(
    tokenAuth({
      label: "admin token",
      secret: (env) => env.LMGATE_ADMIN_TOKEN,
      refuse: (env) => [{ secret: env.LMGATE_API_KEY, message: "That is an API key: the admin API needs the admin token." }],
    }),
  )
  .get("/nodes", async (c) => c.json({ data: await fleetStub(c.env).listNodes() }))
  .all("*", (c) => {
    throw new ApiError(404, `Unexpected endpoint or method. (${c.req.method} ${new URL(c.req.url).pathname})`, { code: "not_found" });
  });
