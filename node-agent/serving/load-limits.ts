import { ApiError } from "../../shared/errors.ts";
import type { LoadConfig } from "../engine/model-lifecycle.ts";

/** A byte count as memory is spoken of: "7.5 GiB". */
export function gib(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

/** 400: a load of more context per slot than the model was trained for. */
export function beyondTrainedContext(id: string, config: LoadConfig, trained: number): ApiError {
  return new ApiError(400, `context_length ${config.contextLength} is more than model "${id}" was trained for: at most ${trained}.`, {
    param: "context_length",
    code: "context_length_too_large",
  });
}

/** 400: a load that needs more memory than this node gives its models. */
export function beyondNodeMemory(id: string, config: LoadConfig, needed: number, limit: number): ApiError {
  return new ApiError(
    400,
    `Loading "${id}" with context_length ${config.contextLength} and parallel ${config.slots} needs about ${gib(needed)} of memory; ` +
      `this node gives its models at most ${gib(limit)}. Load it with a smaller context_length or parallel.`,
    { param: "context_length", code: "load_exceeds_memory" },
  );
}

/** 400: a draft model that, with the model it drafts for, needs more memory than this node gives its models. */
export function draftBeyondNodeMemory(draftId: string, targetId: string, needed: number, limit: number): ApiError {
  return new ApiError(
    400,
    `draft_model "${draftId}" does not fit beside "${targetId}": the two need about ${gib(needed)} of memory; ` +
      `this node gives its models at most ${gib(limit)}. Use a smaller draft model, or none.`,
    { param: "draft_model", code: "draft_model_too_large" },
  );
}
