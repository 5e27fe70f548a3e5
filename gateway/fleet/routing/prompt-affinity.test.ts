import { describe, expect, test } from "vitest";
import type { ChatMessage } from "../../../shared/protocol/request-schemas.ts";
import { PromptAffinity } from "./prompt-affinity.ts";

const turn1: ChatMessage[] = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Hi" },
];
const turn2: ChatMessage[] = [...turn1, { role: "assistant", content: "Hello.", tool_calls: undefined }, { role: "user", content: "Bye" }];

describe("PromptAffinity", () => {
  test("a conversation's next turn finds the node its earlier turn went to; another conversation or model does not", () => {
    const affinity = new PromptAffinity();
    affinity.remember(PromptAffinity.keys("m", turn1), "node-a");
    expect(affinity.nodeFor(PromptAffinity.keys("m", turn2))).toBe("node-a");
    expect(affinity.nodeFor(PromptAffinity.keys("other-model", turn2))).toBeUndefined();
    expect(affinity.nodeFor(PromptAffinity.keys("m", [{ role: "user", content: "Hi" }]))).toBeUndefined();
  });

  test("the longest known prefix decides, and the latest placement of a prefix wins", () => {
    const affinity = new PromptAffinity();
    affinity.remember(PromptAffinity.keys("m", turn1.slice(0, 1)), "shares-the-system-prompt");
    affinity.remember(PromptAffinity.keys("m", turn1), "had-turn-1");
    expect(affinity.nodeFor(PromptAffinity.keys("m", turn2))).toBe("had-turn-1");
    affinity.remember(PromptAffinity.keys("m", turn2), "had-turn-2");
    expect(affinity.nodeFor(PromptAffinity.keys("m", turn1))).toBe("had-turn-2");
    // The very same prompt again is a duplicate, not a next turn: its own key does not count.
    expect(affinity.nodeFor(PromptAffinity.keys("m", turn1.slice(0, 1)))).toBeUndefined();
  });
});
