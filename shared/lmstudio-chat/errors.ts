import type { ApiError } from "../protocol/api-error.ts";
import type { ErrorShape } from "../app/documented-routes.ts";
import { LmErrorBody } from "./schemas.ts";

/** LM Studio's native error types: `model_not_found` by code, otherwise by status. */
function errorType(error: ApiError): string {
  if (error.code === "model_not_found") return "model_not_found";
  return error.status >= 500 ? "internal_error" : "invalid_request";
}

export function lmErrorBody(error: ApiError): LmErrorBody {
  return {
    error: {
      type: errorType(error),
      message: error.message,
      ...(error.code !== null ? { code: error.code } : {}),
      ...(error.param !== null ? { param: error.param } : {}),
    },
  };
}

/** The error shape the family's routes declare: LM Studio's v1 clients parse only this one. */
export const LM_STUDIO_V1_ERRORS: ErrorShape = { schema: LmErrorBody, description: "An LM Studio v1-shaped error", encode: lmErrorBody };
