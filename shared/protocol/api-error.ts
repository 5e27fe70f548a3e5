import * as z from "zod";

export const ErrorBody = z.object({
  error: z.object({
    message: z.string(),
    type: z.string(),
    param: z.string().nullable(),
    code: z.string().nullable(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

export interface ApiErrorOptions {
  type?: string;
  code?: string | null;
  param?: string | null;
  /** Seconds, sent as `Retry-After` on 429 and 503. */
  retryAfter?: number;
  cause?: unknown;
}

/**
 * The one error type of the API surface: thrown anywhere (app, engine, fleet), rendered once by
 * the app's error handler in OpenAI's shape. It crosses the wire to the gateway as `toBody()`.
 */
export class ApiError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string | null;
  readonly param: string | null;
  readonly retryAfter: number | undefined;

  constructor(status: number, message: string, options: ApiErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = "ApiError";
    this.status = status;
    this.type = options.type ?? defaultType(status);
    this.code = options.code ?? null;
    this.param = options.param ?? null;
    this.retryAfter = options.retryAfter;
  }

  toBody(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }

  /** `body` is another API family's shape of this error (Anthropic's, LM Studio's v1). */
  toResponse(body: unknown = this.toBody()): Response {
    const headers: Record<string, string> = {};
    if (this.retryAfter !== undefined) headers["retry-after"] = String(Math.max(1, Math.ceil(this.retryAfter)));
    return Response.json(body, { status: this.status, headers });
  }

  /** Rebuilds an error that crossed a process boundary as `{status, body}`. */
  static fromBody(status: number, body: ErrorBody, retryAfter?: number): ApiError {
    const { message, type, code, param } = body.error;
    return new ApiError(status, message, { type, code, param, retryAfter });
  }
}

function defaultType(status: number): string {
  if (status === 401) return "invalid_request_error";
  if (status === 403) return "permission_error";
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

export const invalidRequest = (message: string, param: string | null = null) =>
  new ApiError(400, message, { param, code: "invalid_request" });

/** LM Studio lists what exists in its message; clients grep for `model_not_found`. */
export const modelNotFound = (model: string, available: string[]) =>
  new ApiError(
    404,
    `Model "${model}" not found. Please specify a valid model.` +
      (available.length > 0 ? `\n\nYour models:\n\n${available.join("\n")}` : "\n\nNo models available."),
    { param: "model", code: "model_not_found" },
  );

/** The answer to a path or method no route serves, on every host and router. */
export const unexpectedEndpoint = (request: Request) =>
  new ApiError(404, `Unexpected endpoint or method. (${request.method} ${new URL(request.url).pathname})`, { code: "not_found" });

export const invalidApiKey = (message: string) => new ApiError(401, message, { code: "invalid_api_key" });

/** 503: nothing can serve it now; `code` says why more closely where there is more to say (a wake that failed). */
export const noCapacity = (message: string, retryAfter: number, code = "no_capacity") => new ApiError(503, message, { code, retryAfter });

export const contextOverflow = (promptTokens: number, contextLength: number, param = "messages") =>
  new ApiError(
    400,
    `The prompt is ${promptTokens} tokens but the model is loaded with a context length of only ${contextLength} tokens. ` +
      "Shorten the prompt or load the model with a larger context_length.",
    { param, code: "context_length_exceeded" },
  );

/**
 * The caller aborted before its request produced anything. Nobody is left to read it; it only ends
 * the call. 499 is nginx's "client closed request", the usual status for this in logs.
 */
export const requestCancelled = () => new ApiError(499, "The request was cancelled by the client.", { code: "request_cancelled" });

/** Requests still queued when their model unloads; another node (or a reload) can serve them. */
export const modelUnloaded = (model: string) =>
  new ApiError(503, `Model "${model}" was unloaded before the request could run.`, { code: "model_unloaded", retryAfter: 1 });

/**
 * A generation its model's unload cut short (an admin's unload, the agent shutting down): the
 * output is incomplete, so it ends as this error, never with a `finish_reason` that looks complete.
 */
export const cutByUnload = (model: string) =>
  new ApiError(503, `Model "${model}" was unloaded in the middle of the generation; the output is incomplete.`, {
    code: "model_unloaded",
    retryAfter: 1,
  });

export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  return new ApiError(500, "Internal error while handling the request.", { code: "internal_error", cause: error });
}
