/**
 * Carried fix for node-llama-cpp 3.21.1 (docs/upstream/node-llama-cpp-speculative-validation.md):
 * `LlamaContextSequence._speculativeEvaluate` checks each drafted token against the token the
 * model chose after the previous one, but never records the tokens it confirms
 * (`validatedTokens` stays empty), so only the first drafted token of a check can be accepted
 * and all after it are counted refuted and thrown away. Speculative decoding then yields at most
 * two tokens per evaluation. The fix records each confirmed token, the one line upstream lacks.
 *
 * The method is rebuilt from its own source with that line added, over the same module-level
 * helpers it uses (imported from the same files, so they are the same objects). When the
 * installed version's source differs from the one this was written for, nothing is patched and
 * `speculativeValidationFix` says why; its test fails then, so the fix is dropped or redone.
 */
import { acquireLock, withLock } from "lifecycle-utils";
import { LlamaContextSequence } from "node-llama-cpp";

/** The line after which a confirmed drafted token must be recorded. */
const CONFIRMED = "this._loadedTokenPredictions.push([evalTokens[i], [resultToken, probabilities, confidence]]);";
const RECORD = "validatedTokens.push([evalTokens[i], resultToken]);";
/** What the method reads the last confirmed token from (the buggy part is that nothing pushes to it). */
const READ = "validatedTokens.at(-1)?.[1]";

/** node-llama-cpp's own constant in LlamaContext.js, which the method reads. */
const DEFAULT_EVALUATION_PRIORITY = 5;

/** node-llama-cpp's `reviveTokenProbabilities` (LlamaContext.js, not exported): flat [token, p, …] to a Map. */
function reviveTokenProbabilities(probabilities: number[] | undefined): Map<number, number> | undefined {
  if (probabilities == null) return undefined;
  const revived = new Map<number, number>();
  for (let i = 1; i < probabilities.length; i += 2) revived.set(probabilities[i - 1] as number, probabilities[i] as number);
  return revived;
}

type Method = (...args: unknown[]) => AsyncGenerator<unknown>;
const prototype = LlamaContextSequence.prototype as unknown as { _speculativeEvaluate: Method };

async function apply(): Promise<{ applied: true } | { applied: false; reason: string }> {
  const source = prototype._speculativeEvaluate.toString();
  if (source.includes(RECORD) || !source.includes(READ)) return { applied: false, reason: "the installed node-llama-cpp records confirmed drafted tokens itself" };
  if (!source.includes(CONFIRMED) || !source.startsWith("async *_speculativeEvaluate(")) {
    return { applied: false, reason: "the installed node-llama-cpp's _speculativeEvaluate is not the one this fix was written for" };
  }
  // Internal modules, reached by file URL as the package's own imports reach them: the same instances.
  const dist = import.meta.resolve("node-llama-cpp");
  const { LlamaSampler } = await import(new URL("./evaluator/LlamaContext/LlamaSampler.js", dist).href);
  const { internalCheckpoints } = await import(new URL("./evaluator/LlamaContext/LlamaContext.js", dist).href);
  const fixed = source.replace(CONFIRMED, `${CONFIRMED} ${RECORD}`).replace(/^async \*/, "async function* ");
  const helpers = { acquireLock, withLock, LlamaSampler, internalCheckpoints, reviveTokenProbabilities, defaultEvaluationPriority: DEFAULT_EVALUATION_PRIORITY };
  const build = new Function(...Object.keys(helpers), `return (${fixed});`) as (...values: unknown[]) => Method;
  prototype._speculativeEvaluate = build(...Object.values(helpers));
  return { applied: true };
}

/** Whether the fix is in place, applied once when this module loads. */
export const speculativeValidationFix = await apply();
