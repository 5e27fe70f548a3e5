import { anthropicErrorBody } from "../anthropic/errors.ts";
import type { ApiError } from "../protocol/api-error.ts";
import { lmErrorBody } from "../lmstudio-chat/errors.ts";

/** An error body in the shape of the API family the request came in on: their clients parse only their own. */
export function errorBodyFor(request: Request, error: ApiError): unknown {
  const path = new URL(request.url).pathname;
  if (path === "/v1/messages" || path.startsWith("/v1/messages/")) return anthropicErrorBody(error);
  if (path === "/api/v1/chat") return lmErrorBody(error);
  return error.toBody();
}

export function errorResponse(request: Request, error: ApiError): Response {
  return error.toResponse(errorBodyFor(request, error));
}
