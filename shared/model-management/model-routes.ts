import type { Context, Env, Hono } from "hono";
import * as z from "zod";
import { DocumentedRoutes } from "../app/documented-routes.ts";
import type { InferenceBackend } from "../app/inference-backend.ts";
import { modelNotFound } from "../protocol/api-error.ts";
import { DeleteRequest, DeleteResult, DownloadJob, DownloadRequest } from "../protocol/download-schemas.ts";
import { LoadResult, ModelList, ModelObject, OpenAIModelObject, UnloadResult } from "../protocol/model-schemas.ts";
import { LoadRequest, UnloadRequest } from "../protocol/request-schemas.ts";
import { CancelDownloadRequest, V1ModelList } from "../protocol/v1-model-schemas.ts";
import type { ModelAdmin } from "./model-admin-backend.ts";

export interface ModelRouteOptions<E extends Env> {
  backend: (c: Context<E>) => InferenceBackend;
  /** Listing, downloads and deletes of LM Studio's v1 model API, for this request's caller. */
  modelAdmin: (c: Context<E>) => ModelAdmin;
}

/**
 * The models: listed (LM Studio's v0 and v1, and OpenAI's), loaded and unloaded, downloaded and
 * deleted (LM Studio's v1, and lmgate's delete and cancel beside them). Changing what is on a
 * machine is a credential's explicit right; the gateway says which (README, "Who may manage models").
 */
export function mountModelRoutes<E extends Env>(app: Hono<E>, { backend, modelAdmin: admin }: ModelRouteOptions<E>): void {
  const lmstudio = new DocumentedRoutes(app, { tag: "lmstudio", security: "apiKey" });
  const openai = new DocumentedRoutes(app, { tag: "openai", security: "apiKey" });

  lmstudio.get("/api/v0/models", { summary: "Every model, loaded or not", response: ModelList }, async (c) => ({
    object: "list" as const,
    data: await backend(c).listModels(),
  }));
  lmstudio.get("/api/v0/models/:model{.+}", { summary: "One model", response: ModelObject }, async (c) => findModel(backend(c), c.req.param("model")));
  openai.get("/v1/models", { summary: "Models (OpenAI)", response: z.object({ object: z.literal("list"), data: z.array(OpenAIModelObject) }) }, async (c) => {
    const models = await backend(c).listModels();
    return { object: "list" as const, data: models.map(openAIModel) };
  });
  openai.get("/v1/models/:model{.+}", { summary: "One model (OpenAI)", response: OpenAIModelObject }, async (c) =>
    openAIModel(await findModel(backend(c), c.req.param("model"))),
  );

  lmstudio
    .post("/api/v1/models/load", { summary: "Load a model", body: LoadRequest, response: LoadResult }, async (c, body) => backend(c).loadModel(body))
    .post("/api/v1/models/unload", { summary: "Unload a model", body: UnloadRequest, response: UnloadResult }, async (c, body) => backend(c).unloadModel(body))
    .get("/api/v1/models", { summary: "Every model with its loaded instances (LM Studio v1)", response: V1ModelList }, async (c) => ({
      models: await admin(c).listModels(),
    }))
    .post("/api/v1/models/download", { summary: "Download a model onto a node", body: DownloadRequest, response: DownloadJob }, async (c, body) =>
      admin(c).download(body),
    )
    .get("/api/v1/models/download/status/:job_id", { summary: "A download's progress", response: DownloadJob }, async (c) =>
      admin(c).downloadStatus(c.req.param("job_id")),
    )
    .post("/api/v1/models/download/cancel", { summary: "Cancel a download", body: CancelDownloadRequest, response: DownloadJob }, async (c, body) =>
      admin(c).cancelDownload(body.job_id),
    )
    .post("/api/v1/models/delete", { summary: "Delete a model's files from a node", body: DeleteRequest, response: DeleteResult }, async (c, body) =>
      admin(c).deleteModel(body),
    );
}

async function findModel(backend: InferenceBackend, id: string): Promise<ModelObject> {
  const models = await backend.listModels();
  const model = models.find((candidate) => candidate.id === id);
  if (!model) throw modelNotFound(id, models.map((candidate) => candidate.id));
  return model;
}

/** A model in OpenAI's shape. */
function openAIModel(model: ModelObject): OpenAIModelObject {
  return {
    id: model.id,
    object: "model",
    created: 0,
    owned_by: model.publisher,
    context_length: model.loaded_context_length ?? model.max_context_length,
  };
}
