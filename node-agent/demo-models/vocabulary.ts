/**
 * Small but real tokenizer vocabularies: every text tokenizes (no `<unk>` for ASCII or for any byte),
 * common words become single tokens, and the special tokens the chat template and function calling
 * use exist as single tokens.
 */

/** `tokenizer.ggml.token_type` values (llama.h `llama_token_type`). */
export const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, byte: 6 } as const;

export interface Vocabulary {
  /** `tokenizer.ggml.model`: "llama" is SentencePiece (SPM), "bert" is WordPiece (WPM). */
  model: "llama" | "bert";
  tokens: readonly string[];
  scores: readonly number[];
  types: readonly number[];
  /** Written as `tokenizer.ggml.<key>` = token id. */
  specialTokenIds: Readonly<Record<string, number>>;
}

/** SentencePiece marks a word start (a preceding space) with U+2581. */
const WORD_START = "\u2581";

export const COMMON_WORDS = [
  "the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "as", "with",
  "his", "they", "at", "be", "this", "have", "from", "or", "one", "had", "by", "word", "but", "not", "what",
  "all", "were", "we", "when", "your", "can", "said", "there", "use", "an", "each", "which", "she", "do",
  "how", "their", "if", "will", "up", "other", "about", "out", "many", "then", "them", "these", "so",
  "some", "her", "would", "make", "like", "into", "time", "has", "two", "more", "write", "see", "number",
  "no", "way", "could", "people", "my", "than", "first", "water", "been", "who", "now", "find", "day",
  "get", "come", "made", "may", "hello", "world", "assistant", "user", "system", "model", "help",
  "question", "answer", "tool", "function", "call", "result", "weather", "city", "name",
];

const PRINTABLE_ASCII = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i));

/** Collects tokens once each: llama.cpp aborts on a vocabulary with duplicate token texts. */
class VocabularyBuilder {
  private readonly ids = new Map<string, number>();
  readonly tokens: string[] = [];
  readonly scores: number[] = [];
  readonly types: number[] = [];

  add(token: string, type: number, score = 0): number {
    const existing = this.ids.get(token);
    if (existing !== undefined) return existing;
    const id = this.tokens.length;
    this.ids.set(token, id);
    this.tokens.push(token);
    this.scores.push(score);
    this.types.push(type);
    return id;
  }
}

const LOWERCASE = Array.from({ length: 26 }, (_, i) => String.fromCharCode(0x61 + i));

/**
 * A SentencePiece-style vocabulary with byte fallback and the ChatML / Qwen tool-call tokens.
 * SPM only reaches a multi-character piece by merging adjacent pieces that are themselves in the
 * vocabulary, so every word comes with all of its prefixes; scores rise with length so whole words win.
 * With `letterGroups`, every pair and triple of lowercase letters is a piece too (word-initial or
 * not): English and code then take about a token per three letters instead of one per letter,
 * which keeps a coding agent's long prompt within reach of a small model's attention.
 */
export function chatVocabulary({ words = COMMON_WORDS, letterGroups = false }: { words?: readonly string[]; letterGroups?: boolean } = {}): Vocabulary {
  const vocab = new VocabularyBuilder();
  const unk = vocab.add("<unk>", TOKEN_TYPE.unknown);
  const bos = vocab.add("<s>", TOKEN_TYPE.control);
  const eos = vocab.add("</s>", TOKEN_TYPE.control);
  vocab.add("<|im_start|>", TOKEN_TYPE.control);
  const imEnd = vocab.add("<|im_end|>", TOKEN_TYPE.control);
  // User-defined, not control: they must come back as text when detokenized, or the chat wrapper
  // could not see a function call starting in the model's output.
  for (const tag of ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]) {
    vocab.add(tag, TOKEN_TYPE.userDefined);
  }
  for (let byte = 0; byte < 256; byte++) {
    vocab.add(`<0x${byte.toString(16).toUpperCase().padStart(2, "0")}>`, TOKEN_TYPE.byte);
  }
  vocab.add(WORD_START, TOKEN_TYPE.normal, -4);
  for (const char of PRINTABLE_ASCII) {
    vocab.add(WORD_START + char, TOKEN_TYPE.normal, -4);
    vocab.add(char, TOKEN_TYPE.normal, -5);
  }
  for (const word of words) {
    for (let length = 2; length <= word.length; length++) {
      const isWhole = length === word.length;
      vocab.add(WORD_START + word.slice(0, length), TOKEN_TYPE.normal, isWhole ? -1 + length / 100 : -3 + length / 100);
    }
  }
  if (letterGroups) {
    for (const first of LOWERCASE) {
      for (const second of LOWERCASE) {
        vocab.add(first + second, TOKEN_TYPE.normal, -4.5);
        vocab.add(WORD_START + first + second, TOKEN_TYPE.normal, -3.5);
        for (const third of LOWERCASE) {
          vocab.add(first + second + third, TOKEN_TYPE.normal, -4.2);
          vocab.add(WORD_START + first + second + third, TOKEN_TYPE.normal, -3.2);
        }
      }
    }
  }
  return {
    model: "llama",
    tokens: vocab.tokens,
    scores: vocab.scores,
    types: vocab.types,
    specialTokenIds: { bos_token_id: bos, eos_token_id: eos, unknown_token_id: unk, eot_token_id: imEnd },
  };
}

const WORD_PIECE_SUFFIXES = ["s", "ed", "ing", "ly", "er", "est", "ion", "ment"];

/**
 * A WordPiece vocabulary as llama.cpp stores BERT's: a word-initial piece carries the U+2581 prefix
 * (the converter's rewrite of BERT's unprefixed pieces), a continuation piece has none (BERT's "##").
 * Lowercase only: llama.cpp's BERT normalizer lowercases by default.
 */
export function bertVocabulary(): Vocabulary {
  const vocab = new VocabularyBuilder();
  const pad = vocab.add("[PAD]", TOKEN_TYPE.control);
  const unk = vocab.add("[UNK]", TOKEN_TYPE.unknown);
  const cls = vocab.add("[CLS]", TOKEN_TYPE.control);
  const sep = vocab.add("[SEP]", TOKEN_TYPE.control);
  const mask = vocab.add("[MASK]", TOKEN_TYPE.control);
  for (const char of PRINTABLE_ASCII.filter((char) => !/[A-Z]/.test(char))) {
    vocab.add(WORD_START + char, TOKEN_TYPE.normal);
    vocab.add(char, TOKEN_TYPE.normal);
  }
  for (const word of COMMON_WORDS) vocab.add(WORD_START + word, TOKEN_TYPE.normal);
  for (const suffix of WORD_PIECE_SUFFIXES) vocab.add(suffix, TOKEN_TYPE.normal);
  return {
    model: "bert",
    tokens: vocab.tokens,
    scores: vocab.tokens.map(() => 0),
    types: vocab.types,
    specialTokenIds: {
      bos_token_id: cls,
      cls_token_id: cls,
      seperator_token_id: sep, // sic: the key is spelled this way in GGUF
      padding_token_id: pad,
      unknown_token_id: unk,
      mask_token_id: mask,
    },
  };
}
