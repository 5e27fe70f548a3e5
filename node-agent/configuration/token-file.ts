import { readFileSync } from "node:fs";
import { ConfigError } from "./config-error.ts";

/**
 * The node token from a file (`--token-file`, env LMGATE_TOKEN_FILE): unlike `--token`, it is
 * not on the command line, where anyone on the machine can read it with `ps`.
 */
export function readTokenFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(`--token-file ${path}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  const token = text.trim();
  if (token === "") throw new ConfigError(`--token-file ${path}: the file is empty`);
  return token;
}
