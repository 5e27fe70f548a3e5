import type { ChatHistoryItem, ChatModelFunctions, LlamaGrammar, LlamaText } from "node-llama-cpp";
import { invalidRequest } from "../../../shared/protocol/api-error.ts";
import type { ChatRequest, ResponseFormat } from "../../../shared/protocol/request-schemas.ts";
import { toChatHistory } from "../chat-history.ts";
import { createJsonSchemaGrammar, toGrammarSchema, UnsupportedSchemaError } from "../json-schema.ts";
import { planTools, toToolCalls } from "../tool-calls.ts";
import { contextBudget } from "./context-budget.ts";
import { forcedCallPlan, forcedInput } from "./forced-call-plan.ts";
import { logprobPlan } from "./logprob-plan.ts";
import { outcomeOf, planSampling, runOptions, type Plan, type PlanModel } from "./plan.ts";
import { checkChatRequest, checkLogprobChat } from "./request-checks.ts";

/** Chat through the model's own chat template: a forced tool call, a chat with log probabilities, or a chat (with tools offered or an answer format). */
export async function chatPlan(model: PlanModel, request: ChatRequest): Promise<Plan> {
  const { tools, history, functions, tokens: promptTokens } = chatPrompt(model, request);
  checkChatRequest(request, tools);
  const sampling = planSampling(model, request);
  const requested = request.max_completion_tokens ?? request.max_tokens;

  if (tools.mode === "forced") return forcedCallPlan(model, request, tools, promptTokens, sampling);

  if (request.logprobs === true) {
    checkLogprobChat(request, tools);
    const endOfTurn = model.chatWrapper
      .generateContextState({ chatHistory: history })
      .stopGenerationTriggers.map((trigger) => trigger.tokenize(model.model.tokenizer));
    return logprobPlan(model, promptTokens, requested, sampling, request.top_logprobs ?? 0, { endOfTurn });
  }

  const grammar = await responseGrammar(model, request.response_format);
  const budget = contextBudget(model.contextLength, promptTokens.length, requested);
  return {
    prompt: promptTokens,
    ...budget,
    run: async (slot, hooks) => {
      const common = { ...sampling, ...runOptions(slot, hooks, budget.maxTokens), onTextChunk: hooks.onText };
      const response = functions
        ? await slot.chat.generateResponse(history, { ...common, functions })
        : await slot.chat.generateResponse(history, { ...common, grammar });
      const calls = response.functionCalls ?? [];
      return {
        ...outcomeOf(response.metadata),
        ...(calls.length > 0 ? { toolCalls: toToolCalls(calls.map((call) => ({ name: call.functionName, params: call.params }))) } : {}),
      };
    },
  };
}

/** Tokens the model would read for this chat request (template and tools included), counted as the chat's plan counts them. */
export function chatPromptTokens(model: PlanModel, request: ChatRequest): number {
  const prompt = chatPrompt(model, request);
  return prompt.tools.mode === "forced" ? forcedInput(model, prompt.tokens).prompt.length : prompt.tokens.length;
}

/** The conversation as the template renders it, with the tools the model is offered. */
function chatPrompt(model: PlanModel, request: ChatRequest) {
  const tools = planTools(request);
  const history = toChatHistory(request.messages);
  const functions = tools.mode === "none" ? undefined : tools.functions;
  return { tools, history, functions, tokens: renderChat(model, history, functions).tokenize(model.model.tokenizer) };
}

/** The exact text LlamaChat will evaluate; templates that reject a conversation (e.g. roles out of order) say why. */
function renderChat(model: PlanModel, history: ChatHistoryItem[], functions: ChatModelFunctions | undefined): LlamaText {
  try {
    return model.chatWrapper.generateContextState({ chatHistory: history, availableFunctions: functions }).contextText;
  } catch (error) {
    throw invalidRequest(`The model's chat template cannot render these messages: ${(error as Error).message}`, "messages");
  }
}

async function responseGrammar(model: PlanModel, format: ResponseFormat | undefined): Promise<LlamaGrammar | undefined> {
  if (format === undefined || format.type === "text") return undefined;
  if (format.type === "json_object") return model.jsonGrammar();
  try {
    return await createJsonSchemaGrammar(model.llama, toGrammarSchema(format.json_schema.schema));
  } catch (error) {
    const reason = error instanceof UnsupportedSchemaError ? error.message : (error as Error).message;
    throw invalidRequest(`response_format.json_schema cannot be enforced: ${reason}.`, "response_format");
  }
}
