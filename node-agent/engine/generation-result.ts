import type { DraftStats, GenerationResult, ModelInfo, Runtime, Stats, StopReason } from "../../shared/protocol/generation-events.ts";
import { finishReasonOf, type GenerationTimer } from "./generation-stats.ts";
import type { RunOutcome } from "./plans/plan.ts";

/** A plan's run as its slot measured it, read before the slot went to the next request. */
export interface FinishedRun extends RunOutcome {
  completionTokens: number;
  cachedTokens: number;
  drafted: DraftStats;
}

/**
 * Prompt tokens the slot already held from its previous request (llama.cpp's prefix reuse), so
 * not evaluated again. The meter counts the prompt's last token as output: it is evaluated (again,
 * if it was held) in the batch that yields the first token's logits.
 */
export function cachedPromptTokens(promptTokens: number, evaluatedInputTokens: number): number {
  return Math.max(0, promptTokens - evaluatedInputTokens - 1);
}

/** The generation's timing, prompt cache and drafting figures. */
export function runStats(timer: GenerationTimer, ran: FinishedRun, stopReason: StopReason): Stats {
  return { ...timer.stats(ran.completionTokens, stopReason), cached_prompt_tokens: ran.cachedTokens, ...ran.drafted };
}

/** What the `done` event carries: why it ended, the token counts, the figures, and which model and runtime answered. */
export function generationResult(
  promptTokens: number,
  ran: FinishedRun,
  stats: Stats,
  about: { modelInfo: ModelInfo; runtime: Runtime },
): GenerationResult {
  return {
    finish_reason: finishReasonOf(stats.stop_reason),
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: ran.completionTokens,
      total_tokens: promptTokens + ran.completionTokens,
      prompt_tokens_details: { cached_tokens: ran.cachedTokens },
    },
    stats,
    model_info: about.modelInfo,
    runtime: about.runtime,
    ...(ran.toolCalls ? { tool_calls: ran.toolCalls } : {}),
    ...(ran.stopString !== undefined ? { stop_string: ran.stopString } : {}),
  };
}
