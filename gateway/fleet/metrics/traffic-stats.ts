import type { StatsBucket } from "../../../shared/gateway-admin/admin-schemas.ts";
import type { Persistent } from "../state/saved-state.ts";

const BUCKET_SECONDS = 10;
const BUCKETS = 90;
/** TTFT samples kept per bucket for its median; a busy bucket keeps the first ones. */
const MAX_SAMPLES = 512;

interface Bucket {
  t: number;
  requests: number;
  errors: number;
  completionTokens: number;
  ttftMs: number[];
}

/**
 * The fleet's recent traffic in 10-second buckets, 15 minutes of them, for the dashboard. Kept in
 * memory and saved with `SavedState`, so the charts keep their history across hibernation.
 */
export class TrafficStats implements Persistent {
  readonly bucketSeconds = BUCKET_SECONDS;
  #buckets: Bucket[] = [];

  record(at: number, sample: { completionTokens: number; ttftMs: number | null; failed: boolean }): void {
    const t = bucketStart(at);
    let bucket = this.#buckets.at(-1);
    if (bucket === undefined || bucket.t !== t) {
      bucket = { t, requests: 0, errors: 0, completionTokens: 0, ttftMs: [] };
      this.#buckets.push(bucket);
      if (this.#buckets.length > BUCKETS) this.#buckets.shift();
    }
    bucket.requests += 1;
    bucket.errors += sample.failed ? 1 : 0;
    bucket.completionTokens += sample.completionTokens;
    if (sample.ttftMs !== null && bucket.ttftMs.length < MAX_SAMPLES) bucket.ttftMs.push(sample.ttftMs);
  }

  saved(): unknown {
    return this.#buckets;
  }

  restore(saved: unknown): void {
    if (Array.isArray(saved)) this.#buckets = (saved as Bucket[]).filter((bucket) => typeof bucket?.t === "number" && Array.isArray(bucket.ttftMs)).slice(-BUCKETS);
  }

  /** Every bucket of the window, oldest first, empty ones included so charts keep their time axis. */
  series(now: number): StatsBucket[] {
    const last = bucketStart(now);
    const byStart = new Map(this.#buckets.map((bucket) => [bucket.t, bucket]));
    const series: StatsBucket[] = [];
    for (let t = last - (BUCKETS - 1) * BUCKET_SECONDS; t <= last; t += BUCKET_SECONDS) {
      const bucket = byStart.get(t);
      const elapsed = t === last ? Math.max(1, now / 1000 - t) : BUCKET_SECONDS;
      series.push({
        t,
        requests: bucket?.requests ?? 0,
        errors: bucket?.errors ?? 0,
        completion_tokens: bucket?.completionTokens ?? 0,
        tokens_per_second: (bucket?.completionTokens ?? 0) / elapsed,
        ttft_ms_p50: bucket && bucket.ttftMs.length > 0 ? median(bucket.ttftMs) : null,
      });
    }
    return series;
  }
}

const bucketStart = (at: number) => Math.floor(at / 1000 / BUCKET_SECONDS) * BUCKET_SECONDS;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}
