/** Reads a whole SSE response: the JSON `data:` events in order, and whether `[DONE]` ended it. */
export async function readSse(response: Response): Promise<{ events: unknown[]; done: boolean }> {
  const text = await response.text();
  const events: unknown[] = [];
  let done = false;
  for (const block of text.split("\n\n")) {
    const data = block
      .split("\n")
      .filter((line) => line.startsWith("data: "))
      .map((line) => line.slice("data: ".length))
      .join("\n");
    if (data === "") continue;
    if (data === "[DONE]") done = true;
    else events.push(JSON.parse(data));
  }
  return { events, done };
}

/**
 * Reads a chat stream until its first text has come (the generation is running): what was read so
 * far (`first`), and the rest: every event in order and whether `[DONE]` ended it; a stream cut
 * short keeps what came.
 */
export async function untilFirstText(response: Response): Promise<{ first: string; rest(): Promise<{ events: unknown[]; done: boolean }> }> {
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!/"content":"[^"]/.test(text)) {
    const next = await reader.read();
    if (next.done) throw new Error(`the stream ended before any text:\n${text}`);
    text += decoder.decode(next.value, { stream: true });
  }
  return {
    first: text,
    async rest() {
      try {
        for (let next = await reader.read(); !next.done; next = await reader.read()) text += decoder.decode(next.value, { stream: true });
      } catch {
        // Cut: what came is what there is.
      }
      return readSse(new Response(text));
    },
  };
}
