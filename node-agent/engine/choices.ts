import type { GenerationEvent, GenerationResult } from "../../shared/schemas/generation.ts";
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

/**
 * Runs several generations of one request at once (each takes a slot as one frees up) as one
 * stream: one `start`, their deltas tagged with their choice `index`, and one `done` whose usage
 * sums the completions and counts the prompt once, as OpenAI does. A failure of any fails all.
 */
export async function* mergeChoices(runs: Array<() => AsyncGenerator<GenerationEvent>>): AsyncGenerator<GenerationEvent> {
  const queue = new AsyncQueue<Tagged>();
  const generators = runs.map((run) => run());
  const stop = new AbortController();
  const pumps = generators.map(async (generator, index) => {
    for await (const event of generator) {
      if (stop.signal.aborted) return;
      queue.push({ index, event });
    }
  });
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

function merged(results: GenerationResult[]): GenerationResult {
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
    choices: results.map((result, index) => ({
      index,
      finish_reason: result.finish_reason,
      ...(result.tool_calls ? { tool_calls: result.tool_calls } : {}),
      ...(result.stop_string !== undefined ? { stop_string: result.stop_string } : {}),
    })),
  };
}
