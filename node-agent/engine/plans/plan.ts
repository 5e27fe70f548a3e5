import type { ChatWrapper, EvaluationPriority, Llama, LlamaChat, LlamaCompletion, LlamaContextSequence, LlamaGrammar, LlamaModel, Token } from "node-llama-cpp";
import type { TokenLogprob } from "../../../shared/protocol/generation-events.ts";
import type { ChatRequest, CompletionRequest, ToolCall } from "../../../shared/protocol/request-schemas.ts";
import type { EngineStopReason } from "../generation-stats.ts";
import { samplingOptions, type SamplingOptions } from "../sampling-options.ts";
import type { SlotPredictor } from "../speculative/slot-predictor.ts";

/** One context sequence and the node-llama-cpp helpers bound to it. */
export interface Slot {
  sequence: LlamaContextSequence;
  /** Puts the slot's tokens in sequence order in a batch (batch-order.ts). */
  priority: EvaluationPriority;
  /** Holds the draft model's or prompt lookup's predictor of the request on the slot, if it asked for one. */
  predictor: SlotPredictor;
  chat: LlamaChat;
  completion: LlamaCompletion;
}

export interface RunHooks {
  signal: AbortSignal;
  onText: (text: string, logprobs?: TokenLogprob[]) => void;
  onToken: () => void;
}

export interface RunOutcome {
  stopReason: EngineStopReason;
  /** The caller's stop string that ended the text. */
  stopString?: string;
  toolCalls?: ToolCall[];
}

/** A request checked against the loaded model, ready to run as soon as it holds a slot. */
export interface Plan {
  /** The prompt as the slot's sequence will hold it, which also picks the slot that caches most of it. */
  prompt: Token[];
  maxTokens: number;
  limitIsContextEnd: boolean;
  run(slot: Slot, hooks: RunHooks): Promise<RunOutcome>;
}

/** What a plan reads of the loaded model. */
export interface PlanModel {
  llama: Llama;
  model: LlamaModel;
  chatWrapper: ChatWrapper;
  /** Context per slot, in tokens. */
  contextLength: number;
  vocabularySize: number;
  /** The token `LlamaCompletion` puts before every input, which the prompt count must include. */
  completionBos: Token | null;
  /** The grammar of any JSON value (`response_format: json_object`), made once per model. */
  jsonGrammar(): Promise<LlamaGrammar>;
}

/** `input` as LlamaCompletion evaluates it: after its own BOS. */
export function withCompletionBos(model: PlanModel, input: Token[]): Token[] {
  return model.completionBos === null ? input : [model.completionBos, ...input];
}

export function planSampling(model: PlanModel, request: ChatRequest | CompletionRequest): SamplingOptions {
  return samplingOptions(request, { tokenizer: model.model.tokenizer, vocabularySize: model.vocabularySize });
}

/** What each plan's run tells node-llama-cpp of its slot and hooks: the length, the slot's order in a batch, the cancel, the token count (text goes where the plan says). */
export function runOptions(slot: Slot, hooks: RunHooks, maxTokens: number) {
  return { maxTokens, evaluationPriority: slot.priority, signal: hooks.signal, stopOnAbortSignal: true, onToken: hooks.onToken };
}

/** LlamaCompletion's context shift would cut the prompt's start; the budget already keeps it from being needed. */
export function completionSampling(sampling: SamplingOptions) {
  return { ...sampling, contextShiftSize: 0, disableContextShift: true };
}

/** Why node-llama-cpp stopped, and which of the caller's stop strings did it (given as strings, so its parts are text). */
export function outcomeOf(metadata: { stopReason: EngineStopReason; customStopTrigger?: readonly (string | Token)[] }): RunOutcome {
  const trigger = metadata.stopReason === "customStopTrigger" ? metadata.customStopTrigger : undefined;
  return { stopReason: metadata.stopReason, ...(trigger ? { stopString: trigger.filter((part) => typeof part === "string").join("") } : {}) };
}
