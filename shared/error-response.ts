import { anthropicErrorResponse } from "./anthropic/errors.ts";
import type { ApiError } from "./errors.ts";

/** An error in the shape of the API family the request came in on: their clients parse only their own. */
export function errorResponse(request: Request, error: ApiError): Response {
  const path = new URL(request.url).pathname;
  if (path === "/v1/messages" || path.startsWith("/v1/messages/")) return anthropicErrorResponse(error);
  return error.toResponse();
}
