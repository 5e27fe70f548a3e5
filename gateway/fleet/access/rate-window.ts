import { SlidingWindow } from "./sliding-window.ts";

const MINUTE_MS = 60_000;

/**
 * The requests each key was admitted in the last minute (its requests-per-minute limit). One row
 * per admitted request of a key that has a limit.
 */
export class RateWindow extends SlidingWindow {
  constructor(sql: SqlStorage) {
    super(sql, { windowMs: MINUTE_MS, table: "rate_window", subject: "key_id", bySubject: "rate_window_by_key", byTime: "rate_window_by_time" });
  }
}
