import { Hono, type Context, type Env } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { mountAnthropicMessages } from "./anthropic/routes.ts";
import type { InferenceBackend } from "./backend.ts";
import { errorResponse } from "./error-response.ts";
import { ChoiceTexts, type ChoiceRequest } from "./choices.ts";
import { ApiError, modelNotFound, toApiError } from "./errors.ts";
import { parseJsonBody } from "./json-body.ts";
import { mountLmStudioChat } from "./lmstudio-chat/routes.ts";
import { mountResponses } from "./openai-responses/routes.ts";
import { MemoryResponseStore, type ResponseStore } from "./openai-responses/store.ts";
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
import { jsonGeneration, streamGeneration, type RunGeneration } from "./generation-stream.ts";
import { SSE_DONE, sseData } from "./sse.ts";

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
   * Hosts that learn of a client that left only by writing to it (see `jsonGeneration`): a
   * non-streamed generation still running shortly after its first token answers 200 and sends a space this often.
   */
  nonStreamedPulseMs?: number;
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
      const choices = { count: body.n ?? 1, logprobs: body.logprobs === true };
      return generate(c.req.raw, "chat", body.model, flavor, body.stream, body.stream_options?.include_usage, options.nonStreamedPulseMs, choices, (signal) =>
        options.backend(c).chat(body, signal),
      );
    });
    app.post(`${prefix}/completions`, async (c) => {
      const body = await parseJsonBody(c.req.raw, CompletionRequest);
      const choices = { count: body.n ?? 1, logprobs: body.logprobs !== undefined };
      return generate(c.req.raw, "text", body.model, flavor, body.stream, body.stream_options?.include_usage, options.nonStreamedPulseMs, choices, (signal) =>
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

  mountAnthropicMessages(app, { backend: options.backend, pulseMs: options.nonStreamedPulseMs });
  const memoryStore = new MemoryResponseStore();
  const responseStore = options.responseStore ?? (() => memoryStore);
  mountResponses(app, { backend: options.backend, store: responseStore, pulseMs: options.nonStreamedPulseMs });
  mountLmStudioChat(app, { backend: options.backend, store: responseStore, pulseMs: options.nonStreamedPulseMs });

  app.notFound((c) =>
    errorResponse(
      c.req.raw,
      new ApiError(404, `Unexpected endpoint or method. (${c.req.method} ${new URL(c.req.url).pathname})`, { code: "not_found" }),
    ),
  );
  app.onError((error, c) => {
    const apiError = error instanceof HTTPException ? new ApiError(error.status, error.message) : toApiError(error);
    if (apiError.status >= 500 && !(error instanceof ApiError)) options.onUnexpectedError?.(error);
    return errorResponse(c.req.raw, apiError);
  });
  return app;
}

async function findModel(backend: InferenceBackend, id: string) {
  const models = await backend.listModels();
  const model = models.find((candidate) => candidate.id === id);
  if (!model) throw modelNotFound(id, models.map((candidate) => candidate.id));
  return model;
}

/** Runs a chat or text completion and answers with JSON, or SSE when the request streams. */
async function generate(
  request: Request,
  kind: CompletionKind,
  model: string,
  flavor: Flavor,
  stream: boolean | undefined,
  includeUsage: boolean | undefined,
  pulseMs: number | undefined,
  choices: ChoiceRequest,
  run: RunGeneration,
): Promise<Response> {
  const head = { id: responseId(kind), created: unixSeconds(), model };
  if (!stream) {
    const texts = new ChoiceTexts(choices.count);
    const tapped: RunGeneration = (signal) => texts.tap(run(signal));
    return jsonGeneration(request, tapped, (_text, result) => completionBody(kind, head, texts.all, result, flavor, choices), pulseMs);
  }
  const shaper = new ChunkShaper(kind, head, flavor, choices);
  return streamGeneration(request, run, {
    frames: (event) => {
      if (event.type === "start") return shaper.opening().map(sseData);
      if (event.type === "delta") return [sseData(shaper.delta(event.text, event.index, event.logprobs))];
      return [...shaper.closing(event.result, includeUsage === true).map(sseData), SSE_DONE];
    },
    failure: (error) => [sseData(error.toBody())],
  });
}
