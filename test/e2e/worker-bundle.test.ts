import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { afterAll, expect, test } from "vitest";
import { WRANGLER } from "../../scripts/wrangler-dev.ts";
import { wranglerEnv } from "../harness/gateway-process.ts";

/**
 * The gateway's Worker as `npm run deploy` would upload it, built by `wrangler deploy --dry-run`
 * (no account needed). Every cold start parses this code, so its size is watched: the bound sits
 * a little above today's bundle (237 KiB minified; zod imported as a namespace, so its 64 locale
 * files stay out), so whatever makes it grow shows up here and is a decision, not an accident.
 */
const MAX_BUNDLE_BYTES = 300 * 1024;

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
let out: string | undefined;

afterAll(async () => {
  if (out !== undefined) await rm(out, { recursive: true, force: true });
});

test(`the Worker bundle that wrangler deploy would upload is under ${MAX_BUNDLE_BYTES / 1024} KiB`, { timeout: 120_000 }, async ({ annotate }) => {
  out = await mkdtemp(join(tmpdir(), "lmgate-worker-bundle-"));
  await promisify(execFile)(process.execPath, [WRANGLER, "deploy", "--dry-run", "--outdir", out], {
    cwd: ROOT,
    env: wranglerEnv(),
    timeout: 110_000,
    maxBuffer: 16 * 1024 * 1024,
  });

  // The modules wrangler would upload; source maps and its README stay behind.
  const modules = (await readdir(out)).filter((file) => /\.(m?js|wasm)$/.test(file));
  expect(modules).toContain("index.js");
  const code = Buffer.concat(await Promise.all(modules.map((file) => readFile(join(out as string, file)))));
  const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
  await annotate(`Worker bundle: ${kib(code.length)} (gzip ${kib(gzipSync(code).length)}) in ${modules.join(", ")}`);
  expect(code.length).toBeLessThan(MAX_BUNDLE_BYTES);
});
