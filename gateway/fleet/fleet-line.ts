import type { ErrorBody } from "../../shared/errors.ts";
import type { GenerationEvent } from "../../shared/schemas/generation.ts";

/**
 * How a generation travels from the Fleet object to the Worker: a byte stream of NDJSON lines
 * (Workers RPC only carries byte streams). Each line is one event, or the error that ends it.
 * The Fleet validated every event when it arrived from the node, so the Worker trusts the lines.
 */
export type FleetLine = { event: GenerationEvent } | { error: WireError };

/** An `ApiError` as it crosses a boundary: rebuilt with `ApiError.fromBody`. */
export interface WireError {
  status: number;
  body: ErrorBody;
  retry_after?: number;
}

/** The outcome of a one-shot call (embeddings, load, unload) over RPC, where thrown errors lose their shape. */
export type Outcome<T> = { ok: true; result: T } | { ok: false; error: WireError };

const encoder = new TextEncoder();

export const encodeLines = (lines: FleetLine[]): Uint8Array =>
  encoder.encode(lines.map((line) => `${JSON.stringify(line)}\n`).join(""));

/** Splits a byte stream into lines; a line may arrive split over chunks. */
export class LineDecoder {
  readonly #decoder = new TextDecoder();
  #rest = "";

  push(chunk: Uint8Array): FleetLine[] {
    const text = this.#rest + this.#decoder.decode(chunk, { stream: true });
    const parts = text.split("\n");
    this.#rest = parts.pop() ?? "";
    return parts.filter((part) => part !== "").map((part) => JSON.parse(part) as FleetLine);
  }
}
