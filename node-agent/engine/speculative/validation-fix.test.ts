import { DraftSequenceTokenPredictor, getLlama, LlamaCompletion } from "node-llama-cpp";
import { afterAll, expect, test } from "vitest";
import { testModelsDir } from "../../../test/harness/test-models.ts";
import { ensureModel } from "../../demo-models/demo-models.ts";
import { TINY_SPECULATIVE } from "../../demo-models/speculative-pairs.ts";
import { speculativeValidationFix } from "./validation-fix.ts";

const llama = await getLlama({ gpu: false, build: "never" });
afterAll(() => llama.dispose());

test("the carried fix applies to the installed node-llama-cpp (when this fails, upstream changed: drop or redo the fix)", () => {
  expect(speculativeValidationFix).toEqual({ applied: true });
});

test("with it, a check accepts every drafted token the model agrees with, not only the first", async () => {
  const dir = await testModelsDir();
  const target = await llama.loadModel({ modelPath: await ensureModel(dir, TINY_SPECULATIVE.target) });
  const draft = await llama.loadModel({ modelPath: await ensureModel(dir, TINY_SPECULATIVE.draft) });
  const draftContext = await draft.createContext({ contextSize: 512, threads: 1 });
  const targetContext = await target.createContext({ contextSize: 512, threads: 1 });
  const predictor = new DraftSequenceTokenPredictor(draftContext.getSequence(), { minTokens: 8, maxTokens: 8 });
  const sequence = targetContext.getSequence({ tokenPredictor: predictor });
  await new LlamaCompletion({ contextSequence: sequence }).generateCompletion("Once upon a time", { temperature: 0, maxTokens: 40, repeatPenalty: false });
  const { validated, refuted } = sequence.tokenPredictions;
  // Unfixed, every check after its first drafted token refutes the rest: validated ≈ checks, refuted ≈ 7 per check.
  expect(validated).toBeGreaterThan(20);
  expect(refuted).toBeLessThan(validated);
});
