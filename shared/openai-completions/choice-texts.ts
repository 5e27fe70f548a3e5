import type { GenerationEvent, GenerationResult, TokenLogprob } from "../protocol/generation-events.ts";
import type { CompletionLogprobs } from "./completion-schemas.ts";

/** What a chat or text completion request asked of its choices. */
export interface ChoiceRequest {
  /** How many choices (`n`). */
  count: number;
  /** Whether every token's log probability goes out with it. */
  logprobs: boolean;
}

/** One choice as the events built it: its text and, when asked for, its tokens' log probabilities. */
export interface ChoiceText {
  text: string;
  logprobs: TokenLogprob[];
}

/** Collects the deltas of a generation per choice, for a non-streamed body. */
export class ChoiceTexts {
  readonly #choices: ChoiceText[];

  constructor(count: number) {
    this.#choices = Array.from({ length: count }, () => ({ text: "", logprobs: [] }));
  }

  /** Passes the events on unchanged, keeping what their deltas carry. */
  async *tap(events: AsyncIterable<GenerationEvent>): AsyncGenerator<GenerationEvent> {
    for await (const event of events) {
      if (event.type === "delta") {
        const choice = this.#choices[event.index ?? 0];
        if (choice) {
          choice.text += event.text;
          if (event.logprobs) choice.logprobs.push(...event.logprobs);
        }
      }
      yield event;
    }
  }

  get all(): readonly ChoiceText[] {
    return this.#choices;
  }
}

/** How choice `index` ended: its own entry with `n` > 1, else the result's fields. */
export function choiceEnd(result: GenerationResult, index: number): Pick<GenerationResult, "finish_reason" | "tool_calls"> {
  const own = result.choices?.find((choice) => choice.index === index);
  return own ?? { finish_reason: result.finish_reason, ...(result.tool_calls ? { tool_calls: result.tool_calls } : {}) };
}

/**
 * The legacy completions API's shape of the same numbers. `text_offset` counts characters from
 * the start of the choice's text (`offset` is where these tokens begin).
 */
export function completionLogprobs(entries: readonly TokenLogprob[], offset: number): CompletionLogprobs {
  const textOffset: number[] = [];
  let at = offset;
  for (const entry of entries) {
    textOffset.push(at);
    at += entry.token.length;
  }
  return {
    tokens: entries.map((entry) => entry.token),
    token_logprobs: entries.map((entry) => entry.logprob),
    top_logprobs: entries.map((entry) => Object.fromEntries(entry.top_logprobs.map((top) => [top.token, top.logprob]))),
    text_offset: textOffset,
  };
}
