import { expect, test } from "vitest";
import { ApiError } from "../protocol/api-error.ts";
import { assertStorable, conversationBefore, MemoryResponseStore } from "./store.ts";

const record = (id: string) => ({ id, created_at: 0, messages: [{ role: "user" as const, content: id }] });

test("direct mode's store keeps the most recent responses up to its capacity, oldest out first", async () => {
  const store = new MemoryResponseStore(2);
  for (const id of ["resp_1", "resp_2", "resp_3"]) await store.save(record(id));
  expect(await store.get("resp_1")).toBeUndefined();
  expect(await conversationBefore(store, "resp_3")).toEqual([{ role: "user", content: "resp_3" }]);
  expect(await store.delete("resp_2")).toBe(true);
  expect(await store.delete("resp_2")).toBe(false);
});

test("an unknown previous_response_id is a 400 previous_response_not_found", async () => {
  const failure = await conversationBefore(new MemoryResponseStore(), "resp_gone").catch((error: unknown) => error);
  expect(failure).toBeInstanceOf(ApiError);
  expect(failure).toMatchObject({ status: 400, code: "previous_response_not_found", param: "previous_response_id" });
});

test("a conversation too long to store in one gateway row is refused before it runs", () => {
  expect(() => assertStorable([{ role: "user", content: "x".repeat(1_000_000) }])).not.toThrow();
  let failure: unknown;
  try {
    assertStorable([{ role: "user", content: "x".repeat(1_000_000) }, { role: "assistant", content: "y".repeat(600_000) }]);
  } catch (error) {
    failure = error;
  }
  expect(failure).toMatchObject({ status: 413, code: "conversation_too_large" });
});
