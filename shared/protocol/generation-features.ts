import type { Operation } from "./frames.ts";

/**
 * Parts of a chat or completion request an agent declares it serves (hello's
 * `generation_features`). An agent from before them would not read such a request at all, so the
 * gateway sends them only to agents that declare them.
 */
export const GENERATION_FEATURES = ["choices", "logprobs", "speculative"] as const;
export type GenerationFeature = (typeof GENERATION_FEATURES)[number];

/** What the operation needs beyond a plain generation, with the request field that needs it. */
export function featuresNeeded(operation: Operation): Array<{ feature: GenerationFeature; param: string }> {
  if (operation.op !== "chat" && operation.op !== "completion") return [];
  const needed: Array<{ feature: GenerationFeature; param: string }> = [];
  if ((operation.body.n ?? 1) > 1) needed.push({ feature: "choices", param: "n" });
  const logprobs = operation.op === "chat" ? operation.body.logprobs === true : operation.body.logprobs !== undefined;
  if (logprobs) needed.push({ feature: "logprobs", param: "logprobs" });
  if (operation.body.draft_model !== undefined) needed.push({ feature: "speculative", param: "draft_model" });
  else if (operation.body.prompt_lookup === true) needed.push({ feature: "speculative", param: "prompt_lookup" });
  return needed;
}

/** The draft model a chat or completion names (speculative decoding): a node serving it must hold both. */
export function draftModelOf(operation: Operation): string | undefined {
  return operation.op === "chat" || operation.op === "completion" ? operation.body.draft_model : undefined;
}

/** The first of the operation's needs that an agent declaring `declared` does not serve. */
export function missingFeature(operation: Operation, declared: readonly string[] | undefined): { feature: GenerationFeature; param: string } | undefined {
  return featuresNeeded(operation).find((need) => !(declared ?? []).includes(need.feature));
}
