import type { Context, Env, Hono } from "hono";
import type { ModelAdmin } from "./model-admin.ts";
import { parseJsonBody } from "./json-body.ts";
import { DeleteRequest, DownloadRequest } from "./schemas/downloads.ts";
import type { RouteDoc } from "./openapi.ts";
import { DeleteResult, DownloadJob } from "./schemas/downloads.ts";
import { CancelDownloadRequest, V1ModelList } from "./schemas/v1-models.ts";

/** Changing what is on a machine is a credential's explicit right; the gateway says which (README, "Who may manage models"). */
export const MODEL_ADMIN_ROUTE_DOCS: RouteDoc[] = [
  { method: "get", path: "/api/v1/models", summary: "Every model with its loaded instances (LM Studio v1)", tag: "lmstudio", security: "apiKey", response: V1ModelList },
  { method: "post", path: "/api/v1/models/download", summary: "Download a model onto a node", tag: "lmstudio", security: "apiKey", body: DownloadRequest, response: DownloadJob },
  { method: "get", path: "/api/v1/models/download/status/{job_id}", summary: "A download's progress", tag: "lmstudio", security: "apiKey", response: DownloadJob },
  { method: "post", path: "/api/v1/models/download/cancel", summary: "Cancel a download", tag: "lmstudio", security: "apiKey", body: CancelDownloadRequest, response: DownloadJob },
  { method: "post", path: "/api/v1/models/delete", summary: "Delete a model's files from a node", tag: "lmstudio", security: "apiKey", body: DeleteRequest, response: DeleteResult },
];

/**
 * LM Studio's `/api/v1/models` listing and downloads, and lmgate's delete and cancel beside them.
 * Load and unload stay with the other routes of `createApiApp`.
 */
export function mountModelAdminRoutes<E extends Env>(app: Hono<E>, admin: (c: Context<E>) => ModelAdmin): void {
  app.get("/api/v1/models", async (c) => c.json({ models: await admin(c).listModels() }));
  app.post("/api/v1/models/download", async (c) => c.json(await admin(c).download(await parseJsonBody(c.req.raw, DownloadRequest))));
  app.get("/api/v1/models/download/status/:job_id", async (c) => c.json(await admin(c).downloadStatus(c.req.param("job_id"))));
  app.post("/api/v1/models/download/cancel", async (c) =>
    c.json(await admin(c).cancelDownload((await parseJsonBody(c.req.raw, CancelDownloadRequest)).job_id)),
  );
  app.post("/api/v1/models/delete", async (c) => c.json(await admin(c).deleteModel(await parseJsonBody(c.req.raw, DeleteRequest))));
}
