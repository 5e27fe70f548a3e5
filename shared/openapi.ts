import { z } from "zod";
import { ErrorBody } from "./errors.ts";
import { ChatRequest, CompletionRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "./schemas/requests.ts";
import { LoadResult, ModelList, ModelObject, OpenAIModelObject, UnloadResult } from "./schemas/models.ts";
import { ChatCompletion, EmbeddingsResponse, TextCompletion } from "./schemas/responses.ts";

/**
 * The OpenAPI 3.1 document, generated from the zod schemas that validate requests (so it cannot
 * drift from them). A test checks that this table and the router's own route table agree.
 */
export type Security = "apiKey" | "admin" | "public";

export interface RouteDoc {
  method: "get" | "post" | "patch" | "delete";
  /** OpenAPI path syntax: `/v1/models/{model}`. */
  path: string;
  summary: string;
  tag: string;
  security: Security;
  body?: z.ZodType;
  query?: z.ZodObject;
  response?: z.ZodType;
  /** Also answers `text/event-stream` when the body asks for `stream: true`. */
  streams?: boolean;
}

const inference = (family: string, prefix: string, tag: string): RouteDoc[] => [
  { method: "post", path: `${prefix}/chat/completions`, summary: `Chat completion (${family})`, tag, security: "apiKey", body: ChatRequest, response: ChatCompletion, streams: true },
  { method: "post", path: `${prefix}/completions`, summary: `Text completion, no chat template (${family})`, tag, security: "apiKey", body: CompletionRequest, response: TextCompletion, streams: true },
  { method: "post", path: `${prefix}/embeddings`, summary: `Embeddings (${family})`, tag, security: "apiKey", body: EmbeddingsRequest, response: EmbeddingsResponse },
];

export const API_ROUTE_DOCS: RouteDoc[] = [
  { method: "get", path: "/lmstudio-greeting", summary: "LM Studio probe", tag: "meta", security: "public", response: z.object({ lmstudio: z.literal(true) }) },
  { method: "get", path: "/api/v0/models", summary: "Every model, loaded or not", tag: "lmstudio", security: "apiKey", response: ModelList },
  { method: "get", path: "/api/v0/models/{model}", summary: "One model", tag: "lmstudio", security: "apiKey", response: ModelObject },
  ...inference("LM Studio v0, with stats", "/api/v0", "lmstudio"),
  { method: "get", path: "/v1/models", summary: "Models (OpenAI)", tag: "openai", security: "apiKey", response: z.object({ object: z.literal("list"), data: z.array(OpenAIModelObject) }) },
  { method: "get", path: "/v1/models/{model}", summary: "One model (OpenAI)", tag: "openai", security: "apiKey", response: OpenAIModelObject },
  ...inference("OpenAI", "/v1", "openai"),
  { method: "post", path: "/api/v1/models/load", summary: "Load a model", tag: "lmstudio", security: "apiKey", body: LoadRequest, response: LoadResult },
  { method: "post", path: "/api/v1/models/unload", summary: "Unload a model", tag: "lmstudio", security: "apiKey", body: UnloadRequest, response: UnloadResult },
];

/** `/api/v0/models/:model{.+}` → `/api/v0/models/{model}` */
export const honoPathToOpenApi = (path: string) => path.replace(/:(\w+)(\{[^}]*\})?/g, "{$1}");

const jsonSchema = (schema: z.ZodType) => z.toJSONSchema(schema, { io: "input", unrepresentable: "any" });

export function openApiDocument(routes: RouteDoc[], info: { title: string; version: string }) {
  const paths: Record<string, Record<string, unknown>> = {};
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
    if (route.streams) content["text/event-stream"] = { schema: { type: "string", description: "data: <chunk JSON> events, then data: [DONE]" } };
    paths[route.path] ??= {};
    paths[route.path]![route.method] = {
      summary: route.summary,
      tags: [route.tag],
      security: route.security === "public" ? [] : [{ [route.security]: [] }],
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(route.body ? { requestBody: { required: true, content: { "application/json": { schema: jsonSchema(route.body) } } } } : {}),
      responses: {
        "200": { description: "OK", ...(Object.keys(content).length > 0 ? { content } : {}) },
        default: { description: "An OpenAI-shaped error", content: { "application/json": { schema: jsonSchema(ErrorBody) } } },
      },
    };
  }
  return {
    openapi: "3.1.0",
    info,
    paths,
    components: {
      securitySchemes: {
        apiKey: { type: "http", scheme: "bearer", description: "An API key (lmgate keys create)" },
        admin: { type: "http", scheme: "bearer", description: "The gateway's admin token" },
      },
    },
  };
}
