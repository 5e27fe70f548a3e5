import type { LlamaModel, Token } from "node-llama-cpp";

/** llama.cpp's own limits for a draft (common/speculative.cpp): vocabularies may differ in size by this much… */
const MAX_SIZE_DIFFERENCE = 128;
/** …and are compared token by token from this id on (the first ids are special tokens that may differ). */
const FIRST_COMPARED_TOKEN = 5;

/**
 * Why `draft` cannot draft for `target` (llama.cpp's compatibility rules, checked before any
 * generation so the caller gets a clear refusal instead of a failure mid-answer); undefined when
 * it can. The vocabulary sizes are passed in because counting a model's tokens walks all of them.
 */
export function vocabularyMismatch(target: { model: LlamaModel; size: number }, draft: { model: LlamaModel; size: number }): string | undefined {
  const [t, d] = [target.model, draft.model];
  if (t.vocabularyType !== d.vocabularyType) return `its tokenizer is ${d.vocabularyType}, the model's is ${t.vocabularyType}`;
  if (t.tokens.bos !== d.tokens.bos || t.tokens.eos !== d.tokens.eos || t.tokens.shouldPrependBosToken !== d.tokens.shouldPrependBosToken) {
    return "its special tokens (BOS, EOS) differ";
  }
  if (Math.abs(target.size - draft.size) > MAX_SIZE_DIFFERENCE) return `it has ${draft.size} tokens, the model ${target.size}`;
  for (let token = FIRST_COMPARED_TOKEN; token < Math.min(target.size, draft.size); token++) {
    const [targetText, draftText] = [t.detokenize([token as Token], true), d.detokenize([token as Token], true)];
    if (targetText !== draftText) return `token ${token} is ${JSON.stringify(draftText)} in it but ${JSON.stringify(targetText)} in the model`;
  }
  return undefined;
}
