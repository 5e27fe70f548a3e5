import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ApiError } from "../shared/errors.ts";
import { GenerationResult, type GenerationEvent } from "../shared/schemas/generation.ts";
import { ChatRequest, CompletionRequest } from "../shared/schemas/requests.ts";
import { testModelsDir } from "../test/harness/test-models.ts";
import { ensureModel } from "./demo-models/demo-models.ts";
import { TINY_SPECULATIVE } from "./demo-models/speculative-pairs.ts";
import { LocalBackend } from "./local-backend.ts";

/** The pair's ids as the catalog gives them (file names, lower-cased). */
const TARGET = "spec-tiny-target-f32";
const DRAFT = "spec-tiny-draft-f32";
const STRANGER = "spec-tiny-stranger-f32";
const OTHER_VOCABULARY = "spec-tiny-other-vocabulary-f32";
const EMBED = "tiny-embed-f32";

let backend: LocalBackend;
const never = new AbortController().signal;

beforeAll(async () => {
  const dir = await testModelsDir();
  for (const model of Object.values(TINY_SPECULATIVE)) await ensureModel(dir, model);
  backend = await LocalBackend.create({ modelDirs: [dir], gpu: false, slots: 2, speculative: { promptLookup: [STRANGER] } });
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
const completion = (extra: Record<string, unknown> = {}) =>
  collect(backend.completion(CompletionRequest.parse({ model: TARGET, prompt: "Once upon a time", temperature: 0, max_tokens: 48, repeat_penalty: 1, ...extra }), never));

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
