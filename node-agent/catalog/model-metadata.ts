import { stat } from "node:fs/promises";
import { basename } from "node:path";
import { readGgufFileInfo } from "node-llama-cpp";
import type { ModelType } from "../../shared/protocol/model-schemas.ts";
import { quantizationName } from "./quantization-names.ts";

/** What the catalog knows about one GGUF file, read from its header without loading it. */
export interface ModelMetadata {
  arch: string;
  quantization: string;
  /** Trained context length (`<arch>.context_length`). */
  contextLength: number;
  type: Extract<ModelType, "llm" | "embeddings">;
  capabilities: string[];
  sizeBytes: number;
  /** `general.name`, when the file has one. */
  displayName: string | undefined;
  /** `general.size_label`: `7B`, `26B-A4B`. */
  paramsString: string | undefined;
}

/** A readable file that is not a model this agent serves on its own (an adapter, projector, incomplete split model…). */
export class NotServableError extends Error {
  override name = "NotServableError";
}

/** A later part of a split model: served through its first part, so skipped without a word. */
export class LaterSplitPartError extends NotServableError {
  override name = "LaterSplitPartError";
}

/** Architectures that only make sense as embedding models, whatever their pooling key says. */
const EMBEDDING_ARCHITECTURES = new Set([
  "bert",
  "nomic-bert",
  "nomic-bert-moe",
  "jina-bert-v2",
  "jina-bert-v3",
  "modern-bert",
  "neo-bert",
  "t5encoder",
]);

/** Multimodal projectors ship as `.gguf` next to the model but are not models themselves. */
const PROJECTOR_ARCHITECTURES = new Set(["clip", "mmproj"]);

/** llama.cpp's split naming: `<prefix>-00001-of-00003.gguf`, 1-based. */
const SPLIT_FILE_NAME = /-(\d{5})-of-(\d{5})\.gguf$/i;

/** Every file of the model whose (first) file is `path`: itself, or all parts of a split model. */
export function modelParts(path: string): string[] {
  const split = SPLIT_FILE_NAME.exec(path);
  if (!split) return [path];
  const count = split[2] as string;
  return Array.from({ length: Number(count) }, (_, index) => path.replace(SPLIT_FILE_NAME, `-${String(index + 1).padStart(5, "0")}-of-${count}.gguf`));
}

/** A conservative guess for the rare file that does not state its trained context. */
const UNKNOWN_CONTEXT_LENGTH = 2048;

/** Token tables are megabytes in real models and the catalog needs none of them. */
const IGNORED_KEYS = ["tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"];

export async function readModelMetadata(path: string): Promise<ModelMetadata> {
  const part = SPLIT_FILE_NAME.exec(basename(path));
  if (part && Number(part[1]) !== 1) throw new LaterSplitPartError(`part ${Number(part[1])} of a split model`);
  const parts = modelParts(path);
  const sizes = await Promise.all(parts.map((file) => stat(file).then((stats) => stats.size, () => undefined)));
  const missing = parts.filter((_, index) => sizes[index] === undefined);
  if (missing.length > 0) throw new NotServableError(`the split model lacks ${missing.map((file) => basename(file)).join(", ")}`);
  // llama.cpp keeps the metadata in the first part and opens the others from its name.
  const info = await readGgufFileInfo(path, { readTensorInfo: false, spliceSplitFiles: false, ignoreKeys: IGNORED_KEYS, logWarnings: false });
  const metadata: unknown = info.metadata;
  const arch = stringAt(metadata, "general", "architecture");
  if (arch === undefined) throw new NotServableError("the file has no general.architecture");
  if (PROJECTOR_ARCHITECTURES.has(arch)) throw new NotServableError(`"${arch}" is a multimodal projector, not a model`);
  const generalType = stringAt(metadata, "general", "type");
  if (generalType !== undefined && generalType !== "model") throw new NotServableError(`the file is a ${generalType}, not a model`);
  if ((numberAt(metadata, "split", "count") ?? 1) !== parts.length) {
    throw new NotServableError(`split.count says ${numberAt(metadata, "split", "count") ?? 1} parts but the file is named as part of ${parts.length}`);
  }
  if (Number(info.tensorCount) === 0) throw new NotServableError("the file has no tensors (a vocabulary-only file)");

  const poolingType = numberAt(metadata, arch, "pooling_type");
  // llama.cpp's pooling types: -1 unspecified, 0 none; anything else pools the sequence into one vector.
  const pools = poolingType !== undefined && poolingType > 0;
  const chatTemplate = stringAt(metadata, "tokenizer", "chat_template");
  return {
    arch,
    quantization: quantizationName(numberAt(metadata, "general", "file_type")),
    contextLength: numberAt(metadata, arch, "context_length") ?? UNKNOWN_CONTEXT_LENGTH,
    type: EMBEDDING_ARCHITECTURES.has(arch) || pools ? "embeddings" : "llm",
    capabilities: chatTemplate !== undefined && /\btools\b/.test(chatTemplate) ? ["tool_use"] : [],
    sizeBytes: sizes.reduce((sum: number, size) => sum + (size ?? 0), 0),
    displayName: stringAt(metadata, "general", "name"),
    paramsString: stringAt(metadata, "general", "size_label"),
  };
}

function valueAt(value: unknown, path: string[]): unknown {
  let current = value;
  for (const key of path) {
    if (typeof current !== "object" || current === null) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

function stringAt(value: unknown, ...path: string[]): string | undefined {
  const found = valueAt(value, path);
  return typeof found === "string" ? found : undefined;
}

function numberAt(value: unknown, ...path: string[]): number | undefined {
  const found = valueAt(value, path);
  if (typeof found === "bigint") return Number(found);
  return typeof found === "number" && Number.isFinite(found) ? found : undefined;
}
