import { join } from "node:path";
import { getLlama, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll, expect, test } from "vitest";
import { CompletionRequest } from "../../shared/protocol/request-schemas.ts";
import { testModelsDir } from "../../test/harness/test-models.ts";
import { batchFillMismatch, PATCHED_VERSION } from "./batch-fill.ts";
import { PROMPT_CHUNK } from "./batched-context.ts";
import { LoadedLlm } from "./loaded-llm.ts";

const SLOTS = 4;
const never = new AbortController().signal;

let llama: Llama;
let llm: LoadedLlm;
beforeAll(async () => {
  llama = await getLlama({ gpu: false });
  llm = await LoadedLlm.load(llama, {
    id: "tiny",
    path: join(await testModelsDir(), "lmgate/tiny-chat-GGUF/tiny-chat-F32.gguf"),
    contextLength: 2048,
    slots: SLOTS,
    maxQueue: SLOTS,
    threads: 1,
    arch: "llama",
    quantization: "F32",
    runtime: { name: "llama.cpp", version: "", supported_formats: ["gguf"] },
  });
}, 60_000);
afterAll(async () => {
  await llm?.dispose();
});

/** Generated tokens of one completion; `onText` sees each text event. */
async function complete(prompt: string, maxTokens: number, onText: () => void = () => {}): Promise<{ tokens: number; promptTokens: number }> {
  const request = CompletionRequest.parse({ model: "tiny", prompt, max_tokens: maxTokens, temperature: 0, seed: 1 });
  for await (const event of llm.completion(request, never)) {
    if (event.type === "delta") onText();
    if (event.type === "done") return { tokens: event.result.usage.completion_tokens, promptTokens: event.result.usage.prompt_tokens };
  }
  throw new Error("no done event");
}

test(`the carried fix applies to the installed node-llama-cpp (${PATCHED_VERSION}, the same source): upgrading must re-check it`, () => {
  expect(batchFillMismatch()).toBeNull();
});

test("four streams at once: every decode carries all four sequences", async () => {
  const before = llm.batchCounts;
  const runs = await Promise.all(["the sea", "a tree", "the house", "a sea"].map((prompt) => complete(prompt, 48)));
  const after = llm.batchCounts;
  const decodes = after.decodes - before.decodes;
  const sequences = after.sequences - before.sequences;
  expect(runs.map((run) => run.tokens)).toEqual([48, 48, 48, 48]);
  expect(sequences / decodes).toBe(SLOTS);
});

test("a long prompt arriving on a used slot is evaluated in chunks between the running streams' tokens", async () => {
  // Every slot holds an earlier generation: the newcomer first erases what its prompt does not share.
  await Promise.all(["a house", "a tree", "the house", "a sea"].map((prompt) => complete(prompt, 4)));
  const running = ["the sea", "a tree", "the house"];
  const texts = running.map(() => 0);
  const duringPrompt = running.map(() => 0);
  let arrived = false;
  let started!: () => void;
  const allStarted = new Promise<void>((resolve) => (started = resolve));
  const streams = running.map((prompt, index) =>
    complete(prompt, 140, () => {
      texts[index] = (texts[index] ?? 0) + 1;
      if (arrived) duringPrompt[index] = (duringPrompt[index] ?? 0) + 1;
      if (texts.every((count) => count >= 2)) started();
    }),
  );
  await allStarted;
  // ~1,500 tokens: the streams' next tokens wait for no more than a chunk of it at a time.
  const long = Array.from({ length: 210 }, (_, index) => `the sea ${index % 7 === 0 ? "house" : "tree"}`).join(" ");
  arrived = true;
  const newcomer = await complete(long, 2, () => (arrived = false));
  const ran = await Promise.all(streams);
  expect(ran.map((run) => run.tokens)).toEqual([140, 140, 140]);
  // A token for each stream in every batch of the prompt (the newcomer's first text comes with its last token).
  const chunks = Math.floor(newcomer.promptTokens / PROMPT_CHUNK);
  for (const count of duringPrompt) {
    expect(count).toBeGreaterThanOrEqual(chunks - 1);
    expect(count).toBeLessThanOrEqual(chunks + 4);
  }
});
