import { describe, expect, test } from "vitest";
import { ApiError } from "./api-error.ts";
import { atDone, endedByUnload, incompleteGeneration, nextEvent, throughDone, untilDone } from "./generation-contract.ts";
import type { GenerationEvent, GenerationResult, StopReason } from "./generation-events.ts";

const result = (stopReason: StopReason = "eosFound"): GenerationResult => ({
  finish_reason: "stop",
  usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
  stats: { tokens_per_second: 10, time_to_first_token: 0.01, generation_time: 0.2, stop_reason: stopReason },
  model_info: { arch: "llama", quant: "F32", format: "gguf", context_length: 2048 },
  runtime: { name: "test", version: "1", supported_formats: ["gguf"] },
});

const start: GenerationEvent = { type: "start", model: "m" };
const delta = (text: string): GenerationEvent => ({ type: "delta", text });
const done: GenerationEvent = { type: "done", result: result() };

/** A producer that records how far it was pulled and whether it was closed (its `finally` ran). */
function source(events: GenerationEvent[]) {
  const seen = { pulled: 0, closed: false };
  async function* generate(): AsyncGenerator<GenerationEvent> {
    try {
      for (const event of events) {
        seen.pulled += 1;
        yield event;
      }
    } finally {
      seen.closed = true;
    }
  }
  return { events: generate(), seen };
}

async function collect(events: AsyncIterable<GenerationEvent>): Promise<GenerationEvent[]> {
  const collected: GenerationEvent[] = [];
  for await (const event of events) collected.push(event);
  return collected;
}

describe("untilDone", () => {
  test("yields the events through done, then closes the source without pulling what follows", async () => {
    const { events, seen } = source([start, delta("a"), done, delta("after done")]);
    expect(await collect(untilDone(events))).toEqual([start, delta("a"), done]);
    expect(seen.pulled).toBe(3);
    expect(seen.closed).toBe(true);
  });

  test("a source that ends without done throws incomplete_generation (502), after the events it had", async () => {
    const { events } = source([start, delta("a")]);
    const collected: GenerationEvent[] = [];
    const failure = await (async () => {
      for await (const event of untilDone(events)) collected.push(event);
    })().catch((error: unknown) => error);
    expect(collected).toEqual([start, delta("a")]);
    expect(failure).toBeInstanceOf(ApiError);
    expect(failure).toMatchObject({ status: 502, code: "incomplete_generation" });
  });

  test("the error for a missing done is the caller's to make", async () => {
    const { events } = source([start]);
    await expect(collect(untilDone(events, () => incompleteGeneration("The fleet")))).rejects.toThrow("The fleet ended the generation without a result.");
  });
});

describe("nextEvent", () => {
  test("returns each event in turn and throws incomplete_generation where the source ends", async () => {
    const { events } = source([start, delta("a")]);
    expect(await nextEvent(events)).toEqual(start);
    expect(await nextEvent(events)).toEqual(delta("a"));
    await expect(nextEvent(events)).rejects.toMatchObject({ status: 502, code: "incomplete_generation" });
  });

  test("a source that ends without done throws the caller's error", async () => {
    const { events } = source([]);
    await expect(nextEvent(events, () => incompleteGeneration("The engine", 500))).rejects.toMatchObject({ status: 500, code: "incomplete_generation" });
  });
});

describe("atDone", () => {
  test("releases as done goes by, before the consumer has it, so a consumer that stops at done leaves nothing held", async () => {
    const { events, seen } = source([start, delta("a"), done]);
    const released: GenerationEvent[] = [];
    const passed = atDone(events, (event) => released.push(event));
    expect(await passed.next()).toEqual({ done: false, value: start });
    expect(await passed.next()).toEqual({ done: false, value: delta("a") });
    expect(released).toEqual([]);
    const last = await passed.next();
    expect(last.value).toEqual(done);
    // Released already, though the consumer never pulls again and the source is never closed.
    expect(released).toEqual([done]);
    expect(seen.closed).toBe(false);
  });

  test("passes every event through unchanged and does not release a generation that ends without done", async () => {
    const { events } = source([start, delta("a")]);
    let released = 0;
    expect(await collect(atDone(events, () => (released += 1)))).toEqual([start, delta("a")]);
    expect(released).toBe(0);
  });
});

describe("throughDone", () => {
  test("cuts a batch after its first done", () => {
    expect(throughDone([delta("a"), done, delta("b"), done])).toEqual([delta("a"), done]);
  });

  test("leaves a batch without done whole", () => {
    expect(throughDone([start, delta("a")])).toEqual([start, delta("a")]);
  });
});

test("a done whose stop reason is modelUnloaded was cut by the unload; others were not", () => {
  expect(endedByUnload(result("modelUnloaded"))).toBe(true);
  expect(endedByUnload(result("userStopped"))).toBe(false);
  expect(endedByUnload(result("eosFound"))).toBe(false);
});
