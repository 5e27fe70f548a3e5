import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ApiError } from "../../shared/protocol/api-error.ts";
import { GenerationResult, type GenerationEvent } from "../../shared/protocol/generation-events.ts";
import { ChatRequest, CompletionRequest } from "../../shared/protocol/request-schemas.ts";
import { testModelsDir } from "../../test/harness/test-models.ts";
import { ensureModel } from "../demo-models/demo-models.ts";
import { TINY_SPECULATIVE } from "../demo-models/speculative-pairs.ts";
import { LocalBackend } from "./local-backend.ts";
import { LocalModelAdmin } from "./model-admin.ts";

/** The pair's ids as the catalog gives them (file names, lower-cased). */
const TARGET = "spec-tiny-target-f32";
const DRAFT = "spec-tiny-draft-f32";
const STRANGER = "spec-tiny-stranger-f32";
const OTHER_VOCABULARY = "spec-tiny-other-vocabulary-f32";
const EMBED = "tiny-embed-f32";

let dir: string;
let backend: LocalBackend;
const never = new AbortController().signal;

beforeAll(async () => {
  dir = await testModelsDir();
  for (const model of Object.values(TINY_SPECULATIVE)) await ensureModel(dir, model);
  backend = await LocalBackend.create({
    modelDirs: [dir],
    gpu: false,
    slots: 2,
    speculative: { draftModels: { [STRANGER]: DRAFT }, promptLookup: [DRAFT] },
  });
});
afterAll(async () => {
  await backend?.dispose();
});

async function collect(events: AsyncIterable<GenerationEvent>) {
  let text = "";
  let result: GenerationResult | undefined;
  for await (const event of events) {
    if (event.type === "delta") text += event.text;
    if (event.type === "done") result = GenerationResult.parse(event.result);
  }
  if (!result) throw new Error("the generation ended without a done event");
  return { text, result };
}

const chat = (extra: Record<string, unknown> = {}) =>
  collect(
    backend.chat(
      ChatRequest.parse({ model: TARGET, messages: [{ role: "user", content: "Tell me about the weather in the city" }], temperature: 0, max_tokens: 48, repeat_penalty: 1, ...extra }),
      never,
    ),
  );
const completion = (extra: Record<string, unknown> = {}, on = backend) =>
  collect(on.completion(CompletionRequest.parse({ model: TARGET, prompt: "Once upon a time", temperature: 0, max_tokens: 48, repeat_penalty: 1, ...extra }), never));
/** Token "a" of the tiny vocabulary: a +100 logit bias makes the model write it to max_tokens, so an answer copies a prompt of it. */
const ONLY_A = { logit_bias: { "395": 100 } };
/**
 * Tokens 395–414 (letters a to j, alone and word-initial): the model picks among them by its own
 * logits, runs to max_tokens, and a draft of another seed mostly picks another.
 */
const LETTERS = { logit_bias: Object.fromEntries(Array.from({ length: 20 }, (_, index) => [String(395 + index), 100])) };

async function refusal(run: Promise<unknown>): Promise<ApiError> {
  const error = await run.then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error).toBeInstanceOf(ApiError);
  return error as ApiError;
}

function expectCountsAddUp(stats: GenerationResult["stats"]) {
  expect(stats.total_draft_tokens_count).toBe(
    (stats.accepted_draft_tokens_count ?? NaN) + (stats.rejected_draft_tokens_count ?? NaN) + (stats.ignored_draft_tokens_count ?? NaN),
  );
}

describe("draft_model", () => {
  test("a draft that agrees: the same greedy answer, every drafted token accepted, counts that add up", async () => {
    const plain = await chat();
    const drafted = await chat({ draft_model: DRAFT });
    expect(drafted.text).toBe(plain.text);
    expect(drafted.result.usage.completion_tokens).toBe(plain.result.usage.completion_tokens);
    expect(plain.result.stats.draft_model).toBeUndefined();
    const stats = drafted.result.stats;
    expect(stats.draft_model).toBe(DRAFT);
    expect(stats.accepted_draft_tokens_count).toBeGreaterThan(plain.result.usage.completion_tokens / 2);
    expect(stats.rejected_draft_tokens_count).toBe(0);
    expectCountsAddUp(stats);
    // Again, on slots (the model's and the draft's) that hold the first answer after the prompt.
    const again = await chat({ draft_model: DRAFT });
    expect(again.text).toBe(plain.text);
    expect(again.result.stats.accepted_draft_tokens_count).toBeGreaterThan(plain.result.usage.completion_tokens / 2);
    expect(again.result.stats.rejected_draft_tokens_count).toBe(0);
  });

  test("a draft that disagrees changes nothing in the answer, and its rejections are counted", async () => {
    const plain = await completion();
    const drafted = await completion({ draft_model: STRANGER });
    expect(drafted.text).toBe(plain.text);
    const stats = drafted.result.stats;
    expect(stats.draft_model).toBe(STRANGER);
    expect(stats.rejected_draft_tokens_count).toBeGreaterThan(0);
    expectCountsAddUp(stats);
  });

  test("the draft drafts with the request's logit_bias, as the model samples with it", async () => {
    const { result } = await completion({ draft_model: DRAFT, ...LETTERS });
    expect(result.usage.completion_tokens).toBe(48);
    // Drafting without the bias, it would offer tokens the model may not choose, and pause.
    expect(result.stats.accepted_draft_tokens_count).toBeGreaterThan(24);
    expect(result.stats.accepted_draft_tokens_count).toBeGreaterThan(result.stats.rejected_draft_tokens_count ?? Infinity);
  });

  test("a draft sure of every token: checks of the draft's full 12 tokens, one after another, all accepted", async () => {
    const { result } = await completion({ draft_model: DRAFT, max_tokens: 96, ...ONLY_A });
    expect(result.stats.rejected_draft_tokens_count).toBe(0);
    expect(result.stats.accepted_draft_tokens_count).toBeGreaterThan(80);
  });

  test("a draft of another vocabulary is a 400 naming both models", async () => {
    const error = await refusal(chat({ draft_model: OTHER_VOCABULARY }));
    expect(error.status).toBe(400);
    expect(error.param).toBe("draft_model");
    expect(error.message).toContain(OTHER_VOCABULARY);
    expect(error.message).toContain(TARGET);
  });

  test("an unknown draft, an embedding model, or the model itself is refused", async () => {
    expect((await refusal(chat({ draft_model: "no-such-draft" }))).status).toBe(404);
    const embedding = await refusal(chat({ draft_model: EMBED }));
    expect([embedding.status, embedding.param]).toEqual([400, "draft_model"]);
    expect((await refusal(chat({ draft_model: TARGET }))).status).toBe(400);
  });
});

describe("a draft that gains nothing costs little", () => {
  test("a disagreeing draft stops drafting for a while after its first rejections, instead of drafting at every token", async () => {
    const { result } = await completion({ draft_model: STRANGER, max_tokens: 200, ...LETTERS });
    expect(result.usage.completion_tokens).toBe(200);
    const stats = result.stats;
    expect(stats.accepted_draft_tokens_count).toBeLessThan((stats.total_draft_tokens_count ?? 0) / 2);
    // Drafting at every token would check about 12 drafted tokens per generated one.
    expect(stats.total_draft_tokens_count).toBeGreaterThan(0);
    expect(stats.total_draft_tokens_count).toBeLessThan(100);
    expectCountsAddUp(stats);
  });
});

describe("prompt_lookup", () => {
  test("an answer that repeats the prompt is drafted from it: the same greedy answer, drafted tokens accepted", async () => {
    const repeated = (await completion({ max_tokens: 24, ...ONLY_A })).text;
    const plain = await completion({ prompt: repeated, ...ONLY_A });
    const lookedUp = await completion({ prompt: repeated, prompt_lookup: true, ...ONLY_A });
    expect(lookedUp.text).toBe(plain.text);
    expect(plain.result.stats.total_draft_tokens_count).toBeUndefined();
    const stats = lookedUp.result.stats;
    expect(stats.draft_model).toBeUndefined();
    expect(stats.accepted_draft_tokens_count).toBeGreaterThan(lookedUp.result.usage.completion_tokens / 2);
    expectCountsAddUp(stats);
  });

  test("draft_model and prompt_lookup together are a 400", async () => {
    const error = await refusal(completion({ draft_model: DRAFT, prompt_lookup: true }));
    expect([error.status, error.param]).toEqual([400, "prompt_lookup"]);
  });
});

describe("a model's default", () => {
  test("a model's default draft model drafts when the request names none; the request's own wins", async () => {
    expect((await completion({ model: STRANGER })).result.stats.draft_model).toBe(DRAFT);
    expect((await completion({ model: STRANGER, draft_model: TARGET })).result.stats.draft_model).toBe(TARGET);
    const lookup = (await completion({ model: STRANGER, prompt_lookup: true })).result.stats;
    expect([lookup.draft_model, lookup.total_draft_tokens_count]).toEqual([undefined, expect.any(Number)]);
  });

  test("a model's default prompt lookup, which prompt_lookup: false turns off", async () => {
    expect((await completion({ model: DRAFT })).result.stats.total_draft_tokens_count).toEqual(expect.any(Number));
    expect((await completion({ model: DRAFT, prompt_lookup: false })).result.stats.total_draft_tokens_count).toBeUndefined();
  });

  test("/api/v1/models shows each model's default", async () => {
    const models = await new LocalModelAdmin(backend, { modelDirs: [dir] }).listModels();
    const speculative = Object.fromEntries(models.map((model) => [model.key, model.speculative]));
    expect(speculative[STRANGER]).toEqual({ draft_model: DRAFT });
    expect(speculative[DRAFT]).toEqual({ prompt_lookup: true });
    expect(speculative[TARGET]).toBeUndefined();
  });
});

describe("a draft that does not fit", () => {
  test("is refused when the model and the draft together need more than the node gives its models", async () => {
    const footprints = backend.status().footprints ?? {};
    const bytes = (id: string) => (footprints[id]?.ram_bytes ?? NaN) + (footprints[id]?.vram_bytes ?? NaN);
    const small = await LocalBackend.create({ modelDirs: [dir], gpu: false, slots: 2, memoryBytes: bytes(TARGET) + bytes(DRAFT) - 1 });
    try {
      expect((await completion({}, small)).result.stats.draft_model).toBeUndefined();
      const error = await refusal(completion({ draft_model: DRAFT }, small));
      expect([error.status, error.param, error.code]).toEqual([400, "draft_model", "draft_model_too_large"]);
      expect(error.message).toContain(DRAFT);
      expect(error.message).toContain(TARGET);
    } finally {
      await small.dispose();
    }
  });
});
