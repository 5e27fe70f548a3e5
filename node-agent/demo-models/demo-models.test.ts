import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  getLlama,
  LlamaChat,
  LlamaCompletion,
  readGgufFileInfo,
  resolveChatWrapper,
  type ChatHistoryItem,
  type Llama,
  type LlamaModel,
} from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BENCH_SMALL_MODEL, DEMO_MODELS, ensureDemoModels, ensureModel, LONG_CHAT_MODEL } from "./demo-models.ts";
import { modelFileSize } from "./model-spec.ts";

let firstDir: string;
let secondDir: string;
let paths: string[];
let llama: Llama;

const pathOf = (file: string) => {
  const path = paths.find((candidate) => candidate.endsWith(file));
  if (path === undefined) throw new Error(`${file} was not generated`);
  return path;
};

beforeAll(async () => {
  firstDir = await mkdtemp(join(tmpdir(), "lmgate-demo-models-"));
  secondDir = await mkdtemp(join(tmpdir(), "lmgate-demo-models-"));
  paths = await ensureDemoModels(firstDir);
  await ensureDemoModels(secondDir);
  llama = await getLlama({ gpu: false, build: "never" });
});

afterAll(async () => {
  await llama?.dispose();
  await rm(firstDir, { recursive: true, force: true });
  await rm(secondDir, { recursive: true, force: true });
});

describe("generated files", () => {
  it("are laid out as <publisher>/<repo>/<file>.gguf", () => {
    expect(paths.map((path) => path.slice(firstDir.length + 1))).toEqual([
      "lmgate/tiny-chat-GGUF/tiny-chat-F32.gguf",
      "lmgate/tiny-chat-GGUF/tiny-chat-Q8_0.gguf",
      "lmgate/tiny-embed-GGUF/tiny-embed-F32.gguf",
    ]);
  });

  it("are byte-identical on every generation", async () => {
    for (const model of DEMO_MODELS) {
      const [first, second] = await Promise.all([readFile(join(firstDir, model.path)), readFile(join(secondDir, model.path))]);
      expect(first.length).toBe(modelFileSize(model.spec));
      expect(first.equals(second)).toBe(true);
    }
  });

  it("are kept, not rewritten, when already there, and leave no temporary files", async () => {
    const before = await Promise.all(paths.map(async (path) => (await stat(path)).mtimeMs));
    await ensureDemoModels(firstDir);
    const after = await Promise.all(paths.map(async (path) => (await stat(path)).mtimeMs));
    expect(after).toEqual(before);
    const files = await readdir(firstDir, { recursive: true });
    expect(files.filter((file) => file.endsWith(".partial"))).toEqual([]);
  });

  it("carry the metadata the agent's catalog reads", async () => {
    const chatF32 = await readGgufFileInfo(pathOf("tiny-chat-F32.gguf"));
    expect(chatF32.metadata.general.architecture).toBe("llama");
    expect(chatF32.metadata.general.name).toBe("tiny-chat");
    expect(chatF32.metadata.general.file_type).toBe(0);
    expect(chatF32.architectureMetadata).toMatchObject({ context_length: 2048, embedding_length: 64, block_count: 2 });
    expect(chatF32.metadata.tokenizer.ggml.model).toBe("llama");
    expect(chatF32.metadata.tokenizer.chat_template).toContain("<|im_start|>");

    const chatQ8 = await readGgufFileInfo(pathOf("tiny-chat-Q8_0.gguf"));
    expect(chatQ8.metadata.general.file_type).toBe(7);

    const embed = await readGgufFileInfo(pathOf("tiny-embed-F32.gguf"));
    expect(embed.metadata.general.architecture).toBe("bert");
    expect(embed.metadata.general.file_type).toBe(0);
    expect(embed.architectureMetadata).toMatchObject({ context_length: 512, embedding_length: 64, pooling_type: 1 });
    expect(embed.metadata.tokenizer.ggml.model).toBe("bert");
  });

  it("size the benchmark model without writing it", () => {
    expect(modelFileSize(BENCH_SMALL_MODEL.spec)).toBeGreaterThan(400 * 1024 * 1024);
  });
});

describe("node-llama-cpp", () => {
  const history: ChatHistoryItem[] = [
    { type: "system", text: "You are a helpful assistant." },
    { type: "user", text: "What is the weather in Paris?" },
    { type: "model", response: [] },
  ];
  const functions = {
    get_weather: {
      description: "Get the weather in a city",
      params: { type: "object", properties: { city: { type: "string" } } },
    },
  } as const;

  async function chatOnce(model: LlamaModel): Promise<string> {
    // threads: 1 — on a 2-core machine llama.cpp's default thread count is ~1000x slower.
    const context = await model.createContext({ threads: 1, contextSize: 512 });
    try {
      const chat = new LlamaChat({ contextSequence: context.getSequence() });
      const { response } = await chat.generateResponse(history, { maxTokens: 16, temperature: 0 });
      return response;
    } finally {
      await context.dispose();
    }
  }

  it("chats through the model's own Jinja template, deterministically", async () => {
    const model = await llama.loadModel({ modelPath: pathOf("tiny-chat-F32.gguf") });
    try {
      expect(model.getWarnings()).toEqual([]);
      expect(resolveChatWrapper(model).wrapperName).toBe("JinjaTemplate");
      const first = await chatOnce(model);
      expect(first.length).toBeGreaterThan(0);
      expect(await chatOnce(model)).toBe(first);
    } finally {
      await model.dispose();
    }
  });

  it("offers function calling with the template's <tool_call> syntax", async () => {
    const model = await llama.loadModel({ modelPath: pathOf("tiny-chat-F32.gguf") });
    const context = await model.createContext({ threads: 1, contextSize: 1024 });
    try {
      const chat = new LlamaChat({ contextSequence: context.getSequence() });
      expect(chat.chatWrapper.settings.functions.call.prefix.toString()).toContain("<tool_call>");
      const prompt = chat.chatWrapper.generateContextState({ chatHistory: history, availableFunctions: functions }).contextText.toString();
      expect(prompt).toContain("<tools>");
      expect(prompt).toContain('"name": "get_weather"');
      // A call and its result in the history come back in the template's own tags: the syntax the
      // wrapper expects the model to write is the one the template teaches it.
      const call = { type: "functionCall", name: "get_weather", params: { city: "Paris" }, result: { celsius: 21 } } as const;
      const called: ChatHistoryItem[] = [...history.slice(0, 2), { type: "model", response: [call, "It is 21 degrees."] }];
      const written = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';
      expect(chat.chatWrapper.generateFunctionCall("get_weather", { city: "Paris" }).toString()).toBe(written);
      const replayed = chat.chatWrapper.generateContextState({ chatHistory: called, availableFunctions: functions }).contextText.toString();
      expect(replayed).toContain(`<|im_start|>assistant\n${written}<|im_end|>`);
      expect(replayed).toContain('<tool_response>\n{"celsius": 21}\n</tool_response>');
    } finally {
      await context.dispose();
      await model.dispose();
    }
  });

  it("completes raw text without a template", async () => {
    const model = await llama.loadModel({ modelPath: pathOf("tiny-chat-F32.gguf") });
    const context = await model.createContext({ threads: 1, contextSize: 512 });
    try {
      const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
      const text = await completion.generateCompletion("The weather in the city", { maxTokens: 16, temperature: 0 });
      expect(text.length).toBeGreaterThan(0);
    } finally {
      await context.dispose();
      await model.dispose();
    }
  });

  it("loads and runs the Q8_0 model", async () => {
    const model = await llama.loadModel({ modelPath: pathOf("tiny-chat-Q8_0.gguf") });
    try {
      expect((await chatOnce(model)).length).toBeGreaterThan(0);
    } finally {
      await model.dispose();
    }
  });

  it("embeds text with the BERT model: one deterministic vector of the embedding length", async () => {
    const model = await llama.loadModel({ modelPath: pathOf("tiny-embed-F32.gguf") });
    expect(model.getWarnings()).toEqual([]);
    const context = await model.createEmbeddingContext({ threads: 1 });
    try {
      const hello = await context.getEmbeddingFor("Hello world");
      const again = await context.getEmbeddingFor("Hello world");
      const other = await context.getEmbeddingFor("Something else entirely");
      expect(hello.vector).toHaveLength(64);
      expect(hello.vector.every(Number.isFinite)).toBe(true);
      expect(again.vector).toEqual(hello.vector);
      expect(other.vector).not.toEqual(hello.vector);
    } finally {
      await context.dispose();
      await model.dispose();
    }
  });

  it("the long-context chat model loads with its 64k context, reads words a few letters a token, and ends its turns", async () => {
    // Its metadata (a 36k-token vocabulary) outgrows the writer's first buffer: a file written
    // before the writer reserved room first does not load at all.
    const model = await llama.loadModel({ modelPath: await ensureModel(firstDir, LONG_CHAT_MODEL) });
    try {
      expect(model.getWarnings()).toEqual([]);
      expect(model.trainContextSize).toBe(65536);
      expect(resolveChatWrapper(model).wrapperName).toBe("JinjaTemplate");
      const text = "Read the notes, then list the files in this folder.";
      expect(model.tokenize(text).length).toBeLessThan(text.length / 2.5);
      const context = await model.createContext({ threads: 1, contextSize: 1024, sequences: 4, flashAttention: true });
      try {
        const lengths = await Promise.all(
          [1, 2, 3, 4].map(async (seed) => {
            const chat = new LlamaChat({ contextSequence: context.getSequence() });
            const { metadata } = await chat.generateResponse(history, { maxTokens: 400, temperature: 1, seed });
            return metadata.stopReason;
          }),
        );
        // A random model with this vocabulary would otherwise almost never pick the end of turn.
        expect(lengths.filter((reason) => reason === "eogToken").length).toBeGreaterThanOrEqual(3);
      } finally {
        await context.dispose();
      }
    } finally {
      await model.dispose();
    }
  });
});
