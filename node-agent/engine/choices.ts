import type { ChoiceEnd, GenerationEvent, GenerationResult, StopReason } from "../../shared/protocol/generation-events.ts";
import { AsyncQueue } from "./async-queue.ts";

/**
 * The seed of choice `index` of `n`: choices of one request must differ, also when the caller
 * fixed a seed (then they are still reproducible). Without one, each gets a random seed, since
 * node-llama-cpp's default (the time) would give choices started together the same text.
 */
export function choiceSeed(seed: number | undefined, index: number): number {
  return (seed ?? Math.floor(Math.random() * 2 ** 31)) + index;
}

type Tagged = { index: number; event: GenerationEvent };

const CUT_SHORT = new Set<StopReason>(["userStopped", "modelUnloaded"]);

/**
 * Runs several generations of one request as one stream: one `start`, their deltas tagged with
 * their choice `index`, and one `done` whose usage sums the completions and counts the prompt
 * once, as OpenAI does. At most `parallel` run at once (the slots free when the request came);
 * the rest follow as those finish, so a request's own choices do not fill the model's queue. A
 * choice stopped by the caller or an unload starts no more; a failure of any fails all.
 */
export async function* mergeChoices(runs: Array<() => AsyncGenerator<GenerationEvent>>, parallel: number): AsyncGenerator<GenerationEvent> {
  const queue = new AsyncQueue<Tagged>();
  const generators: Array<AsyncGenerator<GenerationEvent>> = [];
  const stop = new AbortController();
  let next = 0;
  /** A choice ended cut short: the others still report what they spent, but no new one starts. */
  let halted = false;
  const worker = async () => {
    while (next < runs.length && !stop.signal.aborted && !halted) {
      const index = next++;
      const generator = (runs[index] as () => AsyncGenerator<GenerationEvent>)();
      generators.push(generator);
      for await (const event of generator) {
        if (stop.signal.aborted) return;
        if (event.type === "done" && CUT_SHORT.has(event.result.stats.stop_reason)) halted = true;
        queue.push({ index, event });
      }
    }
  };
  const pumps = Array.from({ length: Math.max(1, Math.min(parallel, runs.length)) }, worker);
  Promise.all(pumps).then(
    () => queue.end(),
    (error: unknown) => queue.fail(error),
  );

  const results: GenerationResult[] = [];
  let started = false;
  try {
    for await (const { index, event } of queue) {
      if (event.type === "start") {
        if (!started) yield event;
        started = true;
      } else if (event.type === "delta") {
        yield { ...event, index };
      } else {
        results[index] = event.result;
      }
    }
    yield { type: "done", result: merged(results) };
  } finally {
    // Reached early when the consumer stops or one choice failed: the others stop and free their slots.
    stop.abort();
    await Promise.allSettled(generators.map((generator) => generator.return(undefined)));
    await Promise.allSettled(pumps);
  }
}

/** `results` by choice index; choices never started (the request was cut short) have none. */
function merged(byIndex: GenerationResult[]): GenerationResult {
  // Dense: filter skips the holes of choices never started.
  const results = byIndex.filter(() => true);
  const first = results[0] as GenerationResult;
  const completion = results.reduce((sum, result) => sum + result.usage.completion_tokens, 0);
  return {
    ...first,
    usage: {
      prompt_tokens: first.usage.prompt_tokens,
      completion_tokens: completion,
      total_tokens: first.usage.prompt_tokens + completion,
      ...(first.usage.prompt_tokens_details ? { prompt_tokens_details: first.usage.prompt_tokens_details } : {}),
    },
    stats: {
      ...first.stats,
      // The slowest choice's time is the request's; its speed is its own.
      generation_time: Math.max(...results.map((result) => result.stats.generation_time)),
      // Any choice cut by an unload makes the answer incomplete.
      stop_reason: results.find((result) => result.stats.stop_reason === "modelUnloaded")?.stats.stop_reason ?? first.stats.stop_reason,
    },
    // flatMap skips the holes of choices never started.
    choices: byIndex.flatMap((result, index) => [choiceEnd(index, result)]),
  };
}

function choiceEnd(index: number, result: GenerationResult): ChoiceEnd {
  return {
    index,
    finish_reason: result.finish_reason,
    ...(result.tool_calls ? { tool_calls: result.tool_calls } : {}),
    ...(result.stop_string !== undefined ? { stop_string: result.stop_string } : {}),
  };
}
