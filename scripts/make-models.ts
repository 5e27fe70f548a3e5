/**
 * `npm run models -- [--dir <dir>] [--small]`: writes the generated demo models and the long-context
 * chat model `npm start` serves (and, with --small,
 * the benchmark's ~0.5 B-parameter model) into an LM Studio-style models folder. Files already
 * there with the right size are kept.
 */
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { BENCH_SMALL_MODEL, DEFAULT_DEMO_MODELS_DIR, ensureDemoModels, ensureModel, LONG_CHAT_MODEL } from "../node-agent/demo-models/demo-models.ts";

const { values } = parseArgs({
  options: {
    dir: { type: "string" },
    small: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help) {
  console.log(`Usage: node scripts/make-models.ts [--dir <dir>] [--small]
  --dir <dir>  models folder (default: ${DEFAULT_DEMO_MODELS_DIR})
  --small      also write the benchmark model ${BENCH_SMALL_MODEL.path}`);
  process.exit(0);
}

const dir = values.dir === undefined ? DEFAULT_DEMO_MODELS_DIR : resolve(values.dir);
const onProgress = (message: string) => console.log(message);
const started = performance.now();
const paths = [...(await ensureDemoModels(dir, { onProgress })), await ensureModel(dir, LONG_CHAT_MODEL, { onProgress })];
if (values.small) paths.push(await ensureModel(dir, BENCH_SMALL_MODEL, { onProgress }));
for (const path of paths) {
  const { size } = await stat(path);
  console.log(`${path}  ${(size / 1024 / 1024).toFixed(1)} MiB`);
}
console.log(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
