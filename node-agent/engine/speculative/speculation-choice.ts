import { invalidRequest } from "../../../shared/protocol/api-error.ts";
import type { ChatRequest, CompletionRequest } from "../../../shared/protocol/request-schemas.ts";
import type { ModelSpeculation } from "../../../shared/protocol/v1-model-schemas.ts";

/** A node owner's speculative decoding per model (by id), as LM Studio's per-model settings set it. */
export interface SpeculativeDefaults {
  /** Model → the model that drafts for it. */
  draftModels?: Readonly<Record<string, string>>;
  /** Models whose requests draft from their prompt (prompt lookup). */
  promptLookup?: readonly string[];
}

/** The default of model `id`, if it has one. */
export function defaultSpeculation(defaults: SpeculativeDefaults, id: string): ModelSpeculation | undefined {
  const draftModel = defaults.draftModels?.[id];
  if (draftModel !== undefined) return { draft_model: draftModel };
  if (defaults.promptLookup?.includes(id)) return { prompt_lookup: true };
  return undefined;
}

/** What a request drafts with, before any model is loaded for it. */
export type SpeculationChoice = { draftModel: string } | { promptLookup: true } | undefined;

/**
 * The request's own `draft_model` or `prompt_lookup: true` wins over the model's default;
 * `prompt_lookup: false` turns a default prompt lookup off. A sequence drafts one way at a time,
 * so asking for both is refused.
 */
export function speculationChoice(request: ChatRequest | CompletionRequest, modelDefault: ModelSpeculation | undefined): SpeculationChoice {
  if (request.draft_model !== undefined && request.prompt_lookup === true) {
    throw invalidRequest("draft_model and prompt_lookup cannot be combined: a generation drafts one way; send one or the other.", "prompt_lookup");
  }
  if (request.draft_model !== undefined) return { draftModel: request.draft_model };
  if (request.prompt_lookup === true) return { promptLookup: true };
  if (modelDefault?.draft_model !== undefined) return { draftModel: modelDefault.draft_model };
  if (request.prompt_lookup !== false && modelDefault?.prompt_lookup) return { promptLookup: true };
  return undefined;
}
