import { Hono } from "hono";
import { ApiError } from "../../shared/errors.ts";
import { parseJsonBody } from "../../shared/json-body.ts";
import { CreateKeyRequest, CreateNodeTokenRequest, UpdateKeyRequest, UsageQuery } from "../../shared/schemas/admin.ts";
import { fleetStub, type GatewayEnv } from "../env.ts";
import { tokenAuth } from "../middleware/token-auth.ts";

const notFound = (what: string, id: string) => new ApiError(404, `No ${what} with id "${id}".`, { code: "not_found" });

/** `/admin/*`: the admin token only. Keys, node tokens, usage, the live fleet. Secrets appear only in create responses. */
export const adminRoutes = new Hono<GatewayEnv>()
  .use(
    tokenAuth({
      label: "admin token",
      secrets: (env) => [env.LMGATE_ADMIN_TOKEN],
      refuse: (env) => [{ secret: env.LMGATE_API_KEY, message: "That is an API key: the admin API needs the admin token." }],
    }),
  )
  .get("/nodes", async (c) => c.json({ data: await fleetStub(c.env).listNodes() }))
  .get("/stats", async (c) => c.json(await fleetStub(c.env).stats()))
  .post("/keys", async (c) => c.json(await fleetStub(c.env).createKey(await parseJsonBody(c.req.raw, CreateKeyRequest)), 201))
  .get("/keys", async (c) => c.json({ data: await fleetStub(c.env).listKeys() }))
  .patch("/keys/:id", async (c) => {
    const record = await fleetStub(c.env).updateKey(c.req.param("id"), await parseJsonBody(c.req.raw, UpdateKeyRequest));
    if (record === null) throw notFound("key", c.req.param("id"));
    return c.json(record);
  })
  .delete("/keys/:id", async (c) => {
    const record = await fleetStub(c.env).revokeKey(c.req.param("id"));
    if (record === null) throw notFound("key", c.req.param("id"));
    return c.json(record);
  })
  .post("/node-tokens", async (c) => {
    const { node } = await parseJsonBody(c.req.raw, CreateNodeTokenRequest);
    return c.json(await fleetStub(c.env).createNodeToken(node), 201);
  })
  .get("/node-tokens", async (c) => c.json({ data: await fleetStub(c.env).listNodeTokens() }))
  .delete("/node-tokens/:id", async (c) => {
    const record = await fleetStub(c.env).revokeNodeToken(c.req.param("id"));
    if (record === null) throw notFound("node token", c.req.param("id"));
    return c.json(record);
  })
  .get("/usage", async (c) => {
    const query = UsageQuery.safeParse(c.req.query());
    if (!query.success) {
      const issue = query.error.issues[0];
      throw new ApiError(400, `Invalid '${issue?.path.join(".")}': ${issue?.message}`, { param: issue?.path.join(".") ?? null });
    }
    return c.json({ data: await fleetStub(c.env).usage(query.data) });
  })
  .all("*", (c) => {
    throw new ApiError(404, `Unexpected endpoint or method. (${c.req.method} ${new URL(c.req.url).pathname})`, { code: "not_found" });
  });
