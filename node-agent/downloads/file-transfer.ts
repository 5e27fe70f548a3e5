import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { ApiError } from "../../shared/protocol/api-error.ts";
import type { PlannedFile } from "./download-plan.ts";
import type { HubClient } from "./hub-client.ts";

export interface TransferOptions {
  hub: HubClient;
  file: PlannedFile;
  /** The temporary file; the caller moves it into place once every file of the model is done. */
  partPath: string;
  signal: AbortSignal;
  /** Bytes of this file now on disk, after every write. */
  onProgress(bytes: number): void;
  /** Tries after a dropped connection, each resuming with `Range`; reset whenever bytes arrive. Defaults to 5. */
  retries?: number;
  /** First wait before a retry, doubled each time. Defaults to 1 s. */
  retryDelayMs?: number;
}

/** The bytes are wrong (size or SHA-256): retrying cannot help and the partial file is worthless. */
export class IntegrityError extends ApiError {
  constructor(message: string) {
    super(502, message, { code: "download_corrupt" });
  }
}

/**
 * What a `.part` file was started from, kept beside it: a later download of the same file (after a
 * restart, or a failure) resumes from it only if it is the same file.
 */
interface PartRecord {
  url: string;
  size: number | null;
  sha256: string | null;
}

/**
 * Streams one file into `partPath`, resuming with `Range` after a dropped connection (and across
 * restarts, from a `.part` file of the same source), then checks its size and, where the hub gives
 * one, its SHA-256. Resolves once the `.part` file is complete and checked.
 */
export async function transferFile(options: TransferOptions): Promise<void> {
  const { hub, file, partPath, signal, onProgress } = options;
  const retries = options.retries ?? 5;
  const retryDelayMs = options.retryDelayMs ?? 1_000;
  const recordPath = `${partPath}.json`;
  const record: PartRecord = { url: file.url, size: file.size ?? null, sha256: file.sha256 ?? null };

  let offset = await resumableBytes(partPath, recordPath, record);
  if (offset === 0) {
    await writeFile(partPath, "");
    await writeFile(recordPath, JSON.stringify(record));
  }
  let hash = await hashOf(partPath);
  onProgress(offset);
  let expectedSize = file.size;
  let expectedSha = file.sha256;

  for (let failures = 0; ; ) {
    try {
      const opened = await hub.open(file.url, { offset, hub: file.hub, signal });
      if (opened.start !== offset) {
        // The server ignored the range: start over rather than append the beginning again.
        offset = 0;
        hash = createHash("sha256");
        await writeFile(partPath, "");
        onProgress(0);
      }
      if (expectedSize !== undefined && opened.size !== undefined && opened.size !== expectedSize) {
        await opened.body.cancel();
        throw new IntegrityError(`${file.relativePath}: the server sends ${opened.size} bytes, but the listing said ${expectedSize}.`);
      }
      expectedSize ??= opened.size;
      expectedSha ??= opened.sha256;
      const handle = await open(partPath, "a");
      try {
        for await (const chunk of opened.body) {
          if (expectedSize !== undefined && offset + chunk.byteLength > expectedSize) {
            throw new IntegrityError(`${file.relativePath}: the server sent more than the ${expectedSize} bytes it announced.`);
          }
          await handle.write(chunk);
          hash.update(chunk);
          offset += chunk.byteLength;
          failures = 0;
          onProgress(offset);
        }
      } finally {
        await handle.close();
      }
      break;
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (error instanceof IntegrityError) {
        await discard(partPath, recordPath);
        throw error;
      }
      if (error instanceof ApiError && error.status < 500) throw error;
      failures += 1;
      if (failures > retries) {
        throw new ApiError(502, `${file.relativePath}: the download kept failing (${(error as Error).message}); pull again to resume it.`, {
          code: "download_failed",
          cause: error,
        });
      }
      await sleep(retryDelayMs * 2 ** (failures - 1), undefined, { signal }).catch(() => {
        throw signal.reason;
      });
    }
  }

  if (expectedSize !== undefined && offset !== expectedSize) {
    await discard(partPath, recordPath);
    throw new IntegrityError(`${file.relativePath}: received ${offset} bytes of ${expectedSize}.`);
  }
  const digest = hash.digest("hex");
  if (expectedSha !== undefined && digest !== expectedSha) {
    await discard(partPath, recordPath);
    throw new IntegrityError(`${file.relativePath}: the SHA-256 of the download (${digest}) is not the one the hub gives (${expectedSha}).`);
  }
}

/** Removes a `.part` file and its record. */
export async function discard(partPath: string, recordPath = `${partPath}.json`): Promise<void> {
  await Promise.all([rm(partPath, { force: true }), rm(recordPath, { force: true })]);
}

/** Bytes already in the `.part` file if it was started from the same source, else 0. */
async function resumableBytes(partPath: string, recordPath: string, record: PartRecord): Promise<number> {
  const [size, saved] = await Promise.all([
    stat(partPath).then((stats) => stats.size, () => undefined),
    readFile(recordPath, "utf8").then((text) => JSON.parse(text) as PartRecord, () => undefined),
  ]);
  if (size === undefined || saved === undefined) return 0;
  const same = saved.url === record.url && saved.size === record.size && saved.sha256 === record.sha256;
  return same && (record.size === null || size <= record.size) ? size : 0;
}

async function hashOf(path: string): Promise<Hash> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash;
}
