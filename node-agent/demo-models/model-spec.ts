/**
 * What a generated model is (`ModelSpec`) and how it becomes a GGUF file: metadata as llama.cpp
 * reads it for the architecture, and seeded random weights so every run writes identical bytes.
 */
import { join } from "node:path";
import { CHAT_TEMPLATE } from "./chat-template.ts";
import { gguf, ggufFileSize, writeGguf, type GgmlTypeName, type GgufFile, type GgufMetadata, type GgufTensor } from "./gguf-writer.ts";
import { encodeTensorData } from "./quantize.ts";
import { TOKEN_TYPE, type Vocabulary } from "./vocabulary.ts";

export type WeightType = "F32" | "Q8_0" | "Q4_0";

export interface ModelSpec {
  /** "llama": a chat/completion model; "bert": an embedding model (llama.cpp's BERT graph). */
  arch: "llama" | "bert";
  name: string;
  embeddingLength: number;
  layers: number;
  feedForwardLength: number;
  heads: number;
  kvHeads: number;
  contextLength: number;
  vocabulary: Vocabulary;
  /** The type of every 2-D weight; 1-D tensors (norms, biases) stay F32, as llama.cpp's quantizer leaves them. */
  weightType: WeightType;
  seed: number;
  /**
   * Layers from this index on add nothing to the residual stream (their output weights are zero),
   * so the model answers exactly as its first `inertFrom` layers do: a bigger model that agrees
   * with a smaller one of the same seed, as a draft model should (speculative decoding).
   */
  inertFrom?: number;
  /** Multiplies the output projection: sharper next-token distributions, as trained models have. Defaults to 1. */
  outputScale?: number;
  /**
   * How strongly the model ends its turn (llama only): random weights otherwise end a turn about
   * once per vocabulary size, which with a large vocabulary means writing until the context is
   * full. The last residual dimension is then a constant no layer writes to, and the end-of-turn
   * token's output row reads only it, so that token's logit is this much, scaled by the norm.
   */
  endOfTurnLogit?: number;
}

/** `general.file_type` (llama.h `llama_ftype`): what the agent reports as the quantization. */
const FILE_TYPES: Record<WeightType, number> = { F32: 0, Q4_0: 2, Q8_0: 7 };

// ggml's quantization format revision; converters stamp it on every file.
const QUANTIZATION_VERSION = 2;

// Enough values per generated chunk to amortize the per-call cost, little enough to stay in cache.
const CHUNK_VALUES = 1 << 18;

/** mulberry32: tiny, fast, and identical on every platform. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a, so each tensor's stream depends on its name only: the F32 and Q8_0 files hold the same weights. */
function hashName(name: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

/** A value that replaces the random one at (row, column), or undefined to keep it. */
type Override = (row: number, column: number) => number | undefined;

/** `amplitude` may vary per row (for an embedding, per token); `override` fixes single values. */
function randomTensor(spec: ModelSpec, name: string, dims: readonly number[], amplitude: number | ((row: number) => number), override?: Override): GgufTensor {
  const type: GgmlTypeName = dims.length > 1 ? spec.weightType : "F32";
  return {
    name,
    dims,
    type,
    *data() {
      const random = mulberry32(spec.seed ^ hashName(name));
      const rowLength = dims[0] ?? 1;
      const rows = dims.slice(1).reduce((product, dim) => product * dim, 1);
      const rowsPerChunk = Math.max(1, Math.floor(CHUNK_VALUES / rowLength));
      const chunk = new Float32Array(rowsPerChunk * rowLength);
      for (let row = 0; row < rows; row += rowsPerChunk) {
        const values = chunk.subarray(0, Math.min(rowsPerChunk, rows - row) * rowLength);
        for (let start = 0; start < values.length; start += rowLength) {
          const rowAmplitude = typeof amplitude === "number" ? amplitude : amplitude(row + start / rowLength);
          for (let i = start; i < start + rowLength; i++) values[i] = (random() * 2 - 1) * rowAmplitude;
          if (override) {
            for (let column = 0; column < rowLength; column++) values[start + column] = override(row + start / rowLength, column) ?? values[start + column]!;
          }
        }
        yield encodeTensorData(type, values);
      }
    },
  };
}

function constantTensor(name: string, length: number, value: number): GgufTensor {
  return { name, dims: [length], type: "F32", *data() { yield encodeTensorData("F32", new Float32Array(length).fill(value)); } };
}

/** Uniform ±sqrt(3/fan-in) keeps activations near unit variance at any width, so output stays varied. */
const matrixAmplitude = (fanIn: number) => Math.sqrt(3 / fanIn);
/** For the output projection, this puts the logits' spread near 2 at any width. */
const embeddingAmplitude = (embeddingLength: number) => 2 * Math.sqrt(3 / embeddingLength);
const BIAS_AMPLITUDE = 0.1;
const BYTE_TOKEN_SCALE = 0.1;

function tokenizerMetadata(vocabulary: Vocabulary): GgufMetadata {
  const metadata: GgufMetadata = {
    "tokenizer.ggml.model": gguf.string(vocabulary.model),
    "tokenizer.ggml.tokens": gguf.strings(vocabulary.tokens),
    "tokenizer.ggml.scores": gguf.f32s(vocabulary.scores),
    "tokenizer.ggml.token_type": gguf.i32s(vocabulary.types),
  };
  for (const [key, id] of Object.entries(vocabulary.specialTokenIds)) metadata[`tokenizer.ggml.${key}`] = gguf.u32(id);
  return metadata;
}

function generalMetadata(spec: ModelSpec): GgufMetadata {
  return {
    "general.architecture": gguf.string(spec.arch),
    "general.name": gguf.string(spec.name),
    "general.file_type": gguf.u32(FILE_TYPES[spec.weightType]),
    "general.quantization_version": gguf.u32(QUANTIZATION_VERSION),
  };
}

function llamaModel(spec: ModelSpec): GgufFile {
  const { embeddingLength: embd, feedForwardLength: ff, heads, kvHeads, layers } = spec;
  const headLength = embd / heads;
  const embdKv = headLength * kvHeads;
  const vocabSize = spec.vocabulary.tokens.length;
  const metadata: GgufMetadata = {
    ...generalMetadata(spec),
    "llama.context_length": gguf.u32(spec.contextLength),
    "llama.embedding_length": gguf.u32(embd),
    "llama.block_count": gguf.u32(layers),
    "llama.feed_forward_length": gguf.u32(ff),
    "llama.attention.head_count": gguf.u32(heads),
    "llama.attention.head_count_kv": gguf.u32(kvHeads),
    "llama.attention.layer_norm_rms_epsilon": gguf.f32(1e-5),
    "llama.rope.dimension_count": gguf.u32(headLength),
    "llama.rope.freq_base": gguf.f32(10000),
    "llama.vocab_size": gguf.u32(vocabSize),
    ...tokenizerMetadata(spec.vocabulary),
    "tokenizer.ggml.add_bos_token": gguf.bool(true),
    "tokenizer.ggml.add_eos_token": gguf.bool(false),
    "tokenizer.chat_template": gguf.string(CHAT_TEMPLATE),
  };
  // A separate output projection: tied to token_embd, a random model mostly predicts the token it
  // just read (the residual stream still resembles its embedding) and repeats itself forever.
  // Byte tokens get short output rows so their logits stay near zero: generated text is mostly
  // whole characters and words rather than stray bytes of invalid UTF-8.
  const outputAmplitude = (token: number) =>
    embeddingAmplitude(embd) * (spec.outputScale ?? 1) * (spec.vocabulary.types[token] === TOKEN_TYPE.byte ? BYTE_TOKEN_SCALE : 1);
  const stop = endOfTurn(spec);
  const tensors: GgufTensor[] = [
    randomTensor(spec, "token_embd.weight", [embd, vocabSize], embeddingAmplitude(embd), stop?.embedding),
    randomTensor(spec, "output.weight", [embd, vocabSize], outputAmplitude, stop?.output),
    constantTensor("output_norm.weight", embd, 1),
  ];
  for (let layer = 0; layer < layers; layer++) {
    const block = `blk.${layer}`;
    const inert = spec.inertFrom !== undefined && layer >= spec.inertFrom;
    tensors.push(
      constantTensor(`${block}.attn_norm.weight`, embd, 1),
      randomTensor(spec, `${block}.attn_q.weight`, [embd, embd], matrixAmplitude(embd)),
      randomTensor(spec, `${block}.attn_k.weight`, [embd, embdKv], matrixAmplitude(embd)),
      randomTensor(spec, `${block}.attn_v.weight`, [embd, embdKv], matrixAmplitude(embd)),
      randomTensor(spec, `${block}.attn_output.weight`, [embd, embd], inert ? 0 : matrixAmplitude(embd), stop?.layerOutput),
      constantTensor(`${block}.ffn_norm.weight`, embd, 1),
      randomTensor(spec, `${block}.ffn_gate.weight`, [embd, ff], matrixAmplitude(embd)),
      randomTensor(spec, `${block}.ffn_up.weight`, [embd, ff], matrixAmplitude(embd)),
      randomTensor(spec, `${block}.ffn_down.weight`, [ff, embd], inert ? 0 : matrixAmplitude(ff), stop?.layerOutput),
    );
  }
  return { metadata, tensors };
}

/** The overrides behind `endOfTurnLogit` (rows of a ggml weight are its outputs, columns its inputs). */
function endOfTurn(spec: ModelSpec): { embedding: Override; layerOutput: Override; output: Override } | undefined {
  const logit = spec.endOfTurnLogit;
  const token = spec.vocabulary.specialTokenIds.eot_token_id;
  if (logit === undefined || token === undefined) return undefined;
  const constant = spec.embeddingLength - 1;
  return {
    // Every token carries 1 in the constant dimension…
    embedding: (_token, column) => (column === constant ? 1 : undefined),
    // …which no attention or feed-forward output changes…
    layerOutput: (row) => (row === constant ? 0 : undefined),
    // …and which only the end-of-turn token reads, reading nothing else.
    output: (row, column) => (row === token ? (column === constant ? logit : 0) : column === constant ? 0 : undefined),
  };
}

/** llama.cpp's BERT (src/models/bert.cpp): post-norm layers with biases, GELU, learned positions. */
function bertModel(spec: ModelSpec): GgufFile {
  const { embeddingLength: embd, feedForwardLength: ff, heads, layers } = spec;
  const vocabSize = spec.vocabulary.tokens.length;
  // Segment A/B embeddings: the graph adds row 0; the loader needs the count to size the tensor.
  const tokenTypes = 2;
  const metadata: GgufMetadata = {
    ...generalMetadata(spec),
    "bert.context_length": gguf.u32(spec.contextLength),
    "bert.embedding_length": gguf.u32(embd),
    "bert.block_count": gguf.u32(layers),
    "bert.feed_forward_length": gguf.u32(ff),
    "bert.attention.head_count": gguf.u32(heads),
    "bert.attention.layer_norm_epsilon": gguf.f32(1e-12),
    "bert.attention.causal": gguf.bool(false),
    "bert.pooling_type": gguf.u32(1), // mean: one vector per input, as an embeddings API returns
    ...tokenizerMetadata(spec.vocabulary),
    "tokenizer.ggml.token_type_count": gguf.u32(tokenTypes),
    // WordPiece marks every word with a leading space; this makes detokenizing drop the first one,
    // so text round-trips (node-llama-cpp warns at load when "some test text here" does not).
    "tokenizer.ggml.add_space_prefix": gguf.bool(true),
  };
  const norm = (name: string) => [constantTensor(`${name}.weight`, embd, 1), constantTensor(`${name}.bias`, embd, 0)];
  const linear = (name: string, inputs: number, outputs: number) => [
    randomTensor(spec, `${name}.weight`, [inputs, outputs], matrixAmplitude(inputs)),
    randomTensor(spec, `${name}.bias`, [outputs], BIAS_AMPLITUDE),
  ];
  const tensors: GgufTensor[] = [
    randomTensor(spec, "token_embd.weight", [embd, vocabSize], embeddingAmplitude(embd)),
    randomTensor(spec, "token_types.weight", [embd, tokenTypes], embeddingAmplitude(embd)),
    randomTensor(spec, "position_embd.weight", [embd, spec.contextLength], embeddingAmplitude(embd)),
    ...norm("token_embd_norm"),
  ];
  for (let layer = 0; layer < layers; layer++) {
    const block = `blk.${layer}`;
    tensors.push(
      ...linear(`${block}.attn_q`, embd, embd),
      ...linear(`${block}.attn_k`, embd, embd),
      ...linear(`${block}.attn_v`, embd, embd),
      ...linear(`${block}.attn_output`, embd, embd),
      ...norm(`${block}.attn_output_norm`),
      ...linear(`${block}.ffn_up`, embd, ff),
      ...linear(`${block}.ffn_down`, ff, embd),
      ...norm(`${block}.layer_output_norm`),
    );
  }
  return { metadata, tensors };
}

function modelFile(spec: ModelSpec): GgufFile {
  if (spec.embeddingLength % spec.heads !== 0) throw new Error(`${spec.name}: embedding length must divide into ${spec.heads} heads`);
  if (spec.heads % spec.kvHeads !== 0) throw new Error(`${spec.name}: ${spec.heads} heads must group evenly over ${spec.kvHeads} KV heads`);
  if (spec.arch === "bert" && spec.kvHeads !== spec.heads) throw new Error(`${spec.name}: BERT has no grouped-query attention`);
  return spec.arch === "llama" ? llamaModel(spec) : bertModel(spec);
}

/** The exact byte size `writeModel` produces for `spec`, computed without generating weights. */
export function modelFileSize(spec: ModelSpec): number {
  return ggufFileSize(modelFile(spec));
}

export function writeModel(path: string, spec: ModelSpec): Promise<number> {
  return writeGguf(path, modelFile(spec));
}

/**
 * Writes `spec` as a split GGUF, the way llama.cpp's gguf-split does: `<stem>-0000i-of-0000N.gguf`,
 * all metadata in the first part, the tensors divided in order, `split.*` keys in every part.
 * Returns the paths, first part first.
 */
export async function writeSplitModel(dir: string, stem: string, spec: ModelSpec, parts: number): Promise<string[]> {
  const { metadata, tensors } = modelFile(spec);
  const perPart = Math.ceil(tensors.length / parts);
  const count = String(parts).padStart(5, "0");
  const paths = [];
  for (let index = 0; index < parts; index++) {
    const split: GgufMetadata = {
      "split.no": { type: "u16", value: index },
      "split.count": { type: "u16", value: parts },
      "split.tensors.count": gguf.i32(tensors.length),
    };
    const path = join(dir, `${stem}-${String(index + 1).padStart(5, "0")}-of-${count}.gguf`);
    await writeGguf(path, { metadata: index === 0 ? { ...metadata, ...split } : split, tensors: tensors.slice(index * perPart, (index + 1) * perPart) });
    paths.push(path);
  }
  return paths;
}
