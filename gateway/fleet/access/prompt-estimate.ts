import type { GenerationOperation } from "../fleet-contract.ts";

/**
 * Characters per token of ASCII text (English, code, JSON). The exact count is the node's (it
 * reads the prompt with the model's tokenizer, after admission); before admission the budget holds
 * this estimate, and the request settles to the node's count (bounded, routing/usage-bounds.ts).
 */
const CHARS_PER_TOKEN = 4;

/** What the estimate is made of: ASCII characters, and every other code point (CJK, emoji, accents). */
interface Characters {
  ascii: number;
  other: number;
}

/**
 * About how many tokens the prompt of a generation is, so a key's tokens per day count its prompt
 * before the request runs, not only after. It leans high where a tokenizer does: a code point
 * beyond ASCII is a token (CJK runs about one a character, an emoji more), and a chat's tools and
 * response schema count whole, as the JSON the model is shown or steered by.
 */
export function estimatedPromptTokens(operation: GenerationOperation): number {
  const characters: Characters = { ascii: 0, other: 0 };
  if (operation.op === "chat") {
    const { messages, tools, response_format } = operation.body;
    countWritten(messages, characters);
    for (const definition of [tools, response_format]) if (definition !== undefined) countText(JSON.stringify(definition), characters);
  } else {
    countWritten(operation.body.prompt, characters);
  }
  return Math.floor(characters.ascii / CHARS_PER_TOKEN) + characters.other;
}

/** The text a caller wrote in messages or a prompt (the message contents, tool calls included). */
function countWritten(value: unknown, into: Characters): void {
  if (typeof value === "string") countText(value, into);
  else if (Array.isArray(value)) for (const item of value) countWritten(item, into);
  else if (typeof value === "object" && value !== null) {
    // Roles and part types are a few template tokens each: only what the caller wrote counts here.
    const { role: _role, type: _type, ...rest } = value as Record<string, unknown>;
    countWritten(Object.values(rest), into);
  }
}

const NON_ASCII = /[^\x00-\x7f]/;

/** One pass over UTF-16 units: a surrogate pair is one code point, counted at its high half. */
function countText(text: string, into: Characters): void {
  // Most prompts are ASCII: the regular expression's scan is native, the loop below is not.
  if (!NON_ASCII.test(text)) {
    into.ascii += text.length;
    return;
  }
  for (let index = 0; index < text.length; index += 1) {
    const unit = text.charCodeAt(index);
    if (unit < 0x80) into.ascii += 1;
    else if (unit < 0xdc00 || unit > 0xdfff) into.other += 1;
  }
}
