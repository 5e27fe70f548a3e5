import { anthropicErrorBody } from "./anthropic/errors.ts";
import type { ApiError } from "./errors.ts";
import { lmErrorBody } from "./lmstudio-chat/errors.ts";

/** An error in the shape of the API family the request came in on: their clients parse only their own. */
export function errorResponse(request: Request, error: ApiError): Response {
  const path = new URL(request.url).pathname;
  if (path === "/v1/messages" || path.startsWith("/v1/messages/")) return error.toResponse(anthropicErrorBody(error));
  if (path === "/api/v1/chat") return error.toResponse(lmErrorBody(error));
  return error.toResponse();
}
