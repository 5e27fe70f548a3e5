import { copyFile, mkdir, mkdtemp, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { testModelsDir } from "../../test/harness/test-models.ts";
import type { ChatRequest } from "../../shared/protocol/request-schemas.ts";
import { DEMO_MODELS } from "../demo-models/demo-models.ts";
import { writeSplitModel } from "../demo-models/model-spec.ts";
import { LocalBackend } from "../serving/local-backend.ts";
import { ModelCatalog } from "./model-catalog.ts";
import { assignModelIds } from "./model-ids.ts";

let models: string;
let scratch: string;

beforeAll(async () => {
  models = await testModelsDir();
  scratch = await mkdtemp(join(tmpdir(), "lmgate-catalog-"));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function place(relative: string, from: string) {
  const target = join(scratch, relative);
  await mkdir(dirname(target), { recursive: true });
  await copyFile(join(models, from), target);
}

describe("ModelCatalog", () => {
  test("reads arch, quantization, trained context, size, type and tool use from the GGUF headers", async () => {
    const catalog = new ModelCatalog({ dirs: [models] });
    expect(await catalog.refresh()).toBe(true);
    const byId = Object.fromEntries(catalog.entries.map((entry) => [entry.id, entry]));
    expect(Object.keys(byId).sort()).toEqual(["tiny-chat-f32", "tiny-chat-q8_0", "tiny-embed-f32"]);
    expect(byId["tiny-chat-f32"]).toMatchObject({
      publisher: "lmgate",
      arch: "llama",
      quantization: "F32",
      contextLength: 2048,
      type: "llm",
      capabilities: ["tool_use"],
    });
    expect(byId["tiny-chat-q8_0"]).toMatchObject({ quantization: "Q8_0", type: "llm" });
    expect(byId["tiny-chat-q8_0"]!.sizeBytes).toBeLessThan(byId["tiny-chat-f32"]!.sizeBytes);
    expect(byId["tiny-embed-f32"]).toMatchObject({ arch: "bert", type: "embeddings", contextLength: 512, capabilities: [] });
    for (const entry of catalog.entries) expect(entry.id).not.toContain(models);
    expect(await catalog.refresh()).toBe(false);
  });

  test("colliding names get their publisher, files outside the layout are 'local', and bad files are skipped with a warning", async () => {
    await place("alice/chat-GGUF/tiny-chat-F32.gguf", "lmgate/tiny-chat-GGUF/tiny-chat-F32.gguf");
    await place("bob/chat-GGUF/tiny-chat-F32.gguf", "lmgate/tiny-chat-GGUF/tiny-chat-F32.gguf");
    await place("loose.gguf", "lmgate/tiny-chat-GGUF/tiny-chat-Q8_0.gguf");
    await place("carol/big-GGUF/big-00001-of-00002.gguf", "lmgate/tiny-chat-GGUF/tiny-chat-Q8_0.gguf");
    await writeFile(join(scratch, "broken.gguf"), "not a gguf file at all");
    const warnings: string[] = [];
    const catalog = new ModelCatalog({ dirs: [scratch, join(scratch, "missing")], onWarning: (message) => warnings.push(message) });
    await catalog.refresh();
    expect(catalog.entries.map((entry) => [entry.id, entry.publisher])).toEqual([
      ["alice/tiny-chat-f32", "alice"],
      ["bob/tiny-chat-f32", "bob"],
      ["loose", "local"],
    ]);
    expect(warnings.some((warning) => warning.includes("broken.gguf"))).toBe(true);
    expect(warnings.some((warning) => warning.includes("big-00001-of-00002.gguf") && warning.includes("split"))).toBe(true);
    expect(warnings.some((warning) => warning.includes("missing"))).toBe(true);

    await rm(join(scratch, "bob"), { recursive: true });
    expect(await catalog.refresh()).toBe(true);
    expect(catalog.find("tiny-chat-f32")?.publisher).toBe("alice");
  });
});

test("ids fall back to the whole relative path, and a file at the same place in a second folder loses", () => {
  const file = (path: string) => ({ path, segments: path.split("/").slice(2) });
  const { ids, shadowed } = assignModelIds([
    file("/one/pub/a/m.gguf"),
    file("/one/pub/b/M.gguf"),
    file("/two/pub/a/m.gguf"),
    file("/two/other.gguf"),
  ]);
  expect(ids.get("/one/pub/a/m.gguf")?.id).toBe("pub/a/m");
  expect(ids.get("/one/pub/b/M.gguf")?.id).toBe("pub/b/m");
  expect(ids.get("/two/other.gguf")).toEqual({ id: "other", publisher: "local" });
  expect(shadowed).toEqual(["/two/pub/a/m.gguf"]);
});

describe("split models", () => {
  test("a split GGUF is one model named for its first part, listed only once every part is there, and it answers a chat", async () => {
    const dir = join(scratch, "split", "pub", "tiny-split-GGUF");
    await mkdir(dir, { recursive: true });
    const chat = DEMO_MODELS.find((model) => model.path.endsWith("tiny-chat-Q8_0.gguf"));
    const [first, second] = await writeSplitModel(dir, "tiny-split-Q8_0", chat!.spec, 2);
    const warnings: string[] = [];
    const catalog = new ModelCatalog({ dirs: [join(scratch, "split")], onWarning: (message) => warnings.push(message) });

    // Until its last part arrives (a download moves the first part in last; a copy may not), it is no model.
    await rename(second!, `${second}.later`);
    await catalog.refresh();
    expect(catalog.entries).toEqual([]);
    expect(warnings).toEqual([expect.stringContaining("lacks tiny-split-Q8_0-00002-of-00002.gguf")]);
    await rename(`${second}.later`, second!);
    expect(await catalog.refresh()).toBe(true);

    const sizes = (await Promise.all([first!, second!].map((path) => stat(path)))).map((stats) => stats.size);
    expect(catalog.entries.map((entry) => ({ id: entry.id, quantization: entry.quantization, size: entry.sizeBytes, path: entry.path }))).toEqual([
      { id: "tiny-split-q8_0", quantization: "Q8_0", size: sizes[0]! + sizes[1]!, path: first },
    ]);
    expect(warnings).toHaveLength(1);

    const backend = await LocalBackend.create({ modelDirs: [join(scratch, "split")], threads: 1, gpu: false, slots: 1 });
    try {
      const events = [];
      for await (const event of backend.chat({ model: "tiny-split-q8_0", messages: [{ role: "user", content: "hi" }], max_tokens: 4 } as ChatRequest, new AbortController().signal)) events.push(event);
      expect(events.at(-1)).toMatchObject({ type: "done" });
    } finally {
      await backend.dispose();
    }
  });
});
