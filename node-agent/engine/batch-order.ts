import type { BatchItem, EvaluationPriority, PrioritizedBatchItem } from "node-llama-cpp";

/**
 * llama.cpp decodes a batch on a context with a KV stream per sequence (node-llama-cpp's layout)
 * in one pass only when its sequences come in ascending, consecutive order; otherwise it splits
 * the batch into smaller ones and the matrix kernels lose what batching gains (measured on the
 * bench's small model, 4 streams at once: 169–176 ms a decode in reverse order, 117–122 ms in
 * order). node-llama-cpp adds a batch's sequences in the order they queued, and a prioritization
 * strategy's items carry no sequence id, so each slot runs at an evaluation priority that falls
 * with its index (sequence i is slot i) and the strategy sorts by it. node-llama-cpp has 5
 * priorities: beyond 5 slots, neighbouring slots share one and keep their queue order.
 */
export function slotPriority(index: number, slots: number): EvaluationPriority {
  return (5 - Math.floor((index * 5) / slots)) as EvaluationPriority;
}

/**
 * node-llama-cpp's default ("maximumParallelism": an even share of the batch each, then what is
 * left in turn), with the items in slot order. With `promptChunk`, a long prompt takes at most
 * that many tokens per batch while a shorter item (a running stream's next token) shares it, so
 * the streams get a token every small batch instead of waiting for a whole batch of prompt, as
 * llama-server's per-step batch budget does; a prompt with no stream beside it takes all the room.
 */
export function slotOrderStrategy({ items, size }: { items: readonly BatchItem[]; size: number }, promptChunk = size): PrioritizedBatchItem[] {
  const ordered = [...items].sort((a, b) => b.evaluationPriority - a.evaluationPriority);
  const limit = ordered.some((item) => item.tokens.length < promptChunk) ? Math.max(1, promptChunk) : size;
  const share = Math.max(1, Math.floor(size / Math.max(1, ordered.length)));
  let left = size;
  const prioritized = ordered.map((item) => {
    const processAmount = Math.min(item.tokens.length, share, left, limit);
    left -= processAmount;
    return { item, processAmount };
  });
  for (const entry of prioritized) {
    const more = Math.min(entry.item.tokens.length - entry.processAmount, left, limit - entry.processAmount);
    entry.processAmount += more;
    left -= more;
  }
  return prioritized.filter((entry) => entry.processAmount > 0);
}
