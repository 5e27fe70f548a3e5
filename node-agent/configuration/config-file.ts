import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { ConfigError } from "./config-error.ts";
import { OPTIONS, type OptionName, type OptionSpec, type OptionValue } from "./options.ts";
import { currentHost, expandHome } from "../platform/host.ts";

export type ConfigFileValues = { [N in OptionName]?: OptionValue<N> };


const KIND_NAMES: Record<OptionSpec["kind"], string> = {
  boolean: "true or false",
  integer: "a whole number",
  string: "a string",
  list: "a string or an array of strings",
};

/**
 * Reads the agent's JSON config file: an object whose keys are the flags' names
 * (`{"models": ["~/models"], "max-models": 2}`). Unknown keys and wrong types are errors, so a
 * typo never goes unnoticed. Model folders are resolved against the file's own folder.
 */
export function readConfigFile(path: string): ConfigFileValues {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigError(`cannot read the config file ${path}: ${code === "ENOENT" ? "no such file" : (error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`the config file ${path} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ConfigError(`the config file ${path} must hold a JSON object, like {"serve": true, "models": ["./models"]}`);
  }

  const values: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(json)) {
    const spec = (OPTIONS as Record<string, OptionSpec>)[key];
    if (spec === undefined || spec.notInFile) throw new ConfigError(unknownKey(path, key));
    values[key] = checked(path, key, spec, value);
  }
  const models = values.models as string[] | undefined;
  if (models) values.models = models.map((dir) => resolve(dirname(path), expandHome(dir, currentHost())));
  return values as ConfigFileValues;
}

function checked(path: string, key: string, spec: OptionSpec, value: unknown): unknown {
  const ok =
    spec.kind === "boolean"
      ? typeof value === "boolean"
      : spec.kind === "integer"
        ? Number.isInteger(value)
        : spec.kind === "string"
          ? typeof value === "string"
          : typeof value === "string" || (Array.isArray(value) && value.every((item) => typeof item === "string"));
  if (!ok) throw new ConfigError(`"${key}" in ${path} must be ${KIND_NAMES[spec.kind]}, got ${JSON.stringify(value)}`);
  return spec.kind === "list" && typeof value === "string" ? [value] : value;
}

function unknownKey(path: string, key: string): string {
  const names = Object.entries(OPTIONS as Record<string, OptionSpec>)
    .filter(([, spec]) => !spec.notInFile)
    .map(([name]) => name);
  // maxModels, max_models, MAX_MODELS, --max-models: all mean max-models.
  const normal = key
    .replace(/^-+/, "")
    .replace(/([a-z])([A-Z])/g, "$1-$2")
    .replaceAll("_", "-")
    .toLowerCase();
  const suggestion = names.includes(normal) ? ` Did you mean "${normal}"?` : "";
  const why = key === "config" ? " (a config file cannot name another one)" : "";
  return `unknown key "${key}" in the config file ${path}${why}.${suggestion} Known keys: ${names.join(", ")}.`;
}
