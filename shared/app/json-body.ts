import type { z } from "zod";
import { invalidRequest } from "../protocol/api-error.ts";

/**
 * Parses a request body as JSON and validates it. The body is read as JSON whatever its
 * Content-Type says: `curl -d` sends form encoding by default, and a validator that then sees
 * `{}` would answer "model is required" to a request that plainly has one.
 */
export async function parseJsonBody<T extends z.ZodType>(request: Request, schema: T): Promise<z.infer<T>> {
  const text = await request.text();
  if (text.trim() === "") throw invalidRequest("The request body is empty; send a JSON object.");
  if (nestsDeeperThan(text, MAX_JSON_DEPTH)) throw invalidRequest(`The request body nests arrays and objects more than ${MAX_JSON_DEPTH} deep.`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw invalidRequest(`The request body is not valid JSON: ${(error as Error).message}`);
  }
  return validate(schema, value);
}

/** Validates a value (a body, or one built from it) and names the first wrong field in a 400. */
export function validate<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const param = issue && issue.path.length > 0 ? issue.path.join(".") : null;
  throw invalidRequest(param ? `Invalid '${param}': ${issue?.message}` : `Invalid request body: ${issue?.message}`, param);
}

/**
 * Nothing in the API nests this deep (a JSON schema of 30 nested objects does not), and deeper
 * values overflow the stack of whatever walks them next: validation, or the RPC to the Fleet.
 */
const MAX_JSON_DEPTH = 64;

/** Scans the text once, before anything recursive sees it; brackets inside strings do not count. */
function nestsDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let index = 0; index < text.length; index += 1) {
    const char = text[index];
    if (inString) {
      if (char === "\\") index += 1;
      else if (char === '"') inString = false;
    } else if (char === '"') inString = true;
    else if (char === "[" || char === "{") {
      depth += 1;
      if (depth > max) return true;
    } else if (char === "]" || char === "}") depth -= 1;
  }
  return false;
}
