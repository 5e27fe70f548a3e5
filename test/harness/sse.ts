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
