import type { Context } from "hono";
import type { RouterRoute } from "hono/types";
import { matchedDoc } from "./documented-routes.ts";
import type { ApiError } from "../protocol/api-error.ts";

/**
 * An error body in the shape of the API family whose route the request reached (`matchedRoutes`):
 * their clients parse only their own. Each family declares its encoder with its routes; a request
 * that reached none gets OpenAI's shape.
 */
export function errorBodyFor(matchedRoutes: RouterRoute[], error: ApiError): unknown {
  const encode = matchedDoc(matchedRoutes)?.error?.encode;
  return encode === undefined ? error.toBody() : encode(error);
}

export function errorResponse(c: Context, error: ApiError): Response {
  return error.toResponse(errorBodyFor(c.req.matchedRoutes, error));
}
