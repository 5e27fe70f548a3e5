import type { Context, Env, Hono, MiddlewareHandler } from "hono";
import type { H, RouterRoute } from "hono/types";
import { findTargetHandler } from "hono/utils/handler";
import type * as z from "zod";
import type { ApiError } from "../protocol/api-error.ts";
import { parseJsonBody, validate } from "./json-body.ts";

/**
 * Routes declared once: each is registered on its Hono router together with its doc, and
 * `/openapi.json` is read off the router's own route table (`documentedRoutes`), so a route cannot
 * be served without a doc, nor documented without being served.
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
  error?: ErrorShape;
}

/** An API family's own error body: its schema and doc, and how an `ApiError` is written in it (app/error-response.ts). */
export interface ErrorShape {
  schema: z.ZodType;
  description: string;
  encode: (error: ApiError) => unknown;
}

/** What a route says of itself; its method and path are the router's. */
type OperationDoc = Omit<RouteDoc, "method" | "path">;

/** What a group of routes shares, said once for all of them: its tag, who may call it, its error shape when not OpenAI's. */
type RouteDefaults = Pick<OperationDoc, "tag" | "security" | "error">;

/**
 * A route's own part of its doc; `R`, its response schema, types what its handler returns, and `B`
 * and `Q`, its body and query schemas, the body and query the handler is given.
 */
type RouteSpec<R extends z.ZodType | undefined, B extends z.ZodType | undefined, Q extends z.ZodObject | undefined> = Omit<
  OperationDoc,
  keyof RouteDefaults | "response" | "body" | "query"
> & {
  response?: R;
  body?: B;
  query?: Q;
};

/** A JSON route returns its body, sent with its doc's status (declared there only); a stream, text or upgrade returns its `Response`. */
type Answer<R> = Response | (R extends z.ZodType ? z.input<R> : never);
/** A route with a body or query schema gets them parsed and validated by it (a 400 naming the field otherwise). */
type Parsed<S> = S extends z.ZodType ? z.output<S> : undefined;
type RouteHandler<E extends Env, P extends string, R, B, Q> = (c: Context<E, P>, body: Parsed<B>, query: Parsed<Q>) => Answer<R> | Promise<Answer<R>>;

/** Guards (an auth check) run first; the last handler answers. */
type Handlers<E extends Env, P extends string, R, B, Q> = [...guards: MiddlewareHandler<E, P>[], handler: RouteHandler<E, P, R, B, Q>];

/** `routes.get(path, spec, ...guards, handler)`, and the same for each method. */
type Register<E extends Env, Self> = <
  P extends string,
  R extends z.ZodType | undefined = undefined,
  B extends z.ZodType | undefined = undefined,
  Q extends z.ZodObject | undefined = undefined,
>(
  path: P,
  spec: RouteSpec<R, B, Q>,
  ...handlers: Handlers<E, P, R, B, Q>
) => Self;

/** Each registered handler's doc: Hono's route table holds the handler (wrapped when mounted), and so leads here. */
const DOCS = new WeakMap<object, OperationDoc>();

/** Registers routes on `app`, each with its doc, the group's defaults filled in. */
export class DocumentedRoutes<E extends Env> {
  readonly #app: Hono<E>;
  readonly #defaults: RouteDefaults;

  constructor(app: Hono<E>, defaults: RouteDefaults) {
    this.#app = app;
    this.#defaults = defaults;
  }

  readonly get: Register<E, this> = (path, spec, ...handlers) => this.#register("get", path, spec, handlers);
  readonly post: Register<E, this> = (path, spec, ...handlers) => this.#register("post", path, spec, handlers);
  readonly patch: Register<E, this> = (path, spec, ...handlers) => this.#register("patch", path, spec, handlers);
  readonly delete: Register<E, this> = (path, spec, ...handlers) => this.#register("delete", path, spec, handlers);

  #register<P extends string, R, B extends z.ZodType | undefined, Q extends z.ZodObject | undefined>(
    method: RouteDoc["method"],
    path: P,
    spec: RouteSpec<z.ZodType | undefined, B, Q>,
    handlers: Handlers<E, P, R, B, Q>,
  ): this {
    const doc: OperationDoc = { ...this.#defaults, ...spec };
    const guards = handlers.slice(0, -1) as MiddlewareHandler<E, P>[];
    const handler = handlers.at(-1) as RouteHandler<E, P, R, B, Q>;
    // A JSON route's status is its doc's; routes with a status of their own (101) answer with a Response.
    const status = (doc.status ?? 200) as 200 | 201;
    const { body: bodySchema, query: querySchema } = spec;
    const answer = async (c: Context<E, P>) => {
      const body = (bodySchema === undefined ? undefined : await parseJsonBody(c.req.raw, bodySchema)) as Parsed<B>;
      const query = (querySchema === undefined ? undefined : validate(querySchema, c.req.query())) as Parsed<Q>;
      const result = await handler(c, body, query);
      return result instanceof Response ? result : c.json(result, status);
    };
    DOCS.set(answer, doc);
    const chain: H[] = [...guards, answer];
    this.#app.on(method.toUpperCase(), path, ...(chain as [H, ...H[]]));
    return this;
  }
}

/** `/api/v0/models/:model{.+}` → `/api/v0/models/{model}` */
export const honoPathToOpenApi = (path: string) => path.replace(/:(\w+)(\{[^}]*\})?/g, "{$1}");

const docOf = (route: RouterRoute) => DOCS.get(findTargetHandler(route.handler));

/**
 * The operations in a router's route table, each with its doc and its path as OpenAPI writes it.
 * Middleware (method ALL) is no operation. A route registered without a doc is a programming error.
 */
export function documentedRoutes(routes: RouterRoute[]): RouteDoc[] {
  const operations = new Map<string, RouteDoc | undefined>();
  for (const route of routes) {
    if (route.method === "ALL") continue;
    const key = `${route.method} ${route.path}`;
    const doc = docOf(route);
    // A route's guards are entries of their own, without a doc, at the same method and path.
    if (doc === undefined) {
      if (!operations.has(key)) operations.set(key, undefined);
      continue;
    }
    operations.set(key, { ...doc, method: route.method.toLowerCase() as RouteDoc["method"], path: honoPathToOpenApi(route.path) });
  }
  return [...operations].map(([key, doc]) => {
    if (doc === undefined) throw new Error(`${key} is served without a doc: register it through DocumentedRoutes.`);
    return doc;
  });
}

/** The paths of a router whose routes are documented as public: what a host's credential check lets through. */
export const publicPaths = (routes: RouterRoute[]): string[] => routes.filter((route) => docOf(route)?.security === "public").map((route) => route.path);

/** The documented operation a request was routed to (from `c.req.matchedRoutes`), if any: its tag, method and path. */
export function matchedDoc(routes: RouterRoute[]): RouteDoc | undefined {
  for (const route of routes.toReversed()) {
    const doc = route.method === "ALL" ? undefined : docOf(route);
    if (doc !== undefined) return { ...doc, method: route.method.toLowerCase() as RouteDoc["method"], path: honoPathToOpenApi(route.path) };
  }
  return undefined;
}
