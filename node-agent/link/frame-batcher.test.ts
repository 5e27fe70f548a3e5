import { describe, expect, test } from "vitest";
import type { ToGatewayFrame } from "../../shared/protocol/frames.ts";
import { FrameBatcher } from "./frame-batcher.ts";

const delta = (id: string, text: string): ToGatewayFrame => ({ type: "events", id, events: [{ type: "delta", text }] });
const turn = () => new Promise((resolve) => setImmediate(resolve));

describe("FrameBatcher", () => {
  test("events frames of several generations ready in one turn leave as one batch, each frame kept whole and in order", async () => {
    const sent: ToGatewayFrame[] = [];
    const batcher = new FrameBatcher((frame) => sent.push(frame));
    batcher.send(delta("a", "1"));
    batcher.send(delta("b", "2"));
    batcher.send(delta("a", "3"));
    expect(sent).toHaveLength(0);
    await turn();
    expect(sent).toEqual([{ type: "batch", frames: [delta("a", "1"), delta("b", "2"), delta("a", "3")] }]);
  });

  test("a lone events frame leaves as itself, at the end of the turn", async () => {
    const sent: ToGatewayFrame[] = [];
    const batcher = new FrameBatcher((frame) => sent.push(frame));
    batcher.send(delta("a", "first token"));
    await turn();
    expect(sent).toEqual([delta("a", "first token")]);
  });

  test("any other frame sends what is batched first, so the gateway reads frames in the order they were sent", () => {
    const sent: ToGatewayFrame[] = [];
    const batcher = new FrameBatcher((frame) => sent.push(frame));
    batcher.send(delta("a", "1"));
    batcher.send({ type: "error", id: "b", status: 503, body: { error: { message: "busy", type: "server_error", param: null, code: "no_capacity" } } });
    expect(sent.map((frame) => frame.type)).toEqual(["events", "error"]);
  });
});
