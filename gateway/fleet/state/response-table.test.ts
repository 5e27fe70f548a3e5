import { expect, test } from "vitest";
import { env } from "cloudflare:workers";
import { runInDurableObject } from "cloudflare:test";
import { ResponseTable } from "./response-table.ts";

const DAY = 24 * 3600;
const turn = (id: string, createdAt: number, previous: string | null = null) => ({
  id,
  created_at: createdAt,
  previous_response_id: previous,
  messages: [{ role: "user" as const, content: id }],
});

test("the 30 days count from a conversation's last turn: what it continues is kept as long as it is, another key's chain is never walked", async () => {
  await runInDurableObject(env.FLEET.getByName("response-table-test"), (_instance, state) => {
    const table = new ResponseTable(state.storage.sql, 10_000_000);
    table.save("key_a", turn("resp_root", 0));
    table.save("key_a", turn("resp_alone", 0));
    table.save("key_a", turn("resp_next", 20 * DAY, "resp_root"));
    // Day 35: the lone one from day 0 is gone, the chain begun that day is whole.
    table.save("key_a", turn("resp_later", 35 * DAY));
    expect(table.get("key_a", "resp_alone")).toBeNull();
    expect(table.get("key_a", "resp_next")).toMatchObject({ turns: 2, messages: [{ content: "resp_root" }, { content: "resp_next" }] });
    // A key naming another key's response as its previous one reads only its own turn.
    table.save("key_b", turn("resp_b", 35 * DAY, "resp_root"));
    expect(table.get("key_b", "resp_b")).toMatchObject({ turns: 1, missing: "resp_root" });
    // Day 51: 30 days after the chain's last turn, all of it goes.
    table.save("key_a", turn("resp_last", 51 * DAY));
    expect(table.get("key_a", "resp_next")).toBeNull();
    expect(table.get("key_a", "resp_root")).toBeNull();
    expect(table.usage("key_a").count).toBe(2);
  });
});
