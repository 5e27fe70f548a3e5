import { Hono, type Context, type Env } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import * as z from "zod";
import { mountAnthropicMessages } from "../anthropic/routes.ts";
import { mountLmStudioChat } from "../lmstudio-chat/routes.ts";
import type { ModelAdmin } from "../model-management/model-admin-backend.ts";
import { mountModelRoutes } from "../model-management/model-routes.ts";
import { mountOpenAICompletions } from "../openai-completions/routes.ts";
import { mountResponses } from "../openai-responses/routes.ts";
import { MemoryResponseStore, type ResponseStore } from "../openai-responses/store.ts";
import { ApiError, toApiError, unexpectedEndpoint } from "../protocol/api-error.ts";
import { DocumentedRoutes } from "./documented-routes.ts";
import { errorResponse } from "./error-response.ts";
import type { InferenceBackend } from "./inference-backend.ts";
import { hostOpenApiDocument, OpenApiJson, type OpenApiOptions } from "./openapi-document.ts";

export interface ApiAppOptions<E extends Env> {
  /** The backend for this request: the gateway scopes it to the caller's key. */
  backend: (c: Context<E>) => InferenceBackend;
  /** Listing, downloads and deletes of LM Studio's v1 model API, for this request's caller. */
  modelAdmin: (c: Context<E>) => ModelAdmin;
  /** Larger request bodies get a 413. Defaults to 1 MiB (a Durable Object RPC carries at most 1 MB). */
  maxBodyBytes?: number;
  /** Logs unexpected (5xx) errors; never given request bodies or keys. */
  onUnexpectedError?: (error: unknown) => void;
  /** What `GET /openapi.json` says of the host: its name, its auth, its own routes. */
  openApi: OpenApiOptions;
  /**
   * Hosts that learn of a client that left only by writing to it (see `answerGeneration`): a
   * non-streamed generation still running shortly after its first token answers 200 and sends a space this often.
   */
  nonStreamedPulseMs?: number;
  /** Hosts where a stream's first event may be long in coming (see `answerGeneration`): how long it waits silently, for this request. */
  streamKeepAliveMs?: (c: Context<E>) => number | undefined;
  /** Where `/v1/responses` keeps stored responses, as the caller may see them. Defaults to one store in memory. */
  responseStore?: (c: Context<E>) => ResponseStore;
}

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** Every route of the API (docs/api.md), written once for any `InferenceBackend`. */
export function createApiApp<E extends Env>(options: ApiAppOptions<E>): Hono<E> {
  const app = new Hono<E>();
  const maxSize = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;

  app.use(
    "*",
    bodyLimit({
      maxSize,
      onError: () => {
        throw new ApiError(413, `The request body is larger than the limit of ${maxSize} bytes.`, { code: "payload_too_large" });
      },
    }),
  );

  const meta = new DocumentedRoutes(app, { tag: "meta", security: "public" });

  meta.get("/lmstudio-greeting", { summary: "LM Studio probe", response: z.object({ lmstudio: z.literal(true) }) }, () => ({ lmstudio: true as const }));

  // Public on purpose: it describes the routes, and client generators and API explorers fetch it without credentials.
  let document: ReturnType<typeof hostOpenApiDocument> | undefined;
  meta.get("/openapi.json", { summary: "This document (OpenAPI 3.1)", response: OpenApiJson }, () =>
    (document ??= hostOpenApiDocument({ router: app, ...options.openApi })),
  );

  const generations = { backend: options.backend, pulseMs: options.nonStreamedPulseMs, keepAliveMs: options.streamKeepAliveMs };
  mountModelRoutes(app, options);
  mountOpenAICompletions(app, generations);
  mountAnthropicMessages(app, generations);
  const memoryStore = new MemoryResponseStore();
  const responseStore = options.responseStore ?? (() => memoryStore);
  mountResponses(app, { ...generations, store: responseStore });
  mountLmStudioChat(app, { ...generations, store: responseStore });

  app.notFound((c) => errorResponse(c, unexpectedEndpoint(c.req.raw)));
  app.onError((error, c) => {
    const apiError = error instanceof HTTPException ? new ApiError(error.status, error.message) : toApiError(error);
    if (apiError.status >= 500 && !(error instanceof ApiError)) options.onUnexpectedError?.(error);
    return errorResponse(c, apiError);
  });
  return app;
}
