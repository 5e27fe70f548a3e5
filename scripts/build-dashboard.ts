/**
 * `node scripts/build-dashboard.ts`: vendors the dashboard's one third-party file set (uPlot's
 * minified script and stylesheet, from node_modules) into its static assets folder, so the page
 * works offline and without a CDN. wrangler runs this as the `[build]` command before
 * `wrangler dev` and `wrangler deploy`; the copies are git-ignored. Unchanged files are left
 * alone, so a rerun costs next to nothing and does not wake wrangler's file watcher.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const VENDOR_DIR = join(ROOT, "gateway/dashboard/public/dashboard/vendor");

/** [file in uplot/dist, name in vendor/] */
const FILES: Array<[string, string]> = [
  ["uPlot.iife.min.js", "uPlot.iife.min.js"],
  ["uPlot.min.css", "uPlot.min.css"],
];

let uplotDist: string;
try {
  uplotDist = join(dirname(createRequire(import.meta.url).resolve("uplot/package.json")), "dist");
} catch {
  // Not fatal: the gateway must still start; the dashboard then says its charts are missing.
  console.warn("build-dashboard: the `uplot` package is missing (run `npm install`); the dashboard will have no charts.");
  process.exit(0);
}

await mkdir(VENDOR_DIR, { recursive: true });
let copied = 0;
for (const [from, to] of FILES) {
  const source = await readFile(join(uplotDist, from));
  const target = join(VENDOR_DIR, to);
  const current = await readFile(target).catch(() => null);
  if (current !== null && current.equals(source)) continue;
  await writeFile(target, source);
  copied++;
}
console.log(`build-dashboard: ${copied === 0 ? "vendor files up to date" : `copied ${copied} file(s)`} in ${relative(ROOT, VENDOR_DIR)}`);
