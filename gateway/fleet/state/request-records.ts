import type { RequestOrigin } from "../access/caller.ts";
import type { Refusal } from "../calls/api-calls.ts";
import type { SettledJob } from "../routing/settlement.ts";
import type { RequestRecord } from "./request-log.ts";

/** A model name is the caller's to choose, up to a body's size: the log keeps it as asked (a wrong name is worth seeing), cut to this. */
const MODEL_CHARS = 200;

const originFields = (origin: RequestOrigin | null | undefined) => ({
  family: origin?.family ?? null,
  route: origin?.route ?? null,
  traceparent: origin?.traceparent ?? null,
});

/** The request log's row for a request that settled: the same tokens the usage ledger counts. */
export function settledRecord(job: SettledJob, keyName: string | null): RequestRecord {
  return {
    id: job.id,
    at: new Date(job.receivedAt).toISOString(),
    key_id: job.caller,
    key_name: keyName,
    ...originFields(job.origin),
    op: job.op,
    model: job.model.slice(0, MODEL_CHARS),
    node: job.node,
    status: job.status,
    error_code: job.errorCode,
    prompt_tokens: job.promptTokens,
    cached_tokens: job.cachedTokens,
    completion_tokens: job.completionTokens,
    queue_ms: Math.round(job.queueMs),
    ttft_ms: job.ttftMs,
    duration_ms: Math.max(0, Math.round(job.durationMs)),
    tokens_per_second: job.tokensPerSecond,
    retries: job.retries,
  };
}

/** The request log's row for a request turned away before routing: no node, no tokens. */
export function refusedRecord(refusal: Refusal, keyName: string | null, at: Date): RequestRecord {
  return {
    id: crypto.randomUUID(),
    at: at.toISOString(),
    key_id: refusal.keyId,
    key_name: keyName,
    ...originFields(refusal.caller.via),
    op: refusal.op,
    model: (refusal.model ?? "").slice(0, MODEL_CHARS),
    node: null,
    status: refusal.error.status,
    error_code: refusal.error.code ?? null,
    prompt_tokens: 0,
    cached_tokens: 0,
    completion_tokens: 0,
    queue_ms: 0,
    ttft_ms: null,
    duration_ms: 0,
    tokens_per_second: null,
    retries: 0,
  };
}
