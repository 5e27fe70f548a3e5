import type { DeleteRequest, DeleteResult, DownloadJob, DownloadRequest } from "../protocol/download-schemas.ts";
import type { V1Model } from "../protocol/v1-model-schemas.ts";

/**
 * LM Studio's v1 model management beyond load and unload (which every `InferenceBackend` has):
 * the detailed listing, downloads and deletes. The agent does it on its own disk; the gateway
 * passes it to a node. Failures are thrown as `ApiError`.
 */
export interface ModelAdmin {
  listModels(): Promise<V1Model[]>;
  download(request: DownloadRequest): Promise<DownloadJob>;
  downloadStatus(jobId: string): Promise<DownloadJob>;
  cancelDownload(jobId: string): Promise<DownloadJob>;
  deleteModel(request: DeleteRequest): Promise<DeleteResult>;
}
