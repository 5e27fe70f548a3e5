import { existsSync, readFileSync } from "node:fs";

/** Reads wrangler's `.dev.vars` (KEY="value" lines), where `npm start` keeps the local secrets. */
export function readDevVars(path: string): Record<string, string> {
  if (!existsSync(path)) return {};
  const entries = readFileSync(path, "utf8")
    .split("\n")
    .map((line) => /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"?([^"]*)"?\s*$/.exec(line))
    .filter((match) => match !== null)
    .map((match) => [match[1] as string, match[2] as string] as const);
  return Object.fromEntries(entries);
}
