import { rm } from "node:fs/promises";
import { isAbsolute, relative } from "node:path";
import { ApiError, modelNotFound } from "../../shared/protocol/api-error.ts";
import type { ModelAdmin } from "../../shared/model-management/model-admin-backend.ts";
import type { NodeStatus } from "../../shared/protocol/frames.ts";
import type { DeleteRequest, DeleteResult, DownloadJob, DownloadRequest } from "../../shared/protocol/download-schemas.ts";
import type { ModelSpeculation, V1Model } from "../../shared/protocol/v1-model-schemas.ts";
import type { CatalogEntry } from "../catalog/model-catalog.ts";
import { modelParts } from "../catalog/model-metadata.ts";
import { DownloadManager } from "../downloads/download-manager.ts";
import { HubClient, type HubClientOptions } from "../downloads/hub-client.ts";
import type { LoadConfig } from "../engine/model-lifecycle.ts";
import type { LocalBackend } from "./local-backend.ts";

export interface LocalModelAdminOptions {
  /** The model folders; downloads go to the first. */
  modelDirs: readonly string[];
  hub?: HubClientOptions;
  /** Free bytes on a folder's disk; tests inject a full disk. */
  freeBytes?: (dir: string) => Promise<number>;
}

/** This machine's models as LM Studio's v1 API manages them: the listing, downloads into the first model folder, deletes. */
export class LocalModelAdmin implements ModelAdmin {
  readonly #backend: LocalBackend;
  readonly #modelDirs: readonly string[];
  readonly #listeners = new Set<() => void>();
  readonly downloads: DownloadManager;

  constructor(backend: LocalBackend, options: LocalModelAdminOptions) {
    const modelsDir = options.modelDirs[0];
    if (modelsDir === undefined) throw new Error("LocalModelAdmin needs a models folder");
    this.#backend = backend;
    this.#modelDirs = options.modelDirs;
    this.downloads = new DownloadManager({
      modelsDir,
      hub: new HubClient(options.hub),
      freeBytes: options.freeBytes,
      onChange: () => {
        for (const listener of this.#listeners) listener();
      },
      onComplete: async (paths) => {
        await backend.listModels();
        return backend.catalogEntries().find((entry) => entry.path === paths[0])?.id;
      },
    });
  }

  async listModels(): Promise<V1Model[]> {
    await this.#backend.listModels();
    return this.#currentModels();
  }

  /** What the gateway link adds to this node's status: the v1 listing (which also tells the gateway this agent manages models) and the downloads. */
  statusFields(): Pick<NodeStatus, "v1_models" | "downloads"> {
    return { v1_models: this.#currentModels(), downloads: this.downloads.jobs() };
  }

  /** Calls `listener` when a download starts, progresses or ends; returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** A model this node already has, named by its key, is LM Studio's `already_downloaded`; anything else is planned as a download. */
  async download(request: DownloadRequest): Promise<DownloadJob> {
    const held = (await this.listModels()).find((model) => model.key === request.model);
    if (held) {
      const now = new Date().toISOString();
      const size = held.size_bytes;
      return { status: "already_downloaded", total_size_bytes: size, downloaded_bytes: size, started_at: now, completed_at: now, model_key: held.key };
    }
    return this.downloads.start(request.model, request.quantization);
  }

  async downloadStatus(jobId: string): Promise<DownloadJob> {
    return this.downloads.status(jobId);
  }

  cancelDownload(jobId: string): Promise<DownloadJob> {
    return this.downloads.cancel(jobId);
  }

  /** Removes a model's file (every part of a split model); refused while it is loaded, unless `force` unloads it first. */
  async deleteModel(request: DeleteRequest): Promise<DeleteResult> {
    await this.#backend.listModels();
    const entries = this.#backend.catalogEntries();
    const entry = entries.find((candidate) => candidate.id === request.model);
    if (!entry) throw modelNotFound(request.model, entries.map((candidate) => candidate.id));
    if (this.#backend.loadedConfig(entry.id)) {
      if (!request.force) {
        throw new ApiError(409, `Model "${entry.id}" is loaded; unload it first, or delete with "force": true to unload and delete it.`, {
          param: "model",
          code: "model_loaded",
        });
      }
      await this.#backend.unloadModel({ instance_id: entry.id, model: undefined });
    }
    // The first part last: until it goes, the catalog still sees a complete model or none.
    const parts = modelParts(entry.path);
    for (const part of [...parts].reverse()) await rm(part, { force: true });
    await this.#backend.listModels();
    return { model: entry.id, deleted: true, files: parts.map((part) => this.#relativePath(part)) };
  }

  /** Stops running downloads; their partial files stay for the next pull to resume. */
  dispose(): Promise<void> {
    return this.downloads.dispose();
  }

  #currentModels(): V1Model[] {
    return this.#backend.catalogEntries().map((entry) => v1Model(entry, this.#backend.loadedConfig(entry.id), this.#backend.speculativeDefault(entry.id)));
  }

  /** Below its model folder: the machine's own paths stay on the machine. */
  #relativePath(path: string): string {
    for (const dir of this.#modelDirs) {
      const below = relative(dir, path);
      if (!below.startsWith("..") && !isAbsolute(below)) return below.split("\\").join("/");
    }
    return path.split(/[\\/]/).at(-1) ?? "";
  }
}

/** LM Studio's v1 entry for a catalog entry, with its instance if loaded (this agent loads each model at most once). */
export function v1Model(entry: CatalogEntry, loaded: LoadConfig | undefined, speculative?: ModelSpeculation): V1Model {
  const embedding = entry.type === "embeddings";
  return {
    type: embedding ? "embedding" : "llm",
    publisher: entry.publisher,
    key: entry.id,
    display_name: entry.displayName ?? entry.id,
    ...(embedding ? {} : { architecture: entry.arch }),
    quantization: { name: entry.quantization, bits_per_weight: bitsPerWeight(entry.quantization) },
    size_bytes: entry.sizeBytes,
    params_string: entry.paramsString ?? null,
    loaded_instances: loaded
      ? [{ id: entry.id, config: { context_length: loaded.contextLength, ...(embedding ? {} : { parallel: loaded.slots }) } }]
      : [],
    max_context_length: entry.contextLength,
    format: "gguf",
    ...(embedding
      ? {}
      : {
          capabilities: { vision: entry.capabilities.includes("vision"), trained_for_tool_use: entry.capabilities.includes("tool_use") },
          description: null,
          ...(speculative ? { speculative } : {}),
        }),
  };
}

/** LM Studio states the nominal bits of a quantization's name (`Q4_K_M` → 4, `F16` → 16); null when unknown. */
function bitsPerWeight(quantization: string): number | null {
  const match = /^(?:[A-Z]*?)(?:Q|F|BF|FP)(\d+)/i.exec(quantization.replace(/^(MXFP|NVFP)/i, "Q"));
  return match ? Number(match[1]) : null;
}
