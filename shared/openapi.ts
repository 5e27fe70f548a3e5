import * as z from "zod";
import { ANTHROPIC_ROUTE_DOCS } from "./anthropic/route-docs.ts";
import { ErrorBody } from "./errors.ts";
import { LMSTUDIO_CHAT_ROUTE_DOCS } from "./lmstudio-chat/route-docs.ts";
import { RESPONSES_ROUTE_DOCS } from "./openai-responses/route-docs.ts";
import { ChatRequest, CompletionRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "./schemas/requests.ts";
import { LoadResult, ModelList, ModelObject, OpenAIModelObject, UnloadResult } from "./schemas/models.ts";
import { ChatCompletion, EmbeddingsResponse, TextCompletion } from "./schemas/responses.ts";
import { LMGATE_VERSION } from "./version.ts";
import { MODEL_ADMIN_ROUTE_DOCS } from "./model-admin-routes.ts";

/**
 * The OpenAPI 3.1 document, generated from the zod schemas that validate requests (so it cannot
 * drift from them). Tests check that each host's route docs and its router's own route table agree.
 */

/**
 * Who may call a route: an API key (Bearer or `x-api-key`), the admin token, the admin or the
 * metrics token (the gateway's `/metrics`), the metrics token alone (an agent's), a node token
 * (agents' WebSocket), or anyone.
 */
export type Security = "apiKey" | "admin" | "metrics" | "metricsToken" | "node" | "public";

export interface RouteDoc {
  method: "get" | "post" | "patch" | "delete";
  /** OpenAPI path syntax: `/v1/models/{model}`. */
  path: string;
  summary: string;
  tag: string;
  security: Security;
  body?: z.ZodType;
  query?: z.ZodObject;
  /** The success status. Defaults to 200. */
  status?: 200 | 201 | 101;
  response?: z.ZodType;
  /** A success body that is not JSON. */
  text?: { mediaType: string; description: string };
  /** Also answers `text/event-stream` when the body asks for `stream: true`; a string says what its events are. */
  streams?: boolean | string;
  /** The error body, when not OpenAI's. */
  error?: { schema: z.ZodType; description: string };
}

const inference = (family: string, prefix: string, tag: string): RouteDoc[] => [
  { method: "post", path: `${prefix}/chat/completions`, summary: `Chat completion (${family})`, tag, security: "apiKey", body: ChatRequest, response: ChatCompletion, streams: true },
  { method: "post", path: `${prefix}/completions`, summary: `Text completion, no chat template (${family})`, tag, security: "apiKey", body: CompletionRequest, response: TextCompletion, streams: true },
  { method: "post", path: `${prefix}/embeddings`, summary: `Embeddings (${family})`, tag, security: "apiKey", body: EmbeddingsRequest, response: EmbeddingsResponse },
];

export const API_ROUTE_DOCS: RouteDoc[] = [
  { method: "get", path: "/lmstudio-greeting", summary: "LM Studio probe", tag: "meta", security: "public", response: z.object({ lmstudio: z.literal(true) }) },
  {
    method: "get",
    path: "/openapi.json",
    summary: "This document (OpenAPI 3.1)",
    tag: "meta",
    security: "public",
    response: z.looseObject({ openapi: z.string(), info: z.object({ title: z.string(), version: z.string() }), paths: z.record(z.string(), z.unknown()) }),
  },
  { method: "get", path: "/api/v0/models", summary: "Every model, loaded or not", tag: "lmstudio", security: "apiKey", response: ModelList },
  { method: "get", path: "/api/v0/models/{model}", summary: "One model", tag: "lmstudio", security: "apiKey", response: ModelObject },
  ...inference("LM Studio v0, with stats", "/api/v0", "lmstudio"),
  { method: "get", path: "/v1/models", summary: "Models (OpenAI)", tag: "openai", security: "apiKey", response: z.object({ object: z.literal("list"), data: z.array(OpenAIModelObject) }) },
  { method: "get", path: "/v1/models/{model}", summary: "One model (OpenAI)", tag: "openai", security: "apiKey", response: OpenAIModelObject },
  ...inference("OpenAI", "/v1", "openai"),
  ...ANTHROPIC_ROUTE_DOCS,
  ...RESPONSES_ROUTE_DOCS,
  ...LMSTUDIO_CHAT_ROUTE_DOCS,
  { method: "post", path: "/api/v1/models/load", summary: "Load a model", tag: "lmstudio", security: "apiKey", body: LoadRequest, response: LoadResult },
  { method: "post", path: "/api/v1/models/unload", summary: "Unload a model", tag: "lmstudio", security: "apiKey", body: UnloadRequest, response: UnloadResult },
  ...MODEL_ADMIN_ROUTE_DOCS,
];

/** `GET /metrics` of the gateway or an agent: Prometheus text, not JSON. */
export function metricsRouteDoc(summary: string, security: Security): RouteDoc {
  return {
    method: "get",
    path: "/metrics",
    summary,
    tag: "meta",
    security,
    text: { mediaType: "text/plain; version=0.0.4", description: "The Prometheus text exposition format" },
  };
}

/** `/api/v0/models/:model{.+}` → `/api/v0/models/{model}` */
export const honoPathToOpenApi = (path: string) => path.replace(/:(\w+)(\{[^}]*\})?/g, "{$1}");

const SECURITY_SCHEMES = {
  apiKey: { type: "http", scheme: "bearer", description: "An API key (`lmgate keys create`, or the gateway's LMGATE_API_KEY)" },
  xApiKey: { type: "apiKey", in: "header", name: "x-api-key", description: "The same API key, as Anthropic-family clients send it" },
  admin: { type: "http", scheme: "bearer", description: "The gateway's admin token (LMGATE_ADMIN_TOKEN)" },
  metricsToken: { type: "http", scheme: "bearer", description: "LMGATE_METRICS_TOKEN: reads /metrics and nothing else" },
  nodeToken: { type: "http", scheme: "bearer", description: "A node token (`lmgate nodes tokens create`, or LMGATE_NODE_TOKEN)" },
} as const;

/** Each entry is an alternative: any one of the listed schemes lets the caller in. */
const REQUIREMENTS: Record<Security, Array<keyof typeof SECURITY_SCHEMES>> = {
  apiKey: ["apiKey", "xApiKey"],
  admin: ["admin"],
  metrics: ["admin", "metricsToken"],
  metricsToken: ["metricsToken"],
  node: ["nodeToken"],
  public: [],
};

const STATUS_TEXT = { 101: "Switching Protocols", 200: "OK", 201: "Created" } as const;

const jsonSchema = (schema: z.ZodType) => z.toJSONSchema(schema, { io: "input", unrepresentable: "any" });

export function openApiDocument(routes: RouteDoc[], info: { title: string; version: string }) {
  const paths: Record<string, Record<string, unknown>> = {};
  const schemes = new Set(routes.flatMap((route) => REQUIREMENTS[route.security]));
  for (const route of routes) {
    const parameters = [
      ...[...route.path.matchAll(/\{(\w+)\}/g)].map((match) => ({ name: match[1], in: "path", required: true, schema: { type: "string" } })),
      ...Object.entries(route.query?.shape ?? {}).map(([name, schema]) => ({
        name,
        in: "query",
        required: !(schema as z.ZodType).safeParse(undefined).success,
        schema: jsonSchema(schema as z.ZodType),
      })),
    ];
    const content: Record<string, unknown> = route.response ? { "application/json": { schema: jsonSchema(route.response) } } : {};
    if (route.text) content[route.text.mediaType] = { schema: { type: "string", description: route.text.description } };
    if (route.streams) {
      const description = typeof route.streams === "string" ? route.streams : "data: <chunk JSON> events, then data: [DONE]";
      content["text/event-stream"] = { schema: { type: "string", description } };
    }
    const error = route.error ?? { schema: ErrorBody, description: "An OpenAI-shaped error" };
    paths[route.path] ??= {};
    paths[route.path]![route.method] = {
      summary: route.summary,
      tags: [route.tag],
      security: REQUIREMENTS[route.security].map((scheme) => ({ [scheme]: [] })),
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(route.body ? { requestBody: { required: true, content: { "application/json": { schema: jsonSchema(route.body) } } } } : {}),
      responses: {
        [route.status ?? 200]: { description: STATUS_TEXT[route.status ?? 200], ...(Object.keys(content).length > 0 ? { content } : {}) },
        default: { description: error.description, content: { "application/json": { schema: jsonSchema(error.schema) } } },
      },
    };
  }
  return {
    openapi: "3.1.0",
    info,
    paths,
    components: {
      securitySchemes: Object.fromEntries(Object.entries(SECURITY_SCHEMES).filter(([name]) => schemes.has(name as keyof typeof SECURITY_SCHEMES))),
    },
  };
}

/** How a host of the API app (the gateway, an agent in direct mode) describes itself at `/openapi.json`. */
export interface OpenApiOptions {
  /** The document's title: which program serves it. */
  title: string;
  /** Whether the API routes need an API key (the gateway) or are open (an agent in direct mode). */
  apiKeys: boolean;
  /** The host's own routes, served beside the API app. Defaults to none. */
  routes?: RouteDoc[];
}

/** What a host serves at `/openapi.json`: the API app's routes and its own. */
export function hostOpenApiDocument(options: OpenApiOptions) {
  const apiRoutes = options.apiKeys ? API_ROUTE_DOCS : API_ROUTE_DOCS.map((route) => ({ ...route, security: "public" as const }));
  return openApiDocument([...apiRoutes, ...(options.routes ?? [])], { title: options.title, version: LMGATE_VERSION });
}
