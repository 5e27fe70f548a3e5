import { Hono, type Context, type Env } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import * as z from "zod";
import { mountAnthropicMessages } from "../anthropic/routes.ts";
import type { InferenceBackend } from "./inference-backend.ts";
import { errorResponse } from "./error-response.ts";
import { ChoiceTexts, type ChoiceRequest } from "../openai-completions/choice-texts.ts";
import { ApiError, modelNotFound, toApiError, unexpectedEndpoint } from "../protocol/api-error.ts";
import { mountLmStudioChat } from "../lmstudio-chat/routes.ts";
import { mountResponses } from "../openai-responses/routes.ts";
import { MemoryResponseStore, type ResponseStore } from "../openai-responses/store.ts";
import type { ModelAdmin } from "../model-management/model-admin-backend.ts";
import { mountModelAdminRoutes } from "../model-management/model-routes.ts";
import { DocumentedRoutes } from "./documented-routes.ts";
import { hostOpenApiDocument, OpenApiJson, type OpenApiOptions } from "./openapi-document.ts";
import {
  ChunkShaper,
  completionBody,
  embeddingsBody,
  openAIModel,
  responseId,
  unixSeconds,
  type CompletionKind,
  type Flavor,
} from "../openai-completions/completion-bodies.ts";
import { LoadResult, ModelList, ModelObject, OpenAIModelObject, UnloadResult } from "../protocol/model-schemas.ts";
import { ChatRequest, CompletionRequest, EmbeddingsRequest, LoadRequest, UnloadRequest } from "../protocol/request-schemas.ts";
import { ChatCompletion, EmbeddingsResponse, TextCompletion } from "../openai-completions/completion-schemas.ts";
import { jsonGeneration, streamGeneration, type RunGeneration } from "./generation-response.ts";
import { SSE_DONE, sseData } from "./sse-response.ts";

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

  const meta = new DocumentedRoutes(app, { tag: "meta", security: "public" });
  const lmstudio = new DocumentedRoutes(app, { tag: "lmstudio", security: "apiKey" });
  const openai = new DocumentedRoutes(app, { tag: "openai", security: "apiKey" });

  meta.get("/lmstudio-greeting", { summary: "LM Studio probe", response: z.object({ lmstudio: z.literal(true) }) }, () => ({ lmstudio: true as const }));

  // Public on purpose: it describes the routes, and client generators and API explorers fetch it without credentials.
  let document: ReturnType<typeof hostOpenApiDocument> | undefined;
  meta.get("/openapi.json", { summary: "This document (OpenAPI 3.1)", response: OpenApiJson }, () =>
    (document ??= hostOpenApiDocument({ router: app, ...options.openApi })),
  );

  lmstudio.get("/api/v0/models", { summary: "Every model, loaded or not", response: ModelList }, async (c) => ({
    object: "list" as const,
    data: await options.backend(c).listModels(),
  }));
  lmstudio.get("/api/v0/models/:model{.+}", { summary: "One model", response: ModelObject }, async (c) => findModel(options.backend(c), c.req.param("model")));
  openai.get("/v1/models", { summary: "Models (OpenAI)", response: z.object({ object: z.literal("list"), data: z.array(OpenAIModelObject) }) }, async (c) => {
    const models = await options.backend(c).listModels();
    return { object: "list" as const, data: models.map(openAIModel) };
  });
  openai.get("/v1/models/:model{.+}", { summary: "One model (OpenAI)", response: OpenAIModelObject }, async (c) =>
    openAIModel(await findModel(options.backend(c), c.req.param("model"))),
  );

  for (const [prefix, flavor, family] of [["/api/v0", "lmstudio", "LM Studio v0, with stats"], ["/v1", "openai", "OpenAI"]] as const) {
    const routes = flavor === "lmstudio" ? lmstudio : openai;
    routes.post(`${prefix}/chat/completions`, { summary: `Chat completion (${family})`, body: ChatRequest, response: ChatCompletion, streams: true }, async (c, body) => {
      const choices = { count: body.n ?? 1, logprobs: body.logprobs === true };
      return generate(c.req.raw, "chat", body.model, flavor, body.stream, body.stream_options?.include_usage, options.nonStreamedPulseMs, choices, (signal) =>
        options.backend(c).chat(body, signal),
      );
    });
    routes.post(`${prefix}/completions`, { summary: `Text completion, no chat template (${family})`, body: CompletionRequest, response: TextCompletion, streams: true }, async (c, body) => {
      const choices = { count: body.n ?? 1, logprobs: body.logprobs !== undefined };
      return generate(c.req.raw, "text", body.model, flavor, body.stream, body.stream_options?.include_usage, options.nonStreamedPulseMs, choices, (signal) =>
        options.backend(c).completion(body, signal),
      );
    });
    routes.post(`${prefix}/embeddings`, { summary: `Embeddings (${family})`, body: EmbeddingsRequest, response: EmbeddingsResponse }, async (c, body) => {
      return embeddingsBody(await options.backend(c).embeddings(body, c.req.raw.signal), body.encoding_format);
    });
  }

  lmstudio.post("/api/v1/models/load", { summary: "Load a model", body: LoadRequest, response: LoadResult }, async (c, body) =>
    options.backend(c).loadModel(body),
  );
  lmstudio.post("/api/v1/models/unload", { summary: "Unload a model", body: UnloadRequest, response: UnloadResult }, async (c, body) =>
    options.backend(c).unloadModel(body),
  );
  mountModelAdminRoutes(app, options.modelAdmin);

  mountAnthropicMessages(app, { backend: options.backend, pulseMs: options.nonStreamedPulseMs });
  const memoryStore = new MemoryResponseStore();
  const responseStore = options.responseStore ?? (() => memoryStore);
  mountResponses(app, { backend: options.backend, store: responseStore, pulseMs: options.nonStreamedPulseMs });
  mountLmStudioChat(app, { backend: options.backend, store: responseStore, pulseMs: options.nonStreamedPulseMs });

  app.notFound((c) => errorResponse(c.req.raw, unexpectedEndpoint(c.req.raw)));
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
