import { TokenBias, type LLamaContextualRepeatPenalty, type Token, type Tokenizer } from "node-llama-cpp";
import { invalidRequest } from "../../shared/protocol/api-error.ts";
import type { CompletionRequest } from "../../shared/protocol/request-schemas.ts";

type SamplingRequest = Pick<
  CompletionRequest,
  "temperature" | "top_p" | "top_k" | "min_p" | "repeat_penalty" | "presence_penalty" | "frequency_penalty" | "seed" | "stop" | "logit_bias"
>;

/** What node-llama-cpp's `generateResponse` / `generateCompletionWithMeta` take for sampling. */
export interface SamplingOptions {
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  seed: number | undefined;
  repeatPenalty: LLamaContextualRepeatPenalty;
  tokenBias: TokenBias | undefined;
  customStopTriggers: string[] | undefined;
}

/**
 * LM Studio's defaults for a request that leaves a parameter out. node-llama-cpp's own default is
 * greedy decoding, which OpenAI clients do not expect when they send no temperature.
 */
const DEFAULT_SAMPLING = { temperature: 0.8, topP: 0.95, topK: 40, minP: 0.05, repeatPenalty: 1.1 } as const;

/** OpenAI's logit_bias of -100 means "ban the token". */
const BAN_BIAS = -100;

export function samplingOptions(request: SamplingRequest, model: { tokenizer: Tokenizer; vocabularySize: number }): SamplingOptions {
  const stops = request.stop === undefined ? [] : (Array.isArray(request.stop) ? request.stop : [request.stop]).filter((stop) => stop !== "");
  return {
    temperature: request.temperature ?? DEFAULT_SAMPLING.temperature,
    topP: request.top_p ?? DEFAULT_SAMPLING.topP,
    topK: request.top_k ?? DEFAULT_SAMPLING.topK,
    minP: request.min_p ?? DEFAULT_SAMPLING.minP,
    seed: request.seed,
    repeatPenalty: {
      penalty: request.repeat_penalty ?? DEFAULT_SAMPLING.repeatPenalty,
      presencePenalty: request.presence_penalty,
      frequencyPenalty: request.frequency_penalty,
    },
    tokenBias: request.logit_bias === undefined ? undefined : tokenBias(request.logit_bias, model),
    customStopTriggers: stops.length > 0 ? stops : undefined,
  };
}

export function tokenBias(logitBias: Record<string, number>, model: { tokenizer: Tokenizer; vocabularySize: number }): TokenBias {
  const bias = new TokenBias(model.tokenizer);
  for (const [key, value] of Object.entries(logitBias)) {
    const token = Number(key);
    // An id outside the vocabulary would index past llama.cpp's logits array.
    if (!/^\d+$/.test(key) || token >= model.vocabularySize) {
      throw invalidRequest(`logit_bias: "${key}" is not a token id of this model (0 to ${model.vocabularySize - 1}).`, "logit_bias");
    }
    bias.set(token as Token, value <= BAN_BIAS ? "never" : { logit: value });
  }
  return bias;
}
