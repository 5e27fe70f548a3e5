import type { RouterRoute } from "hono/types";
import * as z from "zod";
import { documentedRoutes, type RouteDoc, type Security } from "./documented-routes.ts";
import { ErrorBody } from "../protocol/api-error.ts";
import { LMGATE_VERSION } from "../host/version.ts";

/**
 * The OpenAPI 3.1 document, generated from the zod schemas that validate requests (so it cannot
 * drift from them) and from the route docs registered with each route (shared/app/documented-routes.ts).
 */

/** What `GET /metrics` of the gateway or an agent answers: Prometheus text, not JSON. */
export const PROMETHEUS_TEXT = { mediaType: "text/plain; version=0.0.4", description: "The Prometheus text exposition format" };

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

/** A JSON document, as `GET /openapi.json` answers. */
export const OpenApiJson = z.looseObject({ openapi: z.string(), info: z.object({ title: z.string(), version: z.string() }), paths: z.record(z.string(), z.unknown()) });

/** How a host of the API app (the gateway, an agent in direct mode) describes itself at `/openapi.json`. */
export interface OpenApiOptions {
  /** The document's title: which program serves it. */
  title: string;
  /** Whether the API routes need an API key (the gateway) or are open (an agent in direct mode). */
  apiKeys: boolean;
  /** The router whose route table is documented, when the host mounts the API app in its own (the gateway). Defaults to the API app. */
  router?: { routes: RouterRoute[] };
  /** Routes the host answers before any router (an agent's `/metrics`). Defaults to none. */
  unrouted?: RouteDoc[];
}

/** What a host serves at `/openapi.json`: every route of its router, and those it answers outside it. */
export function hostOpenApiDocument(options: OpenApiOptions & { router: { routes: RouterRoute[] } }) {
  const routed = documentedRoutes(options.router.routes).map((route) =>
    options.apiKeys || route.security !== "apiKey" ? route : { ...route, security: "public" as const },
  );
  return openApiDocument([...routed, ...(options.unrouted ?? [])], { title: options.title, version: LMGATE_VERSION });
}
