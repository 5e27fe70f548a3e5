import { join } from "node:path";
import { getLlama, type LlamaContext, type LlamaModel, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, expect, test } from "vitest";
import type { TokenLogprob } from "../../shared/protocol/generation-events.ts";
import { CompletionRequest } from "../../shared/protocol/request-schemas.ts";
import { testModelsDir } from "../../test/harness/test-models.ts";
import { samplingOptions } from "./sampling-options.ts";
import { generateWithLogprobs, type LogprobRun } from "./token-logprobs.ts";

/** The log-probability loop on a real sequence of a generated model: where it stops and what it sends. */

let model: LlamaModel;
let context: LlamaContext;
beforeAll(async () => {
  const llama = await getLlama({ gpu: false });
  model = await llama.loadModel({ modelPath: join(await testModelsDir(), "lmgate/tiny-chat-GGUF/tiny-chat-F32.gguf") });
  context = await model.createContext({ contextSize: 256, sequences: 1, threads: 1 });
}, 60_000);
afterAll(async () => {
  await context?.dispose();
  await model?.dispose();
});

async function run(options: Partial<LogprobRun> & { stop?: string[] } = {}) {
  const sent: Array<{ text: string; logprobs: TokenLogprob[] }> = [];
  const { stop, ...rest } = options;
  const sequence = context.getSequence();
  try {
    const outcome = await generateWithLogprobs({
      sequence,
      model,
      input: model.tokenize("The sea is"),
      sampling: samplingOptions(CompletionRequest.parse({ model: "m", prompt: "", temperature: 0, stop }), { tokenizer: model.tokenizer, vocabularySize: 512 }),
      maxTokens: 10,
      top: 2,
      signal: new AbortController().signal,
      onText: (text, logprobs) => sent.push({ text, logprobs }),
      onToken: () => {},
      ...rest,
    });
    return { outcome, sent, text: sent.map((part) => part.text).join(""), entries: sent.flatMap((part) => part.logprobs) };
  } finally {
    sequence.dispose();
  }
}

test("runs to max_tokens, sending every token's text once with its entry", async () => {
  const { outcome, text, entries } = await run();
  expect(outcome.stopReason).toBe("maxTokens");
  expect(entries).toHaveLength(10);
  expect(entries.map((entry) => entry.token).join("")).toBe(text);
});

test("a stop string ends the text before it, and no part of it is ever sent", async () => {
  const full = await run();
  // A stop string that spans two tokens: the last character of one and the start of the next.
  const tokens = full.entries.map((entry) => entry.token);
  const next = tokens.findIndex((token, index) => index > 0 && token.trim().length >= 2 && (tokens[index - 1] ?? "").length >= 1);
  const at = tokens.slice(0, next).join("").length - 1;
  const stop = full.text.slice(at, at + 3);
  expect(full.text.indexOf(stop)).toBe(at);
  const stopped = await run({ stop: [stop] });
  expect(stopped.outcome).toEqual({ stopReason: "customStopTrigger", stopString: stop });
  expect(stopped.text).toBe(full.text.slice(0, full.text.indexOf(stop)));
  expect(stopped.sent.every((part) => !part.text.includes(stop))).toBe(true);
});

test("the chat template's end-of-turn tokens end the answer without their text or entries", async () => {
  const full = await run();
  const tokens = model.tokenize(full.entries.map((entry) => entry.token).join(""));
  const before = full.entries.slice(0, 3);
  const end = await run({ endOfTurn: [tokens.slice(3, 5) as Token[]] });
  expect(end.outcome.stopReason).toBe("stopGenerationTrigger");
  expect(end.entries.map((entry) => entry.token)).toEqual(before.map((entry) => entry.token));
  expect(end.text).toBe(before.map((entry) => entry.token).join(""));
});
