/**
 * Models for speculative decoding whose agreement is known by construction (random weights agree
 * with nothing otherwise). A target built from its draft's seed and layers plus inert ones
 * (`inertFrom`) answers exactly as the draft does, so greedy decoding accepts every drafted
 * token; a draft of another seed agrees with it only by chance. Written on request (tests, bench),
 * not among the demo models.
 */
import type { DemoModel } from "./demo-models.ts";
import type { ModelSpec } from "./model-spec.ts";
import { chatVocabulary, COMMON_WORDS } from "./vocabulary.ts";

export interface SpeculativeModels {
  /** The small model that drafts. */
  draft: DemoModel;
  /** ≥ 8× the draft's size, and answers as it does. */
  target: DemoModel;
  /** The draft's size and vocabulary, another seed: it disagrees with the target. */
  stranger: DemoModel;
}

/** Sharper outputs than the demo models', so drafts are confident enough to be offered, as a trained draft's are. */
const OUTPUT_SCALE = 8;

function pair(base: ModelSpec, targetLayers: number, folder: string): SpeculativeModels {
  const file = (name: string, spec: ModelSpec): DemoModel => ({ path: `lmgate/${folder}/${name}-${spec.weightType}.gguf`, spec: { ...spec, name } });
  return {
    draft: file(`${base.name}-draft`, base),
    target: file(`${base.name}-target`, { ...base, layers: targetLayers, inertFrom: base.layers }),
    stranger: file(`${base.name}-stranger`, { ...base, seed: base.seed + 1 }),
  };
}

const tinyBase: ModelSpec = {
  arch: "llama",
  name: "spec-tiny",
  embeddingLength: 64,
  layers: 2,
  feedForwardLength: 128,
  heads: 4,
  kvHeads: 4,
  contextLength: 2048,
  vocabulary: chatVocabulary(),
  weightType: "F32",
  seed: 21,
  outputScale: OUTPUT_SCALE,
};

/** Tiny, for tests: the target has 36 layers to the draft's 2 (about 8.5× its size). */
export const TINY_SPECULATIVE: SpeculativeModels & { otherVocabulary: DemoModel } = {
  ...pair(tinyBase, 36, "spec-tiny-GGUF"),
  /** The draft with the words of its vocabulary in another order: the same size, other token ids. */
  otherVocabulary: {
    path: "lmgate/spec-tiny-GGUF/spec-tiny-other-vocabulary-F32.gguf",
    spec: { ...tinyBase, name: "spec-tiny-other-vocabulary", vocabulary: chatVocabulary({ words: COMMON_WORDS.toReversed() }) },
  },
};

/**
 * For the bench: wide enough that decoding is compute-bound like a real model's; the target has 18
 * layers to the draft's 2 (about 8.7× its size, ~320 MB in Q8_0).
 */
export const BENCH_SPECULATIVE: SpeculativeModels = pair(
  {
    ...tinyBase,
    name: "spec-bench",
    embeddingLength: 1024,
    feedForwardLength: 4096,
    heads: 16,
    kvHeads: 16,
    contextLength: 4096,
    weightType: "Q8_0",
    seed: 31,
  },
  18,
  "spec-bench-GGUF",
);
