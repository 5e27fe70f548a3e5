import type { Context, Env, Hono } from "hono";
import { DocumentedRoutes } from "../app/documented-routes.ts";
import type { ModelAdmin } from "./model-admin-backend.ts";
import { DeleteRequest, DeleteResult, DownloadJob, DownloadRequest } from "../protocol/download-schemas.ts";
import { CancelDownloadRequest, V1ModelList } from "../protocol/v1-model-schemas.ts";

/**
 * LM Studio's `/api/v1/models` listing and downloads, and lmgate's delete and cancel beside them.
 * Load and unload stay with the other routes of `createApiApp`. Changing what is on a machine is a
 * credential's explicit right; the gateway says which (README, "Who may manage models").
 */
export function mountModelAdminRoutes<E extends Env>(app: Hono<E>, admin: (c: Context<E>) => ModelAdmin): void {
  new DocumentedRoutes(app, { tag: "lmstudio", security: "apiKey" })
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
