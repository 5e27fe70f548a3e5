import type { ApiError } from "../protocol/api-error.ts";
import type { LmErrorBody } from "./schemas.ts";

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
