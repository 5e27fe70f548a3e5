import { expect, test } from "vitest";
import { exports } from "cloudflare:workers";
import { honoPathToOpenApi } from "../../shared/app/documented-routes.ts";
import { hostOpenApiDocument } from "../../shared/app/openapi-document.ts";
import app from "../worker/index.ts";
import { GATEWAY_OPENAPI } from "../worker/openapi.ts";

/**
 * `GET /openapi.json` on the gateway, in workerd: public, and listing exactly the routes the
 * router serves (a route registered without its doc fails the document, and so this test).
 * (test/e2e/openapi.test.ts validates this same document as OpenAPI 3.1 in Node, where the
 * validator can compile its schemas.)
 */

test("/openapi.json is public and documents exactly the routes in the gateway's route table", async () => {
  const response = await exports.default.fetch("http://gateway.test/openapi.json");
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/^application\/json/);
  const document = (await response.json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
  expect(document).toEqual(JSON.parse(JSON.stringify(hostOpenApiDocument({ ...GATEWAY_OPENAPI, router: app }))));
  expect(document.openapi).toBe("3.1.0");

  const documented = Object.entries(document.paths).flatMap(([path, operations]) => Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`));
  // Middleware and catch-alls are registered as method ALL; every other entry is a route a client can call.
  const served = app.routes.filter((route) => route.method !== "ALL").map((route) => `${route.method} ${honoPathToOpenApi(route.path)}`);
  expect(new Set(documented)).toEqual(new Set(served));
  expect(documented).toHaveLength(new Set(documented).size);
});
