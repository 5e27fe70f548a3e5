import type { z } from "zod";
import { ErrorBody } from "../shared/errors.ts";
import { DeleteResult, DownloadJob, type DeleteRequest, type DownloadRequest } from "../shared/schemas/downloads.ts";
import { LoadResult, UnloadResult } from "../shared/schemas/models.ts";
import type { LoadRequest, UnloadRequest } from "../shared/schemas/requests.ts";
import { V1ModelList } from "../shared/schemas/v1-models.ts";
import { AdminApiError } from "./admin-client.ts";

/** LM Studio's v1 model API of a gateway (or of an agent in direct mode), typed by the shared schemas. */
export class ModelsClient {
  readonly #base: string;
  readonly #token: string;

  constructor(baseUrl: string, token: string) {
    this.#base = baseUrl.replace(/\/+$/, "");
    this.#token = token;
  }

  async #call<T extends z.ZodType>(schema: T, method: string, path: string, body?: unknown): Promise<z.infer<T>> {
    let response: Response;
    try {
      response = await fetch(`${this.#base}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.#token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new AdminApiError(0, `cannot reach ${this.#base}: ${(error as Error).cause ?? (error as Error).message}`);
    }
    const payload: unknown = await response.json().catch(() => null);
    if (!response.ok) {
      const parsed = ErrorBody.safeParse(payload);
      throw new AdminApiError(response.status, parsed.success ? parsed.data.error.message : `HTTP ${response.status}`);
    }
    return schema.parse(payload);
  }

  list = async () => (await this.#call(V1ModelList, "GET", "/api/v1/models")).models;
  download = (request: Partial<DownloadRequest> & { model: string }) => this.#call(DownloadJob, "POST", "/api/v1/models/download", request);
  downloadStatus = (jobId: string) => this.#call(DownloadJob, "GET", `/api/v1/models/download/status/${encodeURIComponent(jobId)}`);
  cancelDownload = (jobId: string) => this.#call(DownloadJob, "POST", "/api/v1/models/download/cancel", { job_id: jobId });
  delete = (request: Partial<DeleteRequest> & { model: string }) => this.#call(DeleteResult, "POST", "/api/v1/models/delete", request);
  load = (request: Partial<LoadRequest> & { model: string }) => this.#call(LoadResult, "POST", "/api/v1/models/load", request);
  unload = (request: Partial<UnloadRequest>) => this.#call(UnloadResult, "POST", "/api/v1/models/unload", request);
}
