import type { LlamaContextSequence, Token } from "node-llama-cpp";

/**
 * Below this share of the prompt, a slot's cache is not worth taking from whatever it holds (a
 * shared chat-template header is not a conversation). llama-server's `--slot-prompt-similarity`
 * default, so both pick slots alike.
 */
const MIN_SHARED_FRACTION = 0.1;

/**
 * Prompt tokens the sequence already holds, which node-llama-cpp keeps instead of evaluating
 * again (`adaptStateToTokens`). The prompt's last token is always evaluated, for its logits.
 */
export function cachedPrefixLength(sequence: LlamaContextSequence, prompt: readonly Token[]): number {
  return Math.max(0, Math.min(sequence.compareContextTokens(prompt as Token[]).firstDifferentIndex, prompt.length - 1));
}

/** How much of `prompt` the sequence can reuse, or 0 when too little to give up what it caches. */
export function reusablePrefixLength(sequence: LlamaContextSequence, prompt: readonly Token[]): number {
  const shared = cachedPrefixLength(sequence, prompt);
  return shared > MIN_SHARED_FRACTION * prompt.length ? shared : 0;
}
