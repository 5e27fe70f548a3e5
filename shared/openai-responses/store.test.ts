import { expect, test } from "vitest";
import { ApiError } from "../protocol/api-error.ts";
import { assertStorable, conversationBefore, MAX_STORED_TURNS, MemoryResponseStore } from "./store.ts";

const turn = (id: string, previous: string | null = null) => ({
  id,
  created_at: 0,
  previous_response_id: previous,
  messages: [
    { role: "user" as const, content: `asked ${id}` },
    { role: "assistant" as const, content: `answered ${id}` },
  ],
});

test("direct mode's store keeps the most recently used responses up to its capacity, least recent out first", async () => {
  const store = new MemoryResponseStore(2);
  for (const id of ["resp_1", "resp_2", "resp_3"]) await store.save(turn(id));
  expect(await store.get("resp_1")).toBeUndefined();
  expect((await conversationBefore(store, "resp_3")).messages).toEqual(turn("resp_3").messages);
  expect(await store.delete("resp_2")).toBe(true);
  expect(await store.delete("resp_2")).toBe(false);
});

test("a chain is stored as its turns and read back whole; continuing it keeps its start from being the first out", async () => {
  const store = new MemoryResponseStore(3);
  await store.save(turn("resp_a"));
  await store.save(turn("resp_other"));
  await store.save(turn("resp_b", "resp_a"));
  // resp_a was used again by resp_b: resp_other is now the least recently used.
  await store.save(turn("resp_c", "resp_b"));
  expect(await store.get("resp_other")).toBeUndefined();
  const before = await conversationBefore(store, "resp_c");
  expect(before.turns).toBe(3);
  expect(before.messages.map((message) => message.content)).toEqual(["asked resp_a", "answered resp_a", "asked resp_b", "answered resp_b", "asked resp_c", "answered resp_c"]);
});

test("deleting a response in the middle of a chain: the later one still reads, but continuing it is a 409 conversation_incomplete", async () => {
  const store = new MemoryResponseStore();
  await store.save(turn("resp_a"));
  await store.save(turn("resp_b", "resp_a"));
  await store.save(turn("resp_c", "resp_b"));
  expect(await store.delete("resp_b")).toBe(true);
  expect(await store.get("resp_c")).toMatchObject({ id: "resp_c", missing: "resp_b" });
  const failure = await conversationBefore(store, "resp_c").catch((error: unknown) => error);
  expect(failure).toBeInstanceOf(ApiError);
  expect(failure).toMatchObject({ status: 409, code: "conversation_incomplete", param: "previous_response_id" });
});

test("an unknown previous_response_id is a 400 previous_response_not_found", async () => {
  const failure = await conversationBefore(new MemoryResponseStore(), "resp_gone").catch((error: unknown) => error);
  expect(failure).toBeInstanceOf(ApiError);
  expect(failure).toMatchObject({ status: 400, code: "previous_response_not_found", param: "previous_response_id" });
});

test("a turn is refused before it runs when its conversation would be too long to store, in bytes or in turns; it takes only its own bytes", () => {
  const short = { messages: [], turns: 0 };
  expect(assertStorable(short, [{ role: "user", content: "x".repeat(1_000_000) }])).toBeGreaterThan(1_000_000);
  const long = { messages: [{ role: "user" as const, content: "x".repeat(1_000_000) }], turns: 1 };
  expect(assertStorable(long, [{ role: "user", content: "hi" }])).toBeLessThan(100);
  expect(() => assertStorable(long, [{ role: "user", content: "y".repeat(600_000) }])).toThrow(expect.objectContaining({ status: 413, code: "conversation_too_large" }));
  expect(() => assertStorable({ messages: [], turns: MAX_STORED_TURNS }, [{ role: "user", content: "hi" }])).toThrow(
    expect.objectContaining({ status: 413, code: "conversation_too_large" }),
  );
});
