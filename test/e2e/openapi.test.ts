import { Validator } from "@seriousme/openapi-schema-validator";
import { afterAll, beforeAll, expect, test } from "vitest";
import { directOpenApi, startDirectServer, type DirectServer } from "../../node-agent/serving/direct-server.ts";
import { createApiApp } from "../../shared/app/api-app.ts";
import type { InferenceBackend } from "../../shared/app/inference-backend.ts";
import { honoPathToOpenApi } from "../../shared/app/documented-routes.ts";
import type { ModelAdmin } from "../../shared/model-management/model-admin-backend.ts";
import { hostOpenApiDocument } from "../../shared/app/openapi-document.ts";
import { startGateway, type GatewayProcess } from "../harness/gateway-process.ts";

/**
 * Both `/openapi.json` documents against the OpenAPI 3.1 schema, with a real validator (it compiles
 * JSON Schemas into functions, which workerd forbids: the document a real gateway serves is checked
 * here, and gateway/test/openapi.test.ts checks in workerd that it lists every route of the gateway's router).
 */

type Document = { openapi: string; paths: Record<string, Record<string, unknown>> };

async function expectValidOpenApi31(document: Document): Promise<void> {
  expect(document.openapi).toBe("3.1.0");
  const result = await new Validator().validate(document);
  expect(result.errors).toBeUndefined();
  expect(result.valid).toBe(true);
}

const operations = (document: Document) =>
  Object.entries(document.paths).flatMap(([path, byMethod]) => Object.keys(byMethod).map((method) => `${method.toUpperCase()} ${path}`));

const noInference = (): never => {
  throw new Error("this test serves no inference");
};
const backend: InferenceBackend = {
  listModels: noInference,
  chat: noInference,
  completion: noInference,
  embeddings: noInference,
  loadModel: noInference,
  unloadModel: noInference,
};

const modelAdmin: ModelAdmin = {
  listModels: noInference,
  download: noInference,
  downloadStatus: noInference,
  cancelDownload: noInference,
  deleteModel: noInference,
};

let server: DirectServer;
let gateway: GatewayProcess;
let gatewayDocument: Document;
beforeAll(async () => {
  server = await startDirectServer({ backend, modelAdmin, host: "127.0.0.1", port: 0 });
  gateway = await startGateway();
  gatewayDocument = (await (await fetch(`${gateway.url}/openapi.json`)).json()) as Document;
}, 120_000);
afterAll(async () => {
  await server?.close();
  await gateway?.stop();
});

test("the validator is strict enough to refuse a broken document", async () => {
  const broken = { ...gatewayDocument, info: { title: "no version" } };
  expect((await new Validator().validate(broken)).valid).toBe(false);
});

test("the gateway's /openapi.json validates as OpenAPI 3.1, with the admin and meta routes and their security", async () => {
  const document = gatewayDocument;
  await expectValidOpenApi31(document);
  expect(operations(document)).toEqual(expect.arrayContaining(["POST /admin/keys", "GET /admin/usage", "GET /metrics", "GET /health", "GET /openapi.json"]));
  const paths = document.paths as Record<string, Record<string, { security: unknown[] }>>;
  expect(paths["/v1/chat/completions"]?.post?.security).toEqual([{ apiKey: [] }, { xApiKey: [] }]);
  expect(paths["/admin/keys"]?.post?.security).toEqual([{ admin: [] }]);
  expect(paths["/metrics"]?.get?.security).toEqual([{ admin: [] }, { metricsToken: [] }]);
  expect(paths["/openapi.json"]?.get?.security).toEqual([]);
});

test("an agent's direct server serves a valid OpenAPI 3.1 document of exactly its routes, all open", async () => {
  const response = await fetch(`${server.url}/openapi.json`);
  expect(response.status).toBe(200);
  const document = (await response.json()) as Document;
  await expectValidOpenApi31(document);
  // The direct server's router is this app: its route table, less middleware (method ALL).
  const app = createApiApp({ backend: () => backend, modelAdmin: () => modelAdmin, openApi: directOpenApi() });
  expect(document).toEqual(JSON.parse(JSON.stringify(hostOpenApiDocument({ ...directOpenApi(), router: app }))));
  const served = app.routes.filter((route) => route.method !== "ALL").map((route) => `${route.method} ${honoPathToOpenApi(route.path)}`);
  expect(new Set(operations(document))).toEqual(new Set(served));
  const securities = Object.values(document.paths).flatMap((byMethod) => Object.values(byMethod).map((operation) => (operation as { security: unknown[] }).security));
  expect(securities.every((security) => security.length === 0)).toBe(true);
});

test("with metrics, the direct server's document lists /metrics, guarded by the metrics token when it has one", async () => {
  const metrics = async () => new Response("");
  for (const guarded of [false, true]) {
    const withMetrics = await startDirectServer({ backend, modelAdmin, host: "127.0.0.1", port: 0, metrics: { handler: metrics, guarded } });
    try {
      const document = (await (await fetch(`${withMetrics.url}/openapi.json`)).json()) as Document;
      await expectValidOpenApi31(document);
      const paths = document.paths as Record<string, Record<string, { security: unknown[]; responses: Record<string, { content?: object }> }>>;
      expect(paths["/metrics"]?.get?.security).toEqual(guarded ? [{ metricsToken: [] }] : []);
      expect(Object.keys(paths["/metrics"]?.get?.responses["200"]?.content ?? {})).toEqual(["text/plain; version=0.0.4"]);
    } finally {
      await withMetrics.close();
    }
  }
});
