import * as z from "zod";

/** How many tokens a chat request's prompt takes: its messages through the model's chat template, tools included. */
export const TokenCount = z.object({ prompt_tokens: z.number().int().nonnegative() });
export type TokenCount = z.infer<typeof TokenCount>;
