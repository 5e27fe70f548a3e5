import { Hono, type Context, type Env } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { InferenceBackend } from "./backend.ts";
import { ApiError, modelNotFound, toApiError } from "./errors.ts";
import { parseJsonBody } from "./json-body.ts";
import type { ModelAdmin } from "./model-admin.ts";
import { mountModelAdminRoutes } from "./model-admin-routes.ts";
import { hostOpenApiDocument, type OpenApiOptions } from "./openapi.ts";
import {
  ChunkShaper,
  completionBody,
  embeddingsBody,
  openAIModel,
  responseId,
  unixSeconds,
  type CompletionKind,
  type Flavor,
} from "./responses.ts";
import { ChatRequest, CompletionRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "./schemas/requests.ts";
import type { GenerationEvent } from "./schemas/generation.ts";
import { SSE_DONE, sseData, sseResponse } from "./sse.ts";

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
}

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** Every route of API.md, written once for any `InferenceBackend`. */
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

  app.get("/lmstudio-greeting", (c) => c.json({ lmstudio: true }));

  // Public on purpose: it describes the routes, and client generators and API explorers fetch it without credentials.
  let document: ReturnType<typeof hostOpenApiDocument> | undefined;
  app.get("/openapi.json", (c) => c.json((document ??= hostOpenApiDocument(options.openApi))));

  app.get("/api/v0/models", async (c) => c.json({ object: "list", data: await options.backend(c).listModels() }));
  app.get("/api/v0/models/:model{.+}", async (c) => c.json(await findModel(options.backend(c), c.req.param("model"))));
  app.get("/v1/models", async (c) => {
    const models = await options.backend(c).listModels();
    return c.json({ object: "list", data: models.map(openAIModel) });
  });
  app.get("/v1/models/:model{.+}", async (c) => c.json(openAIModel(await findModel(options.backend(c), c.req.param("model")))));

  for (const [prefix, flavor] of [["/api/v0", "lmstudio"], ["/v1", "openai"]] as const) {
    app.post(`${prefix}/chat/completions`, async (c) => {
      const body = await parseJsonBody(c.req.raw, ChatRequest);
      return generate(c.req.raw, "chat", body.model, flavor, body.stream, body.stream_options?.include_usage, (signal) =>
        options.backend(c).chat(body, signal),
      );
    });
    app.post(`${prefix}/completions`, async (c) => {
      const body = await parseJsonBody(c.req.raw, CompletionRequest);
      return generate(c.req.raw, "text", body.model, flavor, body.stream, body.stream_options?.include_usage, (signal) =>
        options.backend(c).completion(body, signal),
      );
    });
    app.post(`${prefix}/embeddings`, async (c) => {
      const body = await parseJsonBody(c.req.raw, EmbeddingsRequest);
      return c.json(embeddingsBody(await options.backend(c).embeddings(body, c.req.raw.signal), body.encoding_format));
    });
  }

  app.post("/api/v1/models/load", async (c) => c.json(await options.backend(c).loadModel(await parseJsonBody(c.req.raw, LoadRequest))));
  app.post("/api/v1/models/unload", async (c) =>
    c.json(await options.backend(c).unloadModel(await parseJsonBody(c.req.raw, UnloadRequest))),
  );
  mountModelAdminRoutes(app, options.modelAdmin);

  app.notFound((c) =>
    new ApiError(404, `Unexpected endpoint or method. (${c.req.method} ${new URL(c.req.url).pathname})`, {
      code: "not_found",
    }).toResponse(),
  );
  app.onError((error) => {
    const apiError = error instanceof HTTPException ? new ApiError(error.status, error.message) : toApiError(error);
    if (apiError.status >= 500 && !(error instanceof ApiError)) options.onUnexpectedError?.(error);
    return apiError.toResponse();
  });
  return app;
}

async function findModel(backend: InferenceBackend, id: string) {
  const models = await backend.listModels();
  const model = models.find((candidate) => candidate.id === id);
  if (!model) throw modelNotFound(id, models.map((candidate) => candidate.id));
  return model;
}

/**
 * Runs a generation and answers with JSON or SSE. The first event is awaited before the
 * response starts, so a failure to admit the request (unknown model, no capacity, prompt too
 * long) still gets its proper status instead of a 200 stream that carries an error.
 */
async function generate(
  request: Request,
  kind: CompletionKind,
  model: string,
  flavor: Flavor,
  stream: boolean | undefined,
  includeUsage: boolean | undefined,
  run: (signal: AbortSignal) => AsyncIterable<GenerationEvent>,
): Promise<Response> {
  const abort = new AbortController();
  const signal = AbortSignal.any([abort.signal, request.signal]);
  const events = run(signal)[Symbol.asyncIterator]();
  const head = { id: responseId(kind), created: unixSeconds(), model };

  if (!stream) {
    let text = "";
    for (let next = await events.next(); !next.done; next = await events.next()) {
      const event = next.value;
      if (event.type === "delta") text += event.text;
      if (event.type === "done") return Response.json(completionBody(kind, head, text, event.result, flavor));
    }
    throw new ApiError(502, "The backend ended the generation without a result.", { code: "incomplete_generation" });
  }

  const first = await events.next();
  const shaper = new ChunkShaper(kind, head, flavor);
  let pending: GenerationEvent | undefined = first.done ? undefined : first.value;
  let finished = first.done === true;

  const framesFor = (event: GenerationEvent): Uint8Array[] => {
    if (event.type === "start") return shaper.opening().map(sseData);
    if (event.type === "delta") return [sseData(shaper.delta(event.text))];
    return [...shaper.closing(event.result, includeUsage === true).map(sseData), SSE_DONE];
  };

  return sseResponse(
    async () => {
      if (finished) return null;
      try {
        const event = pending ?? (await nextEvent(events));
        pending = undefined;
        if (event === null) {
          finished = true;
          return [sseData(incompleteStream().toBody())];
        }
        if (event.type === "done") finished = true;
        return framesFor(event);
      } catch (error) {
        // Mid-stream the status is already sent: the error travels as an event and the stream ends.
        finished = true;
        return [sseData(toApiError(error).toBody())];
      }
    },
    () => abort.abort(new ApiError(499, "The client closed the connection.", { code: "client_closed" })),
  );
}

async function nextEvent(events: AsyncIterator<GenerationEvent>): Promise<GenerationEvent | null> {
  const next = await events.next();
  return next.done ? null : next.value;
}

const incompleteStream = () =>
  new ApiError(502, "The backend ended the stream without a result.", { code: "incomplete_generation" });
