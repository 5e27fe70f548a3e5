import type { CompletionRequest } from "../../../shared/protocol/request-schemas.ts";
import { contextBudget } from "./context-budget.ts";
import { logprobPlan } from "./logprob-plan.ts";
import { completionSampling, outcomeOf, planSampling, runOptions, withCompletionBos, type Plan, type PlanModel } from "./plan.ts";

/** Raw text completion: no template; special tokens written in the prompt are honoured, as llama.cpp's server does. */
export function completionPlan(model: PlanModel, request: CompletionRequest): Plan {
  const prompt = Array.isArray(request.prompt) ? (request.prompt[0] ?? "") : request.prompt;
  // Tokenized exactly as LlamaCompletion would, so the count is what the model reads.
  const input = model.model.tokenize(prompt, true, model.completionBos === null ? undefined : "trimLeadingSpace");
  const held = withCompletionBos(model, input);
  if (request.logprobs !== undefined) {
    return logprobPlan(model, held, request.max_tokens, planSampling(model, request), request.logprobs, { promptParam: "prompt" });
  }
  const budget = contextBudget(model.contextLength, held.length, request.max_tokens, "prompt");
  const sampling = completionSampling(planSampling(model, request));
  return {
    prompt: held,
    ...budget,
    run: async (slot, hooks) => {
      const response = await slot.completion.generateCompletionWithMeta(input, { ...sampling, ...runOptions(slot, hooks, budget.maxTokens), onTextChunk: hooks.onText });
      return outcomeOf(response.metadata);
    },
  };
}
