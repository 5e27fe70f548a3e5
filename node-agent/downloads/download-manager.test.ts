import { createHash } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, expect, onTestFinished, test, vi } from "vitest";
import { ApiError } from "../../shared/protocol/api-error.ts";
import { DownloadJob } from "../../shared/protocol/download-schemas.ts";
import { startHubServer, type HubServer } from "../../test/harness/hub-server.ts";
import { testModelsDir } from "../../test/harness/test-models.ts";
import { DownloadManager } from "./download-manager.ts";
import { planDownload } from "./download-plan.ts";
import { transferFile } from "./file-transfer.ts";
import { HubClient } from "./hub-client.ts";

const REPO = "test-pub/tiny-chat-GGUF";
let hub: HubServer;
let q8: Uint8Array;
let f32: Uint8Array;
let dir: string;
let completed: string[][];

beforeAll(async () => {
  const models = await testModelsDir();
  q8 = await readFile(join(models, "lmgate/tiny-chat-GGUF/tiny-chat-Q8_0.gguf"));
  f32 = await readFile(join(models, "lmgate/tiny-chat-GGUF/tiny-chat-F32.gguf"));
  hub = await startHubServer();
  hub.addFile(REPO, "tiny-chat-F32.gguf", f32);
  hub.addFile(REPO, "tiny-chat-Q8_0.gguf", q8);
  hub.addFile(REPO, "mmproj-tiny-chat-Q8_0.gguf", new Uint8Array(10));
  hub.addFile("elsewhere/files", "tiny-direct-Q8_0.gguf", q8);
  hub.addFile("test-pub/quants-GGUF", "quants-F32.gguf", q8.subarray(0, 4000));
  hub.addFile("test-pub/quants-GGUF", "quants-Q8_0.gguf", q8.subarray(0, 3000));
  hub.addFile("test-pub/quants-GGUF", "quants-Q4_K_M.gguf", q8.subarray(0, 2000));
  hub.addFile("test-pub/quants-GGUF", "mmproj-quants-Q4_K_M.gguf", q8.subarray(0, 1000));
  hub.addFile("test-pub/split-GGUF", "split-Q4_K_M-00001-of-00002.gguf", q8.subarray(0, 1000));
  hub.addFile("test-pub/split-GGUF", "split-Q4_K_M-00002-of-00002.gguf", q8.subarray(1000, 3000));
});
afterAll(async () => {
  await hub?.close();
});
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "lmgate-downloads-"));
  completed = [];
  hub.requests.length = 0;
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function manager(options: { freeBytes?: number; reserveBytes?: number; token?: string; endpoint?: string; allowPrivate?: boolean } = {}) {
  return new DownloadManager({
    modelsDir: dir,
    hub: new HubClient({ endpoint: options.endpoint ?? hub.url, token: options.token, allowPrivate: options.allowPrivate }),
    freeBytes: async () => options.freeBytes ?? 100 * 1024 ** 3,
    reserveBytes: options.reserveBytes,
    retryDelayMs: 10,
    onComplete: async (paths) => {
      completed.push(paths);
      return "tiny-chat-q8_0";
    },
  });
}

const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

async function receivedAtLeast(downloads: DownloadManager, job: DownloadJob, bytes: number): Promise<void> {
  await vi.waitFor(() => expect(downloads.status(job.job_id as string).downloaded_bytes).toBeGreaterThanOrEqual(bytes), { timeout: 15_000, interval: 20 });
}

async function filesIn(folder: string): Promise<string[]> {
  // The journal of unfinished jobs lives in a dot folder, which the catalog skips.
  return (await readdir(folder, { recursive: true })).map(String).filter((path) => !path.startsWith(".lmgate-downloads")).sort();
}

test("a repo and quantization download into LM Studio's layout, checked, with the token sent to the hub only", async () => {
  // A hub whose CDN is another host (localhost, the hub being 127.0.0.1), as the real hub's is.
  const cdnElsewhere = await startHubServer({ cdnHost: "localhost" });
  onTestFinished(() => cdnElsewhere.close());
  cdnElsewhere.addFile(REPO, "tiny-chat-Q8_0.gguf", q8);
  const downloads = manager({ token: "hf_secretsecretsecretsecretsecretsecret", endpoint: cdnElsewhere.url, allowPrivate: true });
  const started = DownloadJob.parse(await downloads.start(REPO, "Q8_0"));
  expect(started).toMatchObject({ status: "downloading", total_size_bytes: q8.byteLength });
  expect(started.job_id).toMatch(/^job_[0-9a-f]{10}$/);
  const done = await downloads.settled(started.job_id as string);
  expect(done).toMatchObject({ status: "completed", downloaded_bytes: q8.byteLength, model_key: "tiny-chat-q8_0" });
  expect(done.completed_at).toBeDefined();
  const target = join(dir, "test-pub/tiny-chat-GGUF/tiny-chat-Q8_0.gguf");
  expect(sha(await readFile(target))).toBe(sha(q8));
  expect(await filesIn(dir)).toEqual(["test-pub", "test-pub/tiny-chat-GGUF", "test-pub/tiny-chat-GGUF/tiny-chat-Q8_0.gguf"]);
  expect(completed).toEqual([[target]]);
  const resolve = cdnElsewhere.requests.filter((request) => request.path.includes("/resolve/"));
  const cdn = cdnElsewhere.requests.filter((request) => request.path.startsWith("/cdn/"));
  expect(resolve.length).toBeGreaterThan(0);
  expect(resolve.every((request) => request.authorization === "Bearer hf_secretsecretsecretsecretsecretsecret")).toBe(true);
  expect(cdn.length).toBeGreaterThan(0);
  expect(cdn.map((request) => request.authorization)).toEqual(cdn.map(() => undefined));

  // Pulling it again finds it in place.
  expect(await downloads.start(REPO, "Q8_0")).toMatchObject({ status: "already_downloaded", total_size_bytes: q8.byteLength });
});

test("without a quantization the choice is llama.cpp's: Q4_K_M, then Q8_0, never a projector", async () => {
  const downloads = manager();
  // A repo with Q4_K_M (and a Q4_K_M projector) takes Q4_K_M...
  const first = await downloads.start("test-pub/quants-GGUF", undefined);
  expect(await downloads.settled(first.job_id as string)).toMatchObject({ status: "completed", total_size_bytes: 2000 });
  expect(await filesIn(join(dir, "test-pub/quants-GGUF"))).toEqual(["quants-Q4_K_M.gguf"]);
  // ...one without it takes Q8_0 over F32 and the projector.
  const job = await downloads.start(REPO, undefined);
  expect(await downloads.settled(job.job_id as string)).toMatchObject({ status: "completed", total_size_bytes: q8.byteLength });
  expect(await filesIn(join(dir, "test-pub/tiny-chat-GGUF"))).toEqual(["tiny-chat-Q8_0.gguf"]);
});

test("a gated repo is a 403 hub_access_denied that says to set HF_TOKEN, before any job starts", async () => {
  hub.addFile("test-pub/gated-GGUF", "gated-Q8_0.gguf", q8.subarray(0, 1000));
  hub.gate("test-pub/gated-GGUF");
  const downloads = manager();
  const refused = await downloads.start("test-pub/gated-GGUF", "Q8_0").catch((error: unknown) => error);
  expect(refused).toBeInstanceOf(ApiError);
  expect(refused).toMatchObject({ status: 403, code: "hub_access_denied", message: expect.stringContaining("HF_TOKEN") });
  expect(downloads.jobs()).toEqual([]);
});

test("a connection cut mid-file resumes with Range and the result is intact", async () => {
  hub.stall("tiny-chat-F32.gguf", 40_000);
  const downloads = manager();
  const job = await downloads.start(`${hub.url}/${REPO}/resolve/main/tiny-chat-F32.gguf`, undefined);
  await receivedAtLeast(downloads, job, 40_000);
  hub.cutStalled();
  expect(await downloads.settled(job.job_id as string)).toMatchObject({ status: "completed", downloaded_bytes: f32.byteLength });
  const ranges = hub.requests.filter((request) => request.path.startsWith("/cdn/")).map((request) => request.range);
  expect(ranges).toEqual([undefined, "bytes=40000-"]);
  expect(sha(await readFile(join(dir, "test-pub/tiny-chat-GGUF/tiny-chat-F32.gguf")))).toBe(sha(f32));
});

test("a partial file left by an earlier run (a restart) is resumed, and never taken for a model meanwhile", async () => {
  const folder = join(dir, "test-pub/tiny-chat-GGUF");
  await mkdir(folder, { recursive: true });
  const part = join(folder, "tiny-chat-Q8_0.gguf.part");
  await writeFile(part, q8.subarray(0, 5000));
  await writeFile(`${part}.json`, JSON.stringify({ url: `${hub.url}/${REPO}/resolve/main/tiny-chat-Q8_0.gguf`, size: q8.byteLength, sha256: sha(q8) }));
  const downloads = manager();
  const job = await downloads.start(REPO, "Q8_0");
  expect(await downloads.settled(job.job_id as string)).toMatchObject({ status: "completed" });
  expect(hub.requests.filter((request) => request.path.startsWith("/cdn/")).map((request) => request.range)).toEqual(["bytes=5000-"]);
  expect(sha(await readFile(join(folder, "tiny-chat-Q8_0.gguf")))).toBe(sha(q8));
  expect(await filesIn(folder)).toEqual(["tiny-chat-Q8_0.gguf"]);
});

test("a download that does not fit the free disk space is refused before it starts", async () => {
  const downloads = manager({ freeBytes: q8.byteLength, reserveBytes: 1000 });
  const refused = await downloads.start(REPO, "Q8_0").catch((error: unknown) => error);
  expect(refused).toBeInstanceOf(ApiError);
  expect(refused).toMatchObject({ status: 507, code: "insufficient_storage" });
  expect((refused as ApiError).message).toMatch(/Not enough disk space for test-pub\/tiny-chat-GGUF/);
  expect(hub.requests.some((request) => request.path.startsWith("/cdn/"))).toBe(false);
  expect(await filesIn(dir)).toEqual([]);
});

test("a file whose SHA-256 is not the hub's is rejected and removed", async () => {
  hub.lieAboutHash("tiny-chat-F32.gguf");
  try {
    const downloads = manager();
    const job = await downloads.start(REPO, "F32");
    const failed = await downloads.settled(job.job_id as string);
    expect(failed.status).toBe("failed");
    expect(failed.error).toMatch(/SHA-256/);
    expect(completed).toEqual([]);
    expect(await filesIn(join(dir, "test-pub/tiny-chat-GGUF"))).toEqual([]);
  } finally {
    hub.requests.length = 0;
  }
});

test("bytes that are not what the hub lists, too few or another SHA-256, are download_corrupt and their partial file is removed", async () => {
  hub.addFile("test-pub/short-GGUF", "short-Q8_0.gguf", q8.subarray(0, 3000));
  hub.lieAboutSize("short-Q8_0.gguf", 4000);
  hub.addFile("test-pub/forged-GGUF", "forged-Q8_0.gguf", q8.subarray(0, 3000));
  hub.lieAboutHash("forged-Q8_0.gguf");
  const client = new HubClient({ endpoint: hub.url });
  for (const [repo, message] of [
    ["test-pub/short-GGUF", "received 3000 bytes of 4000"],
    ["test-pub/forged-GGUF", "is not the one the hub gives"],
  ] as const) {
    const [file] = (await planDownload(client, repo, "Q8_0")).files;
    const partPath = join(dir, "model.gguf.part");
    const failure = await transferFile({ hub: client, file: file!, partPath, signal: new AbortController().signal, onProgress: () => {} }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ status: 502, code: "download_corrupt", message: expect.stringContaining(message) });
    // Wrong bytes are worth nothing: neither kept nor resumed later.
    expect(await readdir(dir)).toEqual([]);
  }
});

test("a download shorter than the hub says fails, and nothing of it is left as a model or to resume", async () => {
  hub.addFile("test-pub/truncated-GGUF", "truncated-Q8_0.gguf", q8.subarray(0, 3000));
  hub.lieAboutSize("truncated-Q8_0.gguf", 4000);
  const downloads = manager();
  const job = await downloads.start("test-pub/truncated-GGUF", "Q8_0");
  expect(job.total_size_bytes).toBe(4000);
  const failed = await downloads.settled(job.job_id as string);
  expect(failed).toMatchObject({ status: "failed", downloaded_bytes: 3000, error: expect.stringContaining("received 3000 bytes of 4000") });
  expect(completed).toEqual([]);
  expect(await filesIn(join(dir, "test-pub/truncated-GGUF"))).toEqual([]);
  expect(await manager().resumeInterrupted()).toEqual([]);
});

test("a cancelled download stops and leaves nothing behind", async () => {
  hub.stall("tiny-chat-Q8_0.gguf", 3000);
  const downloads = manager();
  const job = await downloads.start(REPO, "Q8_0");
  await receivedAtLeast(downloads, job, 3000);
  expect(await downloads.cancel(job.job_id as string)).toMatchObject({ status: "cancelled", downloaded_bytes: 3000 });
  expect(await filesIn(join(dir, "test-pub/tiny-chat-GGUF"))).toEqual([]);
  expect(completed).toEqual([]);
});

test("a split GGUF downloads as one job, its shards side by side", async () => {
  const downloads = manager();
  const job = await downloads.start("test-pub/split-GGUF", "Q4_K_M");
  expect(job.total_size_bytes).toBe(3000);
  expect(await downloads.settled(job.job_id as string)).toMatchObject({ status: "completed", downloaded_bytes: 3000 });
  expect(await filesIn(join(dir, "test-pub/split-GGUF"))).toEqual(["split-Q4_K_M-00001-of-00002.gguf", "split-Q4_K_M-00002-of-00002.gguf"]);
});

test("a direct URL downloads under its host; unknown repos, files and quantizations are 404s", async () => {
  const downloads = manager();
  const job = await downloads.start(`${hub.url}/files/tiny-direct-Q8_0.gguf`, undefined);
  expect(await downloads.settled(job.job_id as string)).toMatchObject({ status: "completed", total_size_bytes: q8.byteLength });
  expect(await filesIn(join(dir, "127.0.0.1"))).toEqual(["tiny-direct-Q8_0", "tiny-direct-Q8_0/tiny-direct-Q8_0.gguf"]);

  await expect(downloads.start("test-pub/missing-GGUF", undefined)).rejects.toMatchObject({ status: 404, code: "model_not_found" });
  await expect(downloads.start(REPO, "Q2_K")).rejects.toMatchObject({ status: 404, param: "quantization" });
  await expect(downloads.start("not a model", undefined)).rejects.toMatchObject({ status: 400 });
  // Names become paths on the node: none may leave the models folder.
  await expect(downloads.start("../etc", undefined)).rejects.toMatchObject({ status: 400, param: "model" });
  await expect(downloads.start(`${hub.url}/files/..%2F..%2Fevil.gguf`, undefined)).rejects.toMatchObject({ status: 400, param: "model" });
  expect(hub.requests.some((request) => request.path.includes("etc"))).toBe(false);
  expect(() => downloads.status("job_0000000000")).toThrow(expect.objectContaining({ status: 404, code: "job_not_found" }));
});

test("a direct URL, or a redirect, to a private address other than the configured hub's is refused before any request; the owner can allow it", async () => {
  // The hub is configured as 127.0.0.1:<port>; localhost:<port> is the same server, but not the hub.
  const elsewhere = hub.url.replace("127.0.0.1", "localhost");
  await expect(manager().start(`${elsewhere}/files/tiny-direct-Q8_0.gguf`, undefined)).rejects.toMatchObject({ status: 403, code: "download_source_not_allowed" });
  expect(hub.requests).toEqual([]);

  // The configured hub (here a server that redirects) may send the download on, but not to a private address.
  const redirector = createServer((_request, response) => response.writeHead(302, { location: `${elsewhere}/files/tiny-direct-Q8_0.gguf` }).end());
  await new Promise<void>((resolve) => redirector.listen(0, "127.0.0.1", resolve));
  try {
    const endpoint = `http://127.0.0.1:${(redirector.address() as AddressInfo).port}`;
    const refused = manager({ endpoint });
    await expect(refused.start(`${endpoint}/moved/tiny-direct-Q8_0.gguf`, undefined)).rejects.toMatchObject({ status: 403, code: "download_source_not_allowed" });
    expect(hub.requests).toEqual([]);

    const allowed = manager({ endpoint, allowPrivate: true });
    const job = await allowed.start(`${endpoint}/moved/tiny-direct-Q8_0.gguf`, undefined);
    expect(await allowed.settled(job.job_id as string)).toMatchObject({ status: "completed", total_size_bytes: q8.byteLength });
  } finally {
    redirector.close();
  }
});

test("an agent stopped mid-download carries on after its restart: the same job id, resumed with Range, then complete", async () => {
  hub.stall("tiny-chat-Q8_0.gguf", 30_000);
  const before = manager();
  const job = await before.start(REPO, "Q8_0");
  await receivedAtLeast(before, job, 30_000);
  await before.dispose();
  expect(await filesIn(join(dir, "test-pub/tiny-chat-GGUF"))).toEqual(["tiny-chat-Q8_0.gguf.part", "tiny-chat-Q8_0.gguf.part.json"]);

  const after = manager();
  const resumed = await after.resumeInterrupted();
  expect(resumed.map((entry) => entry.job_id)).toEqual([job.job_id]);
  const finished = await after.settled(job.job_id as string);
  expect(finished.error).toBeUndefined();
  expect(finished).toMatchObject({ status: "completed", downloaded_bytes: q8.byteLength, started_at: job.started_at });
  expect(hub.requests.filter((request) => request.path.startsWith("/cdn/")).map((request) => request.range)).toEqual([undefined, "bytes=30000-"]);
  expect(sha(await readFile(join(dir, "test-pub/tiny-chat-GGUF/tiny-chat-Q8_0.gguf")))).toBe(sha(q8));
  // Done: nothing is left to resume.
  expect(await manager().resumeInterrupted()).toEqual([]);
});
