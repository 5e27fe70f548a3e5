import { Hono, type MiddlewareHandler } from "hono";
import { expect, test } from "vitest";
import * as z from "zod";
import { DocumentedRoutes, documentedRoutes, publicPaths } from "./documented-routes.ts";
import { errorResponse } from "./error-response.ts";
import { toApiError } from "../protocol/api-error.ts";

/**
 * Routes declared once: the doc given where a route is registered is what the route table yields
 * for `/openapi.json`, through mounting, guards and the wrapping Hono does for a sub-router with
 * its own error handler.
 */

const Item = z.object({ id: z.string() });
const refuseWithoutKey: MiddlewareHandler = async (c, next) => {
  if (c.req.header("x-key") === undefined) return c.json({ error: "no key" }, 401);
  await next();
};

function mountedApp() {
  const items = new Hono();
  // An error handler of its own makes Hono wrap each handler when the router is mounted.
  items.onError((error, c) => errorResponse(c, toApiError(error)));
  new DocumentedRoutes(items, { tag: "items", security: "apiKey" })
    .get("/:id{.+}", { summary: "One item", response: Item }, (c) => ({ id: c.req.param("id") }))
    .post("/", { summary: "Create an item", body: Item, status: 201, response: Item }, refuseWithoutKey, (_c, body) => body)
    .delete("/:id", { summary: "Delete an item" }, () => new Response(null, { status: 204 }));
  const app = new Hono();
  app.use("*", async (_c, next) => next());
  new DocumentedRoutes(app, { tag: "meta", security: "public" }).get("/health", { summary: "Liveness" }, () => new Response("ok"));
  app.route("/items", items);
  return app;
}

test("each registered route appears once, with its doc, its group's defaults and its path as OpenAPI writes it", () => {
  const routes = documentedRoutes(mountedApp().routes);
  expect(routes.map((route) => `${route.method} ${route.path}`)).toEqual(["get /health", "get /items/{id}", "post /items", "delete /items/{id}"]);
  expect(routes[1]).toEqual({ method: "get", path: "/items/{id}", summary: "One item", tag: "items", security: "apiKey", response: Item });
  expect(routes[2]).toMatchObject({ summary: "Create an item", tag: "items", security: "apiKey", body: Item, status: 201 });
  expect(routes[0]).toMatchObject({ tag: "meta", security: "public" });
});

test("a JSON route answers its body with its doc's status; guards run first; a Response goes out as it is", async () => {
  const app = mountedApp();
  const created = await app.request("/items", { method: "POST", headers: { "x-key": "k" }, body: JSON.stringify({ id: "a" }) });
  expect(created.status).toBe(201);
  expect(await created.json()).toEqual({ id: "a" });
  expect((await app.request("/items", { method: "POST", body: JSON.stringify({ id: "a" }) })).status).toBe(401);
  const one = await app.request("/items/a/b");
  expect(one.status).toBe(200);
  expect(await one.json()).toEqual({ id: "a/b" });
  expect((await app.request("/items/a", { method: "DELETE" })).status).toBe(204);
});

test("a route registered without a doc makes the document fail, naming the route", () => {
  const app = mountedApp();
  app.get("/undocumented", (c) => c.text("?"));
  expect(() => documentedRoutes(app.routes)).toThrow("GET /undocumented is served without a doc");
});

test("the public paths are those documented as public, and only those", () => {
  expect(publicPaths(mountedApp().routes)).toEqual(["/health"]);
});

test("a route with a body schema gets its body parsed by it: a bad body is a 400 naming the field, and the handler never runs", async () => {
  const app = mountedApp();
  const wrong = await app.request("/items", { method: "POST", headers: { "x-key": "k" }, body: JSON.stringify({ id: 7 }) });
  expect(wrong.status).toBe(400);
  expect(await wrong.json()).toMatchObject({ error: { message: expect.stringContaining("Invalid 'id'"), param: "id" } });
  const stripped = await app.request("/items", { method: "POST", headers: { "x-key": "k" }, body: JSON.stringify({ id: "a", extra: true }) });
  expect(await stripped.json()).toEqual({ id: "a" });
});

test("a route with a query schema gets its query validated by it: a bad value is a 400 naming the parameter", async () => {
  const app = new Hono();
  app.onError((error, c) => errorResponse(c, toApiError(error)));
  new DocumentedRoutes(app, { tag: "items", security: "apiKey" }).get(
    "/items",
    { summary: "Items by tag", query: z.object({ tag: z.enum(["a", "b"]).optional() }), response: z.array(z.string()) },
    (_c, _body, query) => [query.tag ?? "any"],
  );
  expect(await (await app.request("/items?tag=b")).json()).toEqual(["b"]);
  const wrong = await app.request("/items?tag=c");
  expect(wrong.status).toBe(400);
  expect(await wrong.json()).toMatchObject({ error: { message: expect.stringContaining("Invalid 'tag'"), param: "tag" } });
});
