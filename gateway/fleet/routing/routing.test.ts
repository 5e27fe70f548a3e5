import { describe, expect, test } from "vitest";
import { chooseLoadTarget, chooseNode, type Candidate } from "./routing.ts";

const node = (id: string, fields: Partial<Candidate> = {}): Candidate => ({
  id,
  loaded: true,
  slots: 4,
  busy: 0,
  nodeBusy: fields.busy ?? 0,
  nodeSlots: 4,
  tokensPerSecond: null,
  lastDispatchAt: 0,
  fits: true,
  ...fields,
});

describe("chooseNode", () => {
  test("a node with the model loaded and a free slot beats an idle, faster node that would have to load it", () => {
    const chosen = chooseNode([node("cold", { loaded: false, tokensPerSecond: 500 }), node("warm", { busy: 3, tokensPerSecond: 50 })]);
    expect(chosen?.id).toBe("warm");
  });

  test("among loaded nodes with free slots the least busy (in-flight / slots) wins over the faster one", () => {
    const chosen = chooseNode([node("fast", { busy: 2, tokensPerSecond: 500 }), node("slow", { busy: 1, slots: 4, tokensPerSecond: 50 })]);
    expect(chosen?.id).toBe("slow");
    // Relative, not absolute: 2 of 8 is less busy than 1 of 2.
    expect(chooseNode([node("big", { busy: 2, slots: 8 }), node("small", { busy: 1, slots: 2 })])?.id).toBe("big");
  });

  test("equally busy nodes are separated by measured tokens/s; an unmeasured node ties, so round-robin tries it", () => {
    expect(chooseNode([node("a", { tokensPerSecond: 80 }), node("b", { tokensPerSecond: 200 })])?.id).toBe("b");
    expect(chooseNode([node("a", { lastDispatchAt: 1 }), node("b", { tokensPerSecond: 10, lastDispatchAt: 5 })])?.id).toBe("a");
  });

  test("speeds within 10% count as equal, and then the node that waited longest gets the request", () => {
    const chosen = chooseNode([node("a", { tokensPerSecond: 100, lastDispatchAt: 5 }), node("b", { tokensPerSecond: 95, lastDispatchAt: 1 })]);
    expect(chosen?.id).toBe("b");
  });

  test("the node that caches the prompt's leading messages wins over a less busy one, up to half its slots busier", () => {
    expect(chooseNode([node("idle"), node("warm", { busy: 2, cachesPrompt: true })])?.id).toBe("warm");
    // Three of four slots busy against an idle node: not buried under its own cache hits.
    expect(chooseNode([node("idle"), node("warm", { busy: 3, cachesPrompt: true })])?.id).toBe("idle");
    expect(chooseNode([node("other", { busy: 1 }), node("warm", { busy: 4, cachesPrompt: true })])?.id).toBe("other");
  });

  test("full nodes are skipped", () => {
    expect(chooseNode([node("full", { busy: 4 }), node("free", { busy: 3 })])?.id).toBe("free");
  });

  test("when nobody has the model loaded it is placed (JIT) on the least busy holder", () => {
    const chosen = chooseNode([
      node("busy", { loaded: false, nodeBusy: 3, nodeSlots: 4 }),
      node("idle", { loaded: false, nodeBusy: 0, nodeSlots: 8 }),
    ]);
    expect(chosen?.id).toBe("idle");
  });

  test("when nodes without room for the model hold it, JIT placement passes them over; with none left, no node", () => {
    const chosen = chooseNode([node("idle-full", { loaded: false, fits: false }), node("busy-roomy", { loaded: false, nodeBusy: 3 })]);
    expect(chosen?.id).toBe("busy-roomy");
    expect(chooseNode([node("idle-full", { loaded: false, fits: false })])).toBeNull();
  });

  test("when every loaded copy is busy, another holder with room loads one more (scale out), the least busy first", () => {
    const chosen = chooseNode([
      node("full", { busy: 4 }),
      node("cold-busy", { loaded: false, nodeBusy: 2 }),
      node("cold-idle", { loaded: false }),
    ]);
    expect(chosen?.id).toBe("cold-idle");
  });

  test("when every loaded copy is busy and no other holder has room, the request waits for a slot", () => {
    expect(chooseNode([node("full", { busy: 4 }), node("cold", { loaded: false, fits: false })])).toBeNull();
  });

  test("no candidates, no node", () => {
    expect(chooseNode([])).toBeNull();
  });
});

describe("chooseLoadTarget", () => {
  test("an explicit load goes to a holder that has not loaded it yet, else to one that has", () => {
    expect(chooseLoadTarget([node("warm"), node("cold", { loaded: false })])?.id).toBe("cold");
    expect(chooseLoadTarget([node("warm")])?.id).toBe("warm");
    expect(chooseLoadTarget([node("warm"), node("cold", { loaded: false, fits: false })])?.id).toBe("warm");
    expect(chooseLoadTarget([node("cold", { loaded: false, fits: false })])).toBeNull();
  });
});
