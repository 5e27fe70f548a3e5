import { ApiError } from "../../../shared/protocol/api-error.ts";

/** Stored responses one key may keep at once (each is a row: its turn's input and answer, up to 1.5 MB). */
export const MAX_STORED_RESPONSES_PER_KEY = 10_000;
/** Bytes of stored responses one key may keep at once, unless LMGATE_STORED_BYTES_PER_KEY says otherwise. */
export const DEFAULT_STORED_BYTES_PER_KEY = 100 * 1024 * 1024;

export interface StoredUsage {
  count: number;
  bytes: number;
}

/**
 * Why one more stored response of `adding` bytes does not fit the key's share, or null if it does.
 * A key keeps its responses 30 days from their last use; each turn of a `previous_response_id` chain
 * is stored once, but without a share one key could still fill the fleet's storage.
 */
export function storageRefusal(usage: StoredUsage, adding: number, maxBytes: number): ApiError | null {
  if (usage.count < MAX_STORED_RESPONSES_PER_KEY && usage.bytes + adding <= maxBytes) return null;
  return new ApiError(
    409,
    `This API key's stored responses are full: ${usage.count} responses, ${usage.bytes} of ${maxBytes} bytes (at most ${MAX_STORED_RESPONSES_PER_KEY} responses). ` +
      "Delete some (DELETE /v1/responses/{id}), send store: false, or ask the admin to clear them (DELETE /admin/keys/{id}/responses).",
    { code: "stored_responses_full", param: "store" },
  );
}
