import type { ModelAdmin } from "../../../shared/model-management/model-admin-backend.ts";
import type { DeleteRequest, DeleteResult, DownloadJob, DownloadRequest } from "../../../shared/protocol/download-schemas.ts";
import type { V1Model } from "../../../shared/protocol/v1-model-schemas.ts";
import type { Caller } from "../../fleet/access/caller.ts";
import { unwrap, type FleetApi } from "../../fleet/fleet-contract.ts";

/** The gateway's `ModelAdmin`: one RPC to the Fleet object per call, which authorizes the caller and picks the node. */
export class FleetModelAdmin implements ModelAdmin {
  readonly #fleet: FleetApi;
  readonly #caller: Caller;

  constructor(fleet: FleetApi, caller: Caller) {
    this.#fleet = fleet;
    this.#caller = caller;
  }

  async listModels(): Promise<V1Model[]> {
    return unwrap(await this.#fleet.listModelsV1(this.#caller));
  }

  async download(request: DownloadRequest): Promise<DownloadJob> {
    return unwrap(await this.#fleet.downloadModel(request, this.#caller));
  }

  async downloadStatus(jobId: string): Promise<DownloadJob> {
    return unwrap(await this.#fleet.downloadStatus(jobId, this.#caller));
  }

  async cancelDownload(jobId: string): Promise<DownloadJob> {
    return unwrap(await this.#fleet.cancelDownload(jobId, this.#caller));
  }

  async deleteModel(request: DeleteRequest): Promise<DeleteResult> {
    return unwrap(await this.#fleet.deleteModel(request, this.#caller));
  }
}
