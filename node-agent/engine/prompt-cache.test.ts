import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { GenerationResult, type GenerationEvent } from "../../shared/protocol/generation-events.ts";
import { ChatRequest, type ChatMessage } from "../../shared/protocol/request-schemas.ts";
import { testModelsDir } from "../../test/harness/test-models.ts";
import { LocalBackend } from "../serving/local-backend.ts";

const CHAT = "tiny-chat-f32";
const never = new AbortController().signal;

let backend: LocalBackend;

beforeAll(async () => {
  backend = await LocalBackend.create({ modelDirs: [await testModelsDir()], gpu: false, slots: 4 });
});
afterAll(async () => {
  await backend?.dispose();
});

/** A chat client that sends its whole history every turn, as chat UIs and coding agents do. */
class Conversation {
  readonly messages: ChatMessage[];
  readonly results: GenerationResult[] = [];

  constructor(name: string) {
    const rules = Array.from({ length: 12 }, (_, index) => `Rule ${index} for ${name}: answer ${name}'s questions briefly.`);
    this.messages = [{ role: "system", content: `You are ${name}'s assistant. ${rules.join(" ")}` }];
  }

  async turn(question: string): Promise<GenerationResult> {
    this.messages.push({ role: "user", content: question });
    const request = ChatRequest.parse({ model: CHAT, messages: this.messages, temperature: 0, seed: 1, max_tokens: 8 });
    let text = "";
    let result: GenerationResult | undefined;
    for await (const event of backend.chat(request, never) as AsyncIterable<GenerationEvent>) {
      if (event.type === "delta") text += event.text;
      if (event.type === "done") result = GenerationResult.parse(event.result);
    }
    if (!result) throw new Error("the generation ended without a done event");
    this.messages.push({ role: "assistant", content: text, tool_calls: undefined });
    this.results.push(result);
    return result;
  }

  /** Prompt tokens of turn `n` (0-based) taken from the cache. */
  cached(n: number): number {
    const result = this.results[n] as GenerationResult;
    expect(result.stats.cached_prompt_tokens).toBe(result.usage.prompt_tokens_details?.cached_tokens);
    return result.usage.prompt_tokens_details?.cached_tokens ?? 0;
  }

  promptTokens(n: number): number {
    return (this.results[n] as GenerationResult).usage.prompt_tokens;
  }
}

const conversations = (names: string[]) => names.map((name) => new Conversation(name));

describe("each conversation's next turn reuses the slot that caches its prompt", () => {
  test("four conversations taking turns one after another: every second turn finds its first in the cache", async () => {
    const all = conversations(["Ada", "Brook", "Cyd", "Dee"]);
    for (const conversation of all) await conversation.turn("What is the plan for today?");
    for (const conversation of all) await conversation.turn("And for tomorrow?");
    for (const conversation of all) {
      // A first turn shares only the template's first tokens with what another left behind.
      expect(conversation.cached(0)).toBeLessThan(conversation.promptTokens(0) / 10);
      expect(conversation.cached(1)).toBeGreaterThanOrEqual(conversation.promptTokens(0));
    }
  });

  test("four conversations at once, turn after turn: every later turn finds its previous one in the cache", async () => {
    const all = conversations(["Eve", "Finn", "Gus", "Hal"]);
    for (const question of ["Hello?", "Why?", "How so?"]) await Promise.all(all.map((conversation) => conversation.turn(question)));
    for (const conversation of all) {
      expect(conversation.cached(1)).toBeGreaterThanOrEqual(conversation.promptTokens(0));
      expect(conversation.cached(2)).toBeGreaterThanOrEqual(conversation.promptTokens(1));
    }
  });

  test("a new conversation takes the least recently used slot, so the recently active ones keep their caches", async () => {
    const [ivy, jay, kit, lou, max] = conversations(["Ivy", "Jay", "Kit", "Lou", "Max"]) as [Conversation, Conversation, Conversation, Conversation, Conversation];
    for (const conversation of [ivy, jay, kit, lou]) await conversation.turn("Ready?");
    await ivy.turn("Still there?");
    // Jay's slot is now the one used longest ago: the newcomer takes it.
    await max.turn("Ready?");
    for (const conversation of [ivy, kit, lou, max]) await conversation.turn("One more?");
    expect(ivy.cached(2)).toBeGreaterThanOrEqual(ivy.promptTokens(1));
    for (const conversation of [kit, lou, max]) expect(conversation.cached(1)).toBeGreaterThanOrEqual(conversation.promptTokens(0));
    await jay.turn("Did you forget me?");
    expect(jay.cached(1)).toBeLessThan(jay.promptTokens(0) / 10);
  });
});
