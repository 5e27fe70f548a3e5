import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, statfs, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import * as z from "zod";
import { ApiError, toApiError } from "../../shared/protocol/api-error.ts";
import type { DownloadJob } from "../../shared/protocol/download-schemas.ts";
import { planDownload, type DownloadPlan } from "./download-plan.ts";
import { discard, IntegrityError, transferFile } from "./file-transfer.ts";
import type { HubClient } from "./hub-client.ts";
import { SpeedWindow } from "./speed-window.ts";

export interface DownloadManagerOptions {
  /** The models folder downloads go to, in LM Studio's `<publisher>/<repo>/<file>` layout. */
  modelsDir: string;
  hub: HubClient;
  /** Free bytes on the disk holding `dir`; tests inject a full disk. Defaults to `statfs`. */
  freeBytes?: (dir: string) => Promise<number>;
  /** Bytes a download must leave free, so the disk never fills up. Defaults to 512 MiB. */
  reserveBytes?: number;
  /** Tries per file after a dropped connection, and the first wait between them. */
  retries?: number;
  retryDelayMs?: number;
  /** The files are in place: rescan, and answer the model key they became. */
  onComplete(paths: string[]): Promise<string | undefined>;
  /** A job started, progressed (at most every `progressIntervalMs`) or ended. */
  onChange?(job: DownloadJob): void;
  progressIntervalMs?: number;
}

interface Job {
  view: DownloadJob;
  plan: DownloadPlan;
  abort: AbortController;
  done: Promise<void>;
  speed: SpeedWindow;
  lastReport: number;
  /** A progress report held back by the interval, sent when it is over (so a stall still shows the last bytes). */
  pendingReport: NodeJS.Timeout | undefined;
}

const DEFAULT_RESERVE_BYTES = 512 * 1024 * 1024;
/** Suffix of files still downloading; the catalog only takes `.gguf` files, so it never sees them. */
const PART_SUFFIX = ".part";
/** Below the models folder: one file per unfinished job, so a restarted agent resumes it (the catalog skips dot folders). */
const JOURNAL_DIR = ".lmgate-downloads";

/** What a restarted agent needs to carry on with a job: its id (clients poll it) and its files. */
const JournalEntry = z.object({
  job_id: z.string().regex(/^job_[0-9a-f]{10}$/),
  started_at: z.string(),
  plan: z.object({
    label: z.string(),
    files: z.array(
      z.object({
        url: z.string(),
        relativePath: z.string(),
        size: z.number().int().nonnegative().optional(),
        sha256: z.string().optional(),
        hub: z.boolean(),
      }),
    ),
  }),
});

/**
 * Downloads into the models folder: each job is one model (one file, or all shards of a split
 * GGUF), streamed to `.part` files that are moved into place only once every one is complete and
 * checked. Jobs are LM Studio's `job_…` ids with its statuses; an unfinished one is journaled, so
 * the next start of the agent carries on with it (`resumeInterrupted`).
 */
export class DownloadManager {
  readonly #options: DownloadManagerOptions;
  readonly #jobs = new Map<string, Job>();

  constructor(options: DownloadManagerOptions) {
    this.#options = options;
  }

  /**
   * Plans the download and checks free space before answering, so a missing repo, an unknown
   * quantization or a too-small disk is the request's error; then downloads in the background.
   */
  async start(model: string, quantization: string | undefined): Promise<DownloadJob> {
    const plan = await planDownload(this.#options.hub, model, quantization);
    const earlier = [...this.#jobs.values()].filter((job) => sameFiles(job.plan, plan));
    const running = earlier.find((job) => job.view.status === "downloading");
    if (running) return this.#snapshot(running);
    // This job takes over from a failed one: a restart must not resume both into the same files.
    await Promise.all(earlier.map((job) => rm(this.#journalPath(job.view.job_id as string), { force: true })));

    const total = plan.files.reduce((sum, file) => sum + (file.size ?? 0), 0);
    const targets = this.#targets(plan);
    const present = await Promise.all(targets.map((path) => stat(path).then((stats) => stats.size, () => undefined)));
    if (present.every((size, index) => size !== undefined && (plan.files[index]?.size ?? size) === size)) {
      const now = new Date().toISOString();
      const key = await this.#options.onComplete(targets);
      return { status: "already_downloaded", total_size_bytes: total, downloaded_bytes: total, started_at: now, completed_at: now, ...(key ? { model_key: key } : {}) };
    }
    await this.#checkFreeSpace(plan, targets);
    const entry = { job_id: `job_${randomBytes(5).toString("hex")}`, started_at: new Date().toISOString(), plan };
    await mkdir(join(this.#options.modelsDir, JOURNAL_DIR), { recursive: true });
    await writeFile(this.#journalPath(entry.job_id), JSON.stringify(entry));
    return this.#snapshot(this.#launch(entry));
  }

  /**
   * Carries on with the jobs an earlier run of the agent left unfinished, under the same ids, from
   * where their `.part` files stopped. Returns them; one that no longer fits the disk fails.
   */
  async resumeInterrupted(): Promise<DownloadJob[]> {
    const dir = join(this.#options.modelsDir, JOURNAL_DIR);
    const names = await readdir(dir).catch(() => [] as string[]);
    const resumed = [];
    for (const name of names.filter((candidate) => candidate.endsWith(".json"))) {
      // A journal that cannot be read (cut short by a crash, say) is dropped; its `.part` files wait for a pull.
      const parsed = JournalEntry.safeParse(await readFile(join(dir, name), "utf8").then((text) => JSON.parse(text) as unknown).catch(() => null));
      const taken = parsed.success && [...this.#jobs.values()].some((job) => job.view.job_id === parsed.data.job_id || sameFiles(job.plan, parsed.data.plan));
      if (!parsed.success || taken) {
        if (!parsed.success) await rm(join(dir, name), { force: true });
        continue;
      }
      const entry = parsed.data;
      const plan: DownloadPlan = { label: entry.plan.label, files: entry.plan.files.map((file) => ({ ...file, size: file.size, sha256: file.sha256 })) };
      const job = this.#launch({ ...entry, plan }, () => this.#checkFreeSpace(plan, this.#targets(plan)));
      resumed.push(this.#snapshot(job));
    }
    return resumed;
  }

  status(jobId: string): DownloadJob {
    return this.#snapshot(this.#job(jobId));
  }

  jobs(): DownloadJob[] {
    return [...this.#jobs.values()].map((job) => this.#snapshot(job));
  }

  /** Stops a running job and removes its partial files; a finished job is left as it is. */
  async cancel(jobId: string): Promise<DownloadJob> {
    const job = this.#job(jobId);
    if (job.view.status === "downloading") {
      job.abort.abort(new ApiError(499, "The download was cancelled.", { code: "download_cancelled" }));
      await job.done;
    }
    return this.#snapshot(job);
  }

  /** Resolves once the job has ended, whatever the outcome. */
  async settled(jobId: string): Promise<DownloadJob> {
    const job = this.#job(jobId);
    await job.done;
    return this.#snapshot(job);
  }

  /** Stops every download; their `.part` files and journal stay, so the next start carries on. */
  async dispose(): Promise<void> {
    for (const job of this.#jobs.values()) job.abort.abort(new ApiError(503, "The agent is shutting down.", { code: "shutting_down" }));
    await Promise.all([...this.#jobs.values()].map((job) => job.done));
  }

  /** Starts a job in the background; `before` runs first, inside it (a resumed job's disk check). */
  #launch(entry: { job_id: string; started_at: string; plan: DownloadPlan }, before?: () => Promise<void>): Job {
    const { plan } = entry;
    const job: Job = {
      view: {
        job_id: entry.job_id,
        status: "downloading",
        model: plan.files[0]?.relativePath,
        total_size_bytes: plan.files.reduce((sum, file) => sum + (file.size ?? 0), 0),
        downloaded_bytes: 0,
        started_at: entry.started_at,
      },
      plan,
      abort: new AbortController(),
      done: Promise.resolve(),
      speed: new SpeedWindow(),
      lastReport: 0,
      pendingReport: undefined,
    };
    this.#jobs.set(entry.job_id, job);
    job.done = this.#run(job, this.#targets(plan), before);
    this.#options.onChange?.(this.#snapshot(job));
    return job;
  }

  #targets(plan: DownloadPlan): string[] {
    return plan.files.map((file) => join(this.#options.modelsDir, file.relativePath));
  }

  #journalPath(jobId: string): string {
    return join(this.#options.modelsDir, JOURNAL_DIR, `${jobId}.json`);
  }

  async #run(job: Job, targets: string[], before?: () => Promise<void>): Promise<void> {
    const { plan } = job;
    const received = plan.files.map(() => 0);
    const parts = targets.map((path) => path + PART_SUFFIX);
    let keepJournal = false;
    try {
      await before?.();
      for (const [index, file] of plan.files.entries()) {
        await mkdir(dirname(targets[index] as string), { recursive: true });
        await transferFile({
          hub: this.#options.hub,
          file,
          partPath: parts[index] as string,
          signal: job.abort.signal,
          retries: this.#options.retries,
          retryDelayMs: this.#options.retryDelayMs,
          onProgress: (bytes) => {
            received[index] = bytes;
            this.#progress(job, received.reduce((sum, value) => sum + value, 0));
          },
        });
        if (file.size === undefined) job.view.total_size_bytes = received.reduce((sum, value) => sum + value, 0);
      }
      // The first shard last: llama.cpp opens a split model from it, so it must find the others in place.
      for (const index of [...targets.keys()].reverse()) {
        await rename(parts[index] as string, targets[index] as string);
        await discard(`${parts[index]}.json`);
      }
      // Completed only once the catalog has it, so a client that sees "completed" can use the model.
      const key = await this.#options.onComplete(targets).catch(() => undefined);
      if (key) job.view.model_key = key;
      job.view.status = "completed";
      job.view.completed_at = new Date().toISOString();
    } catch (error) {
      const reason = job.abort.signal.aborted ? (job.abort.signal.reason as ApiError).code : null;
      const cancelled = reason === "download_cancelled";
      if (cancelled) await Promise.all(parts.map((part) => discard(part)));
      job.view.status = cancelled ? "cancelled" : "failed";
      if (!cancelled) job.view.error = toApiError(error).message;
      // A shutdown or a network that kept failing: the next start carries on. Wrong bytes, a file
      // the source no longer has, a full disk or a cancel: nothing to carry on with.
      keepJournal = reason === "shutting_down" || (!(error instanceof IntegrityError) && toApiError(error).code === "download_failed");
    }
    clearTimeout(job.pendingReport);
    if (!keepJournal) await rm(this.#journalPath(job.view.job_id as string), { force: true });
    this.#options.onChange?.(this.#snapshot(job));
  }

  #progress(job: Job, bytes: number): void {
    job.view.downloaded_bytes = bytes;
    job.speed.record(bytes);
    if (job.pendingReport !== undefined) return;
    const wait = job.lastReport + (this.#options.progressIntervalMs ?? 500) - performance.now();
    const report = () => {
      job.pendingReport = undefined;
      job.lastReport = performance.now();
      if (job.view.status === "downloading") this.#options.onChange?.(this.#snapshot(job));
    };
    if (wait <= 0) report();
    else job.pendingReport = setTimeout(report, wait);
  }

  async #checkFreeSpace(plan: DownloadPlan, targets: string[]): Promise<void> {
    const { modelsDir } = this.#options;
    await mkdir(modelsDir, { recursive: true });
    const partial = await Promise.all(targets.map((path) => stat(path + PART_SUFFIX).then((stats) => stats.size, () => 0)));
    const needed = plan.files.reduce((sum, file, index) => sum + Math.max(0, (file.size ?? 0) - (partial[index] ?? 0)), 0);
    const free = await (this.#options.freeBytes ?? freeBytes)(modelsDir);
    const reserve = this.#options.reserveBytes ?? DEFAULT_RESERVE_BYTES;
    if (needed + reserve > free) {
      throw new ApiError(
        507,
        `Not enough disk space for ${plan.label}: it needs ${formatBytes(needed)} and the models folder's disk has ${formatBytes(free)} free ` +
          `(${formatBytes(reserve)} are always kept free).`,
        { code: "insufficient_storage" },
      );
    }
  }

  #job(jobId: string): Job {
    const job = this.#jobs.get(jobId);
    if (!job) throw new ApiError(404, `No download job "${jobId}".`, { param: "job_id", code: "job_not_found" });
    return job;
  }

  #snapshot(job: Job): DownloadJob {
    const view = { ...job.view };
    if (view.status === "downloading") {
      const speed = job.speed.bytesPerSecond();
      if (speed !== undefined) {
        view.bytes_per_second = Math.round(speed);
        if (speed > 0 && view.total_size_bytes > 0) {
          const seconds = Math.max(0, view.total_size_bytes - view.downloaded_bytes) / speed;
          view.estimated_completion = new Date(Date.now() + seconds * 1000).toISOString();
        }
      }
    }
    return view;
  }
}

function sameFiles(a: Pick<DownloadPlan, "files">, b: { files: { relativePath: string }[] }): boolean {
  return a.files.map((file) => file.relativePath).join("\n") === b.files.map((file) => file.relativePath).join("\n");
}

async function freeBytes(dir: string): Promise<number> {
  const stats = await statfs(dir);
  return stats.bavail * stats.bsize;
}

function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${bytes} bytes`;
}
