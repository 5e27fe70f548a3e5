import { invalidRequest } from "../../../shared/errors.ts";
import type { ChatRequest, CompletionRequest } from "../../../shared/schemas/requests.ts";

/** A node owner's speculative decoding per model (by id), as LM Studio's per-model settings set it. */
export interface SpeculativeDefaults {
  /** Model id → the model that drafts for it. */
  draftModels?: Readonly<Record<string, string>>;
  /** Models whose requests draft from their prompt (prompt lookup). */
  promptLookup?: readonly string[];
}

/** What a request drafts with, before any model is loaded for it. */
export type SpeculationChoice = { draftModel: string } | { promptLookup: true } | undefined;

/**
 * The request's own `draft_model` or `prompt_lookup: true` wins over the model's default;
 * `prompt_lookup: false` turns a default prompt lookup off. A sequence drafts one way at a time,
 * so asking for both is refused.
 */
export function speculationChoice(request: ChatRequest | CompletionRequest, modelId: string, defaults: SpeculativeDefaults): SpeculationChoice {
  if (request.draft_model !== undefined && request.prompt_lookup === true) {
    throw invalidRequest("draft_model and prompt_lookup cannot be combined: a generation drafts one way; send one or the other.", "prompt_lookup");
  }
  if (request.draft_model !== undefined) return { draftModel: request.draft_model };
  if (request.prompt_lookup === true) return { promptLookup: true };
  const draftModel = defaults.draftModels?.[modelId];
  if (draftModel !== undefined) return { draftModel };
  if (request.prompt_lookup !== false && defaults.promptLookup?.includes(modelId)) return { promptLookup: true };
  return undefined;
}
