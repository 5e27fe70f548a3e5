import type { z } from "zod";
import { DeleteResult, DownloadJob, type DeleteRequest, type DownloadRequest } from "../shared/protocol/download-schemas.ts";
import { LoadResult, UnloadResult } from "../shared/protocol/model-schemas.ts";
import type { LoadRequest, UnloadRequest } from "../shared/protocol/request-schemas.ts";
import { V1ModelList } from "../shared/protocol/v1-model-schemas.ts";
import { jsonRequest } from "./json-request.ts";

/** LM Studio's v1 model API of a gateway (or of an agent in direct mode), typed by the shared schemas. */
export class ModelsClient {
  readonly #base: string;
  readonly #token: string;

  constructor(baseUrl: string, token: string) {
    this.#base = baseUrl.replace(/\/+$/, "");
    this.#token = token;
  }

  #call<T extends z.ZodType>(schema: T, method: string, path: string, body?: unknown): Promise<z.infer<T>> {
    return jsonRequest(this.#base, this.#token, schema, method, path, body);
  }

  list = async () => (await this.#call(V1ModelList, "GET", "/api/v1/models")).models;
  download = (request: Partial<DownloadRequest> & { model: string }) => this.#call(DownloadJob, "POST", "/api/v1/models/download", request);
  downloadStatus = (jobId: string) => this.#call(DownloadJob, "GET", `/api/v1/models/download/status/${encodeURIComponent(jobId)}`);
  cancelDownload = (jobId: string) => this.#call(DownloadJob, "POST", "/api/v1/models/download/cancel", { job_id: jobId });
  delete = (request: Partial<DeleteRequest> & { model: string }) => this.#call(DeleteResult, "POST", "/api/v1/models/delete", request);
  load = (request: Partial<LoadRequest> & { model: string }) => this.#call(LoadResult, "POST", "/api/v1/models/load", request);
  unload = (request: Partial<UnloadRequest>) => this.#call(UnloadResult, "POST", "/api/v1/models/unload", request);
}
