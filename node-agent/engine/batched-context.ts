import type { BatchItem, LlamaContext, LlamaModel } from "node-llama-cpp";
import { applyBatchFill, batchFillMismatch } from "./batch-fill.ts";
import { slotOrderStrategy } from "./batch-order.ts";

/**
 * Prompt tokens a batch takes from a long prompt while running streams share it: each of those
 * streams waits for the whole batch before its next token. llama-server evaluates up to its
 * batch size (512 in the bench) of a newcomer's prompt per step; 128 keeps the pause a quarter of
 * that on a CPU, where a batch's cost grows with its tokens, for a few more decodes of the prompt.
 */
export const PROMPT_CHUNK = 128;

/** Decodes the context ran and the sequences they carried, counted where each batch is planned. */
export interface BatchCounts {
  decodes: number;
  sequences: number;
}

export interface BatchedContext {
  context: LlamaContext;
  counts: BatchCounts;
}

let mismatchReported = false;

/**
 * The context a loaded LLM's slots run in: its batches in slot order (batch-order.ts), a long
 * prompt in chunks while streams run, every generating sequence in each decode (batch-fill.ts),
 * and the decodes counted.
 */
export async function createBatchedContext(
  model: LlamaModel,
  options: { contextSize: number; sequences: number; threads: number; flashAttention: boolean },
): Promise<BatchedContext> {
  const counts: BatchCounts = { decodes: 0, sequences: 0 };
  // node-llama-cpp plans exactly one batch per call of the strategy, and decodes all it returns.
  const itemPrioritizationStrategy = (batch: { items: readonly BatchItem[]; size: number }) => {
    const planned = slotOrderStrategy(batch, PROMPT_CHUNK);
    counts.decodes++;
    counts.sequences += planned.length;
    return planned;
  };
  const context = await model.createContext({ ...options, batching: { itemPrioritizationStrategy } });
  if (!applyBatchFill(context) && !mismatchReported) {
    mismatchReported = true;
    process.emitWarning(`${batchFillMismatch()}: running without it, so concurrent streams batch less (docs/upstream/node-llama-cpp-batch-fill.md)`);
  }
  return { context, counts };
}
