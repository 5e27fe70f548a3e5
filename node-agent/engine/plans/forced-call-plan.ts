import type { Token } from "node-llama-cpp";
import type { ChatRequest } from "../../../shared/protocol/request-schemas.ts";
import { createJsonSchemaGrammar } from "../json-schema.ts";
import type { SamplingOptions } from "../sampling-options.ts";
import { parseForcedCall, toToolCalls, type ToolPlan } from "../tool-calls.ts";
import { contextBudget } from "./context-budget.ts";
import { completionSampling, outcomeOf, runOptions, withCompletionBos, type Plan, type PlanModel } from "./plan.ts";

/**
 * A forced call's grammar cannot ride along `functions` in LlamaChat, so the rendered prompt
 * (which shows the tools) goes through LlamaCompletion, which puts its own BOS first.
 */
export function forcedInput(model: PlanModel, promptTokens: Token[]): { input: Token[]; prompt: Token[] } {
  const input = promptTokens[0] === model.completionBos ? promptTokens.slice(1) : promptTokens;
  return { input, prompt: withCompletionBos(model, input) };
}

/** A chat whose tool_choice names a tool (or is "required"): the answer is one call, held to the tools' schema by a grammar. */
export async function forcedCallPlan(
  model: PlanModel,
  request: ChatRequest,
  tools: Extract<ToolPlan, { mode: "forced" }>,
  promptTokens: Token[],
  sampling: SamplingOptions,
): Promise<Plan> {
  const grammar = await createJsonSchemaGrammar(model.llama, tools.callSchema);
  const { input, prompt } = forcedInput(model, promptTokens);
  const budget = contextBudget(model.contextLength, prompt.length, request.max_completion_tokens ?? request.max_tokens);
  return {
    prompt,
    ...budget,
    run: async (slot, hooks) => {
      const response = await slot.completion.generateCompletionWithMeta(input, {
        ...completionSampling(sampling),
        grammar,
        // No onTextChunk: the call's text is not the answer; it leaves as a tool call, parsed at the end.
        ...runOptions(slot, hooks, budget.maxTokens),
      });
      const call = parseForcedCall(response.response);
      if (call) return { stopReason: "functionCalls", toolCalls: toToolCalls([call]) };
      // Cut short (max_tokens, abort): no call and no text, as half a call in `content` would
      // be read as the answer; finish_reason "length" says what happened.
      return outcomeOf(response.metadata);
    },
  };
}
