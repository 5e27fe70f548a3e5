/**
 * The generated demo models (nothing can be downloaded where lmgate is tested or tried out), laid
 * out as LM Studio lays out its models folder: `<dir>/<publisher>/<repo>/<file>.gguf`.
 */
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { modelFileSize, writeModel, type ModelSpec } from "./model-spec.ts";
import { bertVocabulary, chatVocabulary } from "./vocabulary.ts";

/** `<repo>/.lmgate/models`: the models `npm start` serves and `npm run models` writes. */
export const DEFAULT_DEMO_MODELS_DIR = fileURLToPath(new URL("../../.lmgate/models", import.meta.url));

export interface DemoModel {
  /** Relative to the models folder: `<publisher>/<repo>/<file>.gguf`. */
  path: string;
  spec: ModelSpec;
}

const tinyChat: Omit<ModelSpec, "weightType"> = {
  arch: "llama",
  name: "tiny-chat",
  embeddingLength: 64,
  layers: 2,
  feedForwardLength: 128,
  heads: 4,
  kvHeads: 4,
  contextLength: 2048,
  vocabulary: chatVocabulary(),
  seed: 1,
};

export const DEMO_MODELS: readonly DemoModel[] = [
  { path: "lmgate/tiny-chat-GGUF/tiny-chat-F32.gguf", spec: { ...tinyChat, weightType: "F32" } },
  { path: "lmgate/tiny-chat-GGUF/tiny-chat-Q8_0.gguf", spec: { ...tinyChat, weightType: "Q8_0" } },
  {
    path: "lmgate/tiny-embed-GGUF/tiny-embed-F32.gguf",
    spec: {
      arch: "bert",
      name: "tiny-embed",
      embeddingLength: 64,
      layers: 2,
      feedForwardLength: 128,
      heads: 4,
      kvHeads: 4,
      contextLength: 512,
      vocabulary: bertVocabulary(),
      weightType: "F32",
      seed: 2,
    },
  },
];

/**
 * A chat model with a long context (64k tokens) and the same tool-calling chat template, for coding
 * agents: Claude Code's first prompt alone takes some 20,500 tokens of this vocabulary, Codex's
 * some 11,700 (Claude Code 2.1.332, Codex 0.171). It ends its turns after some tens of tokens (`endOfTurnLogit`), so an agent's turn
 * does not run to the end of the context. Still tiny, so it loads in a second or two; `npm start` serves it beside the
 * demo models (it is not one of them, so the models every test lists stay the same).
 */
export const LONG_CHAT_MODEL: DemoModel = {
  path: "lmgate/long-chat-GGUF/long-chat-Q8_0.gguf",
  spec: { ...tinyChat, name: "long-chat", contextLength: 65536, vocabulary: chatVocabulary({ letterGroups: true }), weightType: "Q8_0", seed: 4, endOfTurnLogit: 7 },
};

/**
 * A synthetic model of realistic size for benchmarks (~0.5 B parameters, ~550 MB in Q8_0): big
 * enough that generation is compute-bound like a real small model. Written only on request (≈20 s).
 */
export const BENCH_SMALL_MODEL: DemoModel = {
  path: "lmgate/bench-small-GGUF/bench-small-Q8_0.gguf",
  spec: {
    arch: "llama",
    name: "bench-small",
    embeddingLength: 1024,
    layers: 24,
    feedForwardLength: 5632,
    heads: 16,
    kvHeads: 16,
    contextLength: 4096,
    vocabulary: chatVocabulary(),
    weightType: "Q8_0",
    seed: 3,
  },
};

export interface EnsureOptions {
  onProgress?: (message: string) => void;
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

/**
 * Writes `model` under `dir` unless a file of the expected size is already there; returns its path.
 * The file appears only complete: it is written under a temporary name (per process, so concurrent
 * writers don't collide) and renamed into place.
 */
export async function ensureModel(dir: string, model: DemoModel, options: EnsureOptions = {}): Promise<string> {
  const target = join(dir, model.path);
  const expectedSize = modelFileSize(model.spec);
  if ((await sizeOf(target)) === expectedSize) return target;
  await mkdir(dirname(target), { recursive: true });
  const temporary = `${target}.${process.pid}.partial`;
  options.onProgress?.(`writing ${model.path} (${(expectedSize / 1024 / 1024).toFixed(1)} MiB)`);
  try {
    await writeModel(temporary, model.spec);
    await rename(temporary, target);
  } finally {
    await rm(temporary, { force: true });
  }
  return target;
}

/** Writes whichever demo models are missing under `dir`; returns every demo model's path. */
export async function ensureDemoModels(dir: string, options: EnsureOptions = {}): Promise<string[]> {
  const paths: string[] = [];
  for (const model of DEMO_MODELS) paths.push(await ensureModel(dir, model, options));
  return paths;
}
