import { join } from "node:path";
import { getLlama, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll, expect, test } from "vitest";
import { CompletionRequest } from "../../shared/schemas/requests.ts";
import { testModelsDir } from "../../test/harness/test-models.ts";
import { batchFillMismatch, PATCHED_VERSION } from "./batch-fill.ts";
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
    contextLength: 512,
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

/** Generated tokens of one completion. */
async function complete(prompt: string, maxTokens: number): Promise<number> {
  const request = CompletionRequest.parse({ model: "tiny", prompt, max_tokens: maxTokens, temperature: 0, seed: 1 });
  for await (const event of llm.completion(request, never)) if (event.type === "done") return event.result.usage.completion_tokens;
  throw new Error("no done event");
}

test(`the carried fix applies to the installed node-llama-cpp (${PATCHED_VERSION}, the same source): upgrading must re-check it`, () => {
  expect(batchFillMismatch()).toBeNull();
});

test("four streams at once: every decode carries all four sequences", async () => {
  const before = llm.batchCounts;
  const tokens = await Promise.all(["the sea", "a tree", "the house", "a sea"].map((prompt) => complete(prompt, 48)));
  const after = llm.batchCounts;
  const decodes = after.decodes - before.decodes;
  const sequences = after.sequences - before.sequences;
  expect(tokens).toEqual([48, 48, 48, 48]);
  expect(sequences / decodes).toBe(SLOTS);
});
