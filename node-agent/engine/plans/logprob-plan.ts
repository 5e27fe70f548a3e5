import type { Token } from "node-llama-cpp";
import type { SamplingOptions } from "../sampling-options.ts";
import { generateWithLogprobs } from "../token-logprobs.ts";
import { contextBudget } from "./context-budget.ts";
import type { Plan, PlanModel } from "./plan.ts";

/** Generation that reports every token's log probability and `top` alternatives (see token-logprobs.ts). */
export function logprobPlan(
  model: PlanModel,
  input: Token[],
  requested: number | undefined,
  sampling: SamplingOptions,
  top: number,
  options: { endOfTurn?: Token[][]; promptParam?: string },
): Plan {
  const budget = contextBudget(model.contextLength, input.length, requested, options.promptParam);
  return {
    prompt: input,
    ...budget,
    run: (slot, hooks) =>
      generateWithLogprobs({
        sequence: slot.sequence,
        model: model.model,
        input,
        sampling,
        maxTokens: budget.maxTokens,
        top,
        endOfTurn: options.endOfTurn,
        ...hooks,
      }),
  };
}
