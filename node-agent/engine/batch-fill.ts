import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { LlamaContext, LlamaContextSequence } from "node-llama-cpp";

/**
 * A fix to node-llama-cpp carried here until upstream has it (docs/upstream/node-llama-cpp-batch-fill.md).
 *
 * `LlamaContext.dispatchPendingBatch` decodes a batch, waits for every sequence's sampled token,
 * then at once decodes whatever is queued. The sequence sampled last has not queued its next
 * token by then (its way back through `LlamaContextSequence.evaluate` and `LlamaCompletion` takes
 * more promise steps than the loop's), so it misses the batch and from then on every decode
 * carries one sequence fewer than are generating: 3 of 4 in 83 of ~85 decodes, measured. That
 * loop does not go through `_scheduleDecode`, so no batching option reaches it.
 *
 * 1. The loop awaits a queued decode's `afterBatchAction` after the batch's tokens are handed
 *    back and before it looks at the queue again. Every decode gets such an action: wait until
 *    that sequence has queued its next decode, for at most a few event-loop turns (a sequence
 *    whose generation just ended never comes back). The loop awaits the actions one after
 *    another, so after the first one every sequence of the batch has had its turn.
 * 2. The loop holds the context lock until the queue is empty, which with full batches is never
 *    while streams run; erasing a sequence's tokens (every new request on a used slot, to keep
 *    only the prefix it shares) takes the same lock, so a newcomer would wait for every running
 *    stream to end. So while a sequence waits to erase, the other sequences' next decodes are
 *    held back: the loop finishes what is queued, lets go of the lock, the erase runs, and the
 *    held decodes are queued again, together.
 *
 * It reaches into node-llama-cpp's internals, so it applies only to the exact version and source
 * it was written against; `batchFillMismatch()` says why not otherwise, and a test fails then.
 */

/** node-llama-cpp's version the fix was written against. */
export const PATCHED_VERSION = "3.21.1";

/**
 * sha256 of the methods' source in that version: the loop that awaits `afterBatchAction` and
 * holds the lock, the queueing that passes the action on, and the erase that takes the lock.
 */
const EXPECTED_SOURCE = {
  "LlamaContext.dispatchPendingBatch": "c95610359f90e1b04d2e866c807c7ad6f21cbc1e6b6ac0f690090069f6923301",
  "LlamaContext._decodeTokens": "a4e04aad727ba3ab057cb26ef10810edda65752078b09924d7ab123774aa0d8f",
  "LlamaContextSequence._eraseContextTokenRanges": "cef6150cb36bd2af1156d9fe3ea486aa9cb6f7a6c1a74fd156d5a410a3a7cebe",
} as const;

/**
 * Event-loop turns to wait for a sequence to queue its next token. It comes back in the first
 * turn (its way back is promise steps and synchronous work); more turns only cost a finished
 * sequence's wait, a few microseconds each, against a decode's milliseconds.
 */
const MAX_WAIT_TURNS = 3;

interface QueuedDecodeOptions {
  sequenceId: number;
  afterBatchAction?: (sequenceStateLength: number) => unknown;
}

/** The internals the fix uses, as node-llama-cpp 3.21.1 has them. */
interface ContextInternals {
  _decodeTokens(options: QueuedDecodeOptions, logitDataMapper: unknown): Promise<unknown>;
  _queuedDecodes: unknown[];
  _queuedDecodeSequenceIds: Set<number>;
}

interface SequenceInternals {
  _sequenceId: number;
  _eraseContextTokenRanges(...args: unknown[]): Promise<void>;
}

function installedVersion(): string {
  const require = createRequire(import.meta.url);
  // The package's exports hide package.json; its entry point sits in dist/.
  const manifest = join(dirname(require.resolve("node-llama-cpp")), "..", "package.json");
  return (JSON.parse(readFileSync(manifest, "utf8")) as { version: string }).version;
}

function sourceHash(name: keyof typeof EXPECTED_SOURCE): string {
  const [className, method] = name.split(".") as [string, string];
  const prototype = (className === "LlamaContext" ? LlamaContext : LlamaContextSequence).prototype as unknown as Record<string, unknown>;
  const source = typeof prototype[method] === "function" ? prototype[method].toString() : "";
  return createHash("sha256").update(source).digest("hex");
}

/** Why the fix does not apply to the installed node-llama-cpp, or null when it does. */
export function batchFillMismatch(): string | null {
  const version = installedVersion();
  if (version !== PATCHED_VERSION) return `node-llama-cpp is ${version}; the batch fill was written for ${PATCHED_VERSION}`;
  for (const [method, expected] of Object.entries(EXPECTED_SOURCE) as [keyof typeof EXPECTED_SOURCE, string][]) {
    if (sourceHash(method) !== expected) return `${method} is not the source the batch fill was written for`;
  }
  return null;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Makes `context`'s decode loop wait for the sequences of the batch it just decoded, and let go of
 * the context lock when a sequence waits for it to erase tokens. Applies to the sequences the
 * context creates from now on. Returns false (and leaves the context as it is) when the installed
 * node-llama-cpp is not the one the fix was written for.
 */
export function applyBatchFill(context: LlamaContext): boolean {
  if (batchFillMismatch() !== null) return false;
  const internals = context as unknown as ContextInternals;
  /** Sequences waiting for the lock (or holding it) to erase tokens; their own decodes are never held. */
  const erasing = new Set<number>();
  /** Decodes held back while a sequence waits to erase, queued again when the loop has let go. */
  let held: (() => void)[] | null = null;
  const release = () => {
    const resume = held ?? [];
    held = null;
    for (const queue of resume) queue();
  };

  const decodeTokens = internals._decodeTokens;
  internals._decodeTokens = async function (options, logitDataMapper) {
    const { sequenceId, afterBatchAction } = options;
    if (held !== null && !erasing.has(sequenceId)) await new Promise<void>((resolve) => held?.push(resolve) ?? resolve());
    return decodeTokens.call(
      this,
      {
        ...options,
        async afterBatchAction(sequenceStateLength: number) {
          await afterBatchAction?.(sequenceStateLength);
          if (held !== null) {
            // Nothing new is queued while held: once the queue is empty the loop ends and the lock
            // goes to the waiting erase (first in line), before the held decodes' dispatch.
            if (internals._queuedDecodes.length === 0) setImmediate(release);
            return;
          }
          for (let turn = 0; turn < MAX_WAIT_TURNS && !internals._queuedDecodeSequenceIds.has(sequenceId); turn++) await nextTurn();
        },
      },
      logitDataMapper,
    );
  };

  const getSequence = context.getSequence.bind(context);
  context.getSequence = (...args) => {
    const sequence = getSequence(...args);
    const sequenceInternals = sequence as unknown as SequenceInternals;
    const { _sequenceId: id, _eraseContextTokenRanges: erase } = sequenceInternals;
    sequenceInternals._eraseContextTokenRanges = async function (...eraseArgs) {
      erasing.add(id);
      held ??= [];
      try {
        return await erase.apply(this, eraseArgs);
      } finally {
        erasing.delete(id);
        if (erasing.size === 0) release();
      }
    };
    return sequence;
  };
  return true;
}
