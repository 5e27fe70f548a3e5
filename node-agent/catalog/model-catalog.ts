import { stat } from "node:fs/promises";
import { findGgufFiles } from "./find-gguf-files.ts";
import { assignModelIds } from "./model-ids.ts";
import { LaterSplitPartError, modelParts, NotServableError, readModelMetadata, type ModelMetadata } from "./model-metadata.ts";

/** One model the agent can serve. */
export interface CatalogEntry extends ModelMetadata {
  id: string;
  publisher: string;
  /** Absolute path of the file; stays on this machine. */
  path: string;
}

export interface ModelCatalogOptions {
  /** Folders searched recursively for `.gguf` files, in order of precedence. */
  dirs: readonly string[];
  /** Told about files that are skipped; once per file version. */
  onWarning?: (message: string) => void;
}

/** `signature`: size and modification time of every file of the model, so a split model's late part is noticed. */
type Cached = { signature: string; result: ModelMetadata | null };

/**
 * The models on this machine's disk. `refresh()` rescans the folders but rereads only files whose
 * size or modification time changed, so it is cheap enough to run on every listing.
 */
export class ModelCatalog {
  readonly #dirs: readonly string[];
  readonly #onWarning: (message: string) => void;
  readonly #cache = new Map<string, Cached>();
  #entries: CatalogEntry[] = [];
  #refreshing: Promise<boolean> | null = null;

  constructor(options: ModelCatalogOptions) {
    this.#dirs = options.dirs;
    this.#onWarning = options.onWarning ?? (() => {});
  }

  get entries(): readonly CatalogEntry[] {
    return this.#entries;
  }

  find(id: string): CatalogEntry | undefined {
    return this.#entries.find((entry) => entry.id === id);
  }

  /** Rescans the folders; resolves to whether the list of models changed. Concurrent calls share one scan. */
  refresh(): Promise<boolean> {
    this.#refreshing ??= this.#scan().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  async #scan(): Promise<boolean> {
    const files = (await Promise.all(this.#dirs.map((dir) => findGgufFiles(dir, this.#onWarning)))).flat();
    const readable = [];
    const seen = new Set<string>();
    for (const file of files) {
      seen.add(file.path);
      const metadata = await this.#metadataOf(file.path);
      if (metadata) readable.push({ file, metadata });
    }
    for (const path of this.#cache.keys()) if (!seen.has(path)) this.#cache.delete(path);

    const { ids, shadowed } = assignModelIds(readable.map(({ file }) => file));
    for (const path of shadowed) this.#onWarning(`skipping ${path}: another model folder has a file at the same place`);
    const entries = readable.flatMap(({ file, metadata }) => {
      const identity = ids.get(file.path);
      return identity ? [{ ...metadata, ...identity, path: file.path }] : [];
    });
    const changed = JSON.stringify(entries) !== JSON.stringify(this.#entries);
    this.#entries = entries;
    return changed;
  }

  async #metadataOf(path: string): Promise<ModelMetadata | null> {
    const stats = await Promise.all(modelParts(path).map((file) => stat(file).catch(() => undefined)));
    if (!stats[0]) return null;
    const signature = stats.map((part) => (part ? `${part.size}:${part.mtimeMs}` : "-")).join(",");
    const cached = this.#cache.get(path);
    if (cached && cached.signature === signature) return cached.result;
    let result: ModelMetadata | null = null;
    try {
      result = await readModelMetadata(path);
    } catch (error) {
      const reason = error instanceof NotServableError ? error.message : `unreadable GGUF (${(error as Error).message})`;
      if (!(error instanceof LaterSplitPartError)) this.#onWarning(`skipping ${path}: ${reason}`);
    }
    this.#cache.set(path, { signature, result });
    return result;
  }
}
