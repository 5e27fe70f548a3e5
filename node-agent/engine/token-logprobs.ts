import type { LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import type { TokenLogprob, TopLogprob } from "../../shared/protocol/generation-events.ts";
import type { EngineStopReason } from "./generation-stats.ts";
import type { SamplingOptions } from "./sampling-options.ts";

/**
 * A generation that reports each token's log probability. node-llama-cpp's `LlamaChat` and
 * `LlamaCompletion` do not expose probabilities, so this loop samples on the sequence itself
 * (`evaluateWithMetadata`), with the same sampling options. The probabilities are those of the
 * distribution the token was drawn from: after temperature, top_k, top_p and min_p (llama.cpp's
 * server calls these post-sampling probabilities); at temperature 0 that is the model's own.
 */
export interface LogprobRun {
  sequence: LlamaContextSequence;
  model: LlamaModel;
  /** The whole prompt, as tokens (with its BOS when the model wants one). */
  input: Token[];
  sampling: SamplingOptions;
  maxTokens: number;
  /** The chat template's end-of-turn token sequences (beyond end-of-generation tokens), which end the answer unseen. */
  endOfTurn?: Token[][];
  /** Alternatives per token (0 = the chosen token's probability only). */
  top: number;
  signal: AbortSignal;
  onText: (text: string, logprobs: TokenLogprob[]) => void;
  onToken: () => void;
}

export interface LogprobOutcome {
  stopReason: EngineStopReason;
  stopString?: string;
}

/** What a token's probability 0 is reported as: JSON has no -Infinity, and OpenAI uses this floor. */
const LOGPROB_FLOOR = -9999;

/** Tokens before a token that its text is read with. */
const CONTEXT_TOKENS = 8;

export async function generateWithLogprobs(run: LogprobRun): Promise<LogprobOutcome> {
  const { sequence, model, sampling } = run;
  const prompt = await reusePrefix(sequence, run.input);
  const stops = sampling.customStopTriggers ?? [];
  const generated: Token[] = [];
  /** Tokens sampled whose text has not gone out yet (a stop string may still cut it). */
  const pending: Array<{ entry: TokenLogprob; end: number }> = [];
  let text = "";
  let sent = 0;

  const emit = (upTo: number) => {
    if (upTo <= sent) return;
    const entries: TokenLogprob[] = [];
    while (pending.length > 0 && (pending[0] as { end: number }).end <= upTo) entries.push((pending.shift() as { entry: TokenLogprob }).entry);
    run.onText(text.slice(sent, upTo), entries);
    sent = upTo;
  };

  const evaluation = sequence.evaluateWithMetadata(
    prompt,
    { confidence: true, probabilities: run.top > 0 },
    {
      temperature: sampling.temperature,
      topK: sampling.topK,
      topP: sampling.topP,
      minP: sampling.minP,
      seed: sampling.seed,
      tokenBias: sampling.tokenBias,
      repeatPenalty: {
        punishTokens: () => generated.slice(-(sampling.repeatPenalty.lastTokens ?? 64)),
        penalty: sampling.repeatPenalty.penalty,
        frequencyPenalty: sampling.repeatPenalty.frequencyPenalty,
        presencePenalty: sampling.repeatPenalty.presencePenalty,
      },
    },
  );
  try {
    for (;;) {
      if (run.signal.aborted) return { stopReason: "abort" };
      const next = await evaluation.next();
      // The generator ends on an end-of-generation token, which it does not yield.
      if (next.done) {
        emit(text.length);
        return { stopReason: "eogToken" };
      }
      const { token, confidence } = next.value;
      const probabilities = "probabilities" in next.value ? (next.value.probabilities as Map<Token, number>) : undefined;
      // Tokens read with the ones before them, as the detokenizer does (e.g. a word's leading space).
      const before = [...run.input.slice(-CONTEXT_TOKENS), ...generated].slice(-CONTEXT_TOKENS);
      generated.push(token);
      run.onToken();
      const full = model.detokenize(generated, false, run.input.slice(-CONTEXT_TOKENS));
      // A character split over tokens shows as U+FFFD until its last byte comes.
      if (!full.endsWith("\uFFFD")) text = full;
      pending.push({ entry: tokenEntry(model, before, token, confidence, probabilities, run.top), end: text.length });

      const turnEnd = (run.endOfTurn ?? []).find((end) => end.length > 0 && endsWith(generated, end));
      if (turnEnd) {
        const kept = generated.slice(0, -turnEnd.length);
        text = model.detokenize(kept, false, run.input.slice(-CONTEXT_TOKENS));
        pending.splice(Math.max(0, pending.length - turnEnd.length));
        for (const item of pending) item.end = Math.min(item.end, text.length);
        emit(text.length);
        return { stopReason: "stopGenerationTrigger" };
      }
      const hit = firstStop(text, stops, sent);
      if (hit) {
        text = text.slice(0, hit.at);
        for (const item of pending) item.end = Math.min(item.end, hit.at);
        emit(text.length);
        return { stopReason: "customStopTrigger", stopString: hit.stop };
      }
      if (generated.length >= run.maxTokens) {
        emit(text.length);
        return { stopReason: "maxTokens" };
      }
      emit(text.length - heldBack(text, stops));
    }
  } finally {
    await evaluation.return();
  }
}

/**
 * Keeps the prompt tokens the sequence already holds (llama.cpp's prefix reuse) and drops the
 * rest; returns the tokens still to evaluate, at least one, whose logits give the first token.
 */
async function reusePrefix(sequence: LlamaContextSequence, input: Token[]): Promise<Token[]> {
  const held = sequence.contextTokens;
  let common = 0;
  while (common < held.length && common < input.length - 1 && held[common] === input[common]) common++;
  if (common < sequence.nextTokenIndex) await sequence.eraseContextTokenRanges([{ start: common, end: sequence.nextTokenIndex }]);
  return input.slice(common);
}

function tokenEntry(
  model: LlamaModel,
  before: Token[],
  token: Token,
  confidence: number,
  probabilities: Map<Token, number> | undefined,
  top: number,
): TokenLogprob {
  const alternatives: TopLogprob[] = [];
  if (probabilities) {
    for (const [candidate, probability] of probabilities) {
      if (alternatives.length >= top) break;
      alternatives.push(candidateEntry(model, before, candidate, probability));
    }
  }
  return { ...candidateEntry(model, before, token, confidence), top_logprobs: alternatives };
}

function candidateEntry(model: LlamaModel, before: Token[], token: Token, probability: number): TopLogprob {
  const text = model.detokenize([token], false, before);
  return { token: text, logprob: probability > 0 ? Math.max(Math.log(probability), LOGPROB_FLOOR) : LOGPROB_FLOOR, bytes: [...new TextEncoder().encode(text)] };
}

function endsWith(tokens: readonly Token[], end: readonly Token[]): boolean {
  if (end.length > tokens.length) return false;
  return end.every((token, index) => tokens[tokens.length - end.length + index] === token);
}

/** The earliest stop string in the text not yet sent (or overlapping its end). */
function firstStop(text: string, stops: string[], sent: number): { at: number; stop: string } | undefined {
  let best: { at: number; stop: string } | undefined;
  for (const stop of stops) {
    const at = text.indexOf(stop, Math.max(0, sent - stop.length + 1));
    if (at >= 0 && (best === undefined || at < best.at)) best = { at, stop };
  }
  return best;
}

/** Characters at the end of the text that could be the start of a stop string, so not sent yet. */
function heldBack(text: string, stops: string[]): number {
  let held = 0;
  for (const stop of stops) {
    for (let length = Math.min(stop.length - 1, text.length); length > held; length--) {
      if (text.endsWith(stop.slice(0, length))) {
        held = length;
        break;
      }
    }
  }
  return held;
}
