import { LlamaText, type GbnfJsonSchema, type Llama, type LlamaGrammar } from "node-llama-cpp";

/** A JSON Schema construct the grammar cannot enforce; the message says which and where. */
export class UnsupportedSchemaError extends Error {
  override name = "UnsupportedSchemaError";
}

type Json = Record<string, unknown>;

/** Keywords that change which documents are valid and have no grammar counterpart in node-llama-cpp. */
const UNSUPPORTED_KEYWORDS = [
  "not",
  "if",
  "then",
  "else",
  "pattern",
  "patternProperties",
  "propertyNames",
  "dependentSchemas",
  "dependentRequired",
  "unevaluatedProperties",
  "unevaluatedItems",
  "contains",
];

const PRIMITIVE_TYPES = new Set(["string", "number", "integer", "boolean", "null"]);
const GRAMMAR_FORMATS = new Set(["date-time", "time", "date"]);

const ANY_VALUE: GbnfJsonSchema = {
  oneOf: [{ type: ["string", "number", "boolean", "null"] }, { type: "object", additionalProperties: true }, { type: "array" }],
};

/**
 * Rewrites a JSON Schema (as OpenAI clients send it) into the subset node-llama-cpp turns into a
 * grammar: `anyOf` becomes `oneOf` (the same for generation), `definitions` become `$defs`, an
 * untyped schema becomes "any value". Throws `UnsupportedSchemaError` for what a grammar cannot
 * honour. Value bounds (`minimum`, `multipleOf`, `uniqueItems`, other string formats) are left
 * out: the output still has the schema's shape, only those checks are the caller's.
 */
export function toGrammarSchema(schema: unknown): GbnfJsonSchema {
  if (!isObject(schema)) throw new UnsupportedSchemaError("the schema must be a JSON object");
  const definitions = schema.$defs ?? schema.definitions;
  const defs: Record<string, GbnfJsonSchema> = {};
  const root = convert(schema, "#", new Set(isObject(definitions) ? Object.keys(definitions) : []));
  if (isObject(definitions)) {
    for (const [name, definition] of Object.entries(definitions)) {
      defs[name] = convert(definition, `#/$defs/${name}`, new Set(Object.keys(definitions)));
    }
  }
  return Object.keys(defs).length > 0 ? ({ ...root, $defs: defs } as GbnfJsonSchema) : root;
}

/**
 * For a tool the model is offered but not made to call: what the grammar can hold of its
 * parameters. Constraints it cannot hold (a `pattern`, `not`, …) are left out rather than refused,
 * since clients such as Claude Code send such tools on every request and check the calls they get
 * (a call that breaks one comes back to the model as a tool error); a schema even that cannot
 * express takes any object.
 */
export function toOfferedToolSchema(schema: unknown): GbnfJsonSchema {
  try {
    return toGrammarSchema(schema);
  } catch (error) {
    if (!(error instanceof UnsupportedSchemaError)) throw error;
  }
  try {
    return toGrammarSchema(withoutUnsupported(schema));
  } catch (error) {
    if (!(error instanceof UnsupportedSchemaError)) throw error;
    return { type: "object", additionalProperties: true } as GbnfJsonSchema;
  }
}

/** Subschemas by keyword: one schema, a list of them, or a map of them (whose keys are names, not keywords). */
const ONE = ["items", "additionalProperties", "contains", "not"];
const LIST = ["anyOf", "oneOf", "allOf", "prefixItems"];
const MAP = ["properties", "$defs", "definitions"];

function withoutUnsupported(node: unknown): unknown {
  if (!isObject(node)) return node;
  const kept: Json = {};
  for (const [key, value] of Object.entries(node)) {
    if (UNSUPPORTED_KEYWORDS.includes(key)) continue;
    if (ONE.includes(key)) kept[key] = withoutUnsupported(value);
    else if (LIST.includes(key) && Array.isArray(value)) kept[key] = value.map(withoutUnsupported);
    else if (MAP.includes(key) && isObject(value)) kept[key] = Object.fromEntries(Object.entries(value).map(([name, child]) => [name, withoutUnsupported(child)]));
    else kept[key] = value;
  }
  return kept;
}

function convert(node: unknown, at: string, defNames: ReadonlySet<string>): GbnfJsonSchema {
  const converted = convertShape(node, at, defNames);
  // Descriptions do not constrain anything, but chat templates show them to the model with the tools.
  return isObject(node) && typeof node.description === "string" ? ({ ...converted, description: node.description } as GbnfJsonSchema) : converted;
}

function convertShape(node: unknown, at: string, defNames: ReadonlySet<string>): GbnfJsonSchema {
  if (node === true) return ANY_VALUE;
  if (!isObject(node)) throw new UnsupportedSchemaError(`${at} must be a schema object`);
  const keyword = UNSUPPORTED_KEYWORDS.find((name) => name in node);
  if (keyword) throw new UnsupportedSchemaError(`"${keyword}" (at ${at}) is not supported`);
  const nested = (child: unknown, path: string) => convert(child, `${at}/${path}`, defNames);

  if (typeof node.$ref === "string") {
    const name = /^#\/(?:\$defs|definitions)\/(.+)$/.exec(node.$ref)?.[1];
    if (name === undefined || !defNames.has(name)) throw new UnsupportedSchemaError(`the reference "${node.$ref}" (at ${at}) cannot be resolved`);
    return { $ref: `#/$defs/${name}` } as GbnfJsonSchema;
  }
  const alternatives = node.anyOf ?? node.oneOf;
  if (alternatives !== undefined) {
    if (!Array.isArray(alternatives) || alternatives.length === 0) throw new UnsupportedSchemaError(`${at} has an empty anyOf/oneOf`);
    return { oneOf: alternatives.map((alternative, index) => nested(alternative, `anyOf/${index}`)) };
  }
  if (node.allOf !== undefined) {
    if (!Array.isArray(node.allOf) || node.allOf.length !== 1) throw new UnsupportedSchemaError(`"allOf" with more than one schema (at ${at}) is not supported`);
    return nested(node.allOf[0], "allOf/0");
  }
  if ("const" in node) return { const: primitive(node.const, `${at}/const`) };
  if (node.enum !== undefined) {
    if (!Array.isArray(node.enum) || node.enum.length === 0) throw new UnsupportedSchemaError(`${at}/enum must be a non-empty array`);
    return { enum: node.enum.map((value, index) => primitive(value, `${at}/enum/${index}`)) };
  }

  const types = node.type === undefined ? [impliedType(node)] : Array.isArray(node.type) ? node.type : [node.type];
  if (types.length === 0 || types.includes(undefined)) return ANY_VALUE;
  for (const type of types) {
    if (typeof type !== "string" || !(PRIMITIVE_TYPES.has(type) || type === "object" || type === "array")) {
      throw new UnsupportedSchemaError(`the type ${JSON.stringify(type)} (at ${at}) is not a JSON Schema type`);
    }
  }
  if (types.length > 1) {
    if (types.every((type) => PRIMITIVE_TYPES.has(type as string))) return { type: types } as GbnfJsonSchema;
    return { oneOf: types.map((type) => convert({ ...node, type }, at, defNames)) };
  }

  switch (types[0]) {
    case "string":
      if (typeof node.format === "string" && GRAMMAR_FORMATS.has(node.format)) {
        return { type: "string", format: node.format as "date-time" | "time" | "date" };
      }
      return { type: "string", minLength: optionalCount(node.minLength), maxLength: optionalCount(node.maxLength) };
    case "object": {
      const properties = isObject(node.properties) ? node.properties : undefined;
      const extra = node.additionalProperties;
      return {
        type: "object",
        properties: properties
          ? Object.fromEntries(Object.entries(properties).map(([name, child]) => [name, nested(child, `properties/${name}`)]))
          : undefined,
        // JSON Schema allows extra keys by default; with declared properties, generating only those is still valid.
        additionalProperties:
          extra === undefined ? properties === undefined : typeof extra === "boolean" ? extra : nested(extra, "additionalProperties"),
        minProperties: optionalCount(node.minProperties),
        maxProperties: optionalCount(node.maxProperties),
      };
    }
    case "array": {
      const tuple = Array.isArray(node.prefixItems) ? node.prefixItems : Array.isArray(node.items) ? node.items : undefined;
      return {
        type: "array",
        prefixItems: tuple?.map((item, index) => nested(item, `prefixItems/${index}`)),
        items: node.items !== undefined && !Array.isArray(node.items) && node.items !== false ? nested(node.items, "items") : undefined,
        minItems: optionalCount(node.minItems),
        maxItems: node.items === false && tuple ? tuple.length : optionalCount(node.maxItems),
      };
    }
    default:
      return { type: types[0] } as GbnfJsonSchema;
  }
}

function impliedType(node: Json): string | undefined {
  if ("properties" in node || "additionalProperties" in node || "required" in node) return "object";
  if ("items" in node || "prefixItems" in node) return "array";
  return undefined;
}

function primitive(value: unknown, at: string): string | number | boolean | null {
  if (value === null || typeof value === "string" || typeof value === "number" || typeof value === "boolean") return value;
  throw new UnsupportedSchemaError(`${at}: only strings, numbers, booleans and null can be constants`);
}

function optionalCount(value: unknown): number | undefined {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : undefined;
}

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * node-llama-cpp's number rules allow exponents of up to 16 digits (`921190481714E7178116071713097`
 * reads as Infinity, or as `inf` in Python) and exponents on integers (which zod and pydantic then
 * refuse as integers). Its JSON Schema grammar with these two rules bounded: integers are plain
 * digits within 2^53, other numbers keep an exponent of at most two digits, so every number the
 * model writes parses to a finite double and every integer to an exact one.
 */
const BOUNDED_NUMBER_RULES = new Map([
  ["integer-number-rule", '"-"? ("0" | [1-9] [0-9]{0,14})'],
  ["fractional-number-rule", '"-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?'],
]);

/** node-llama-cpp types the schema for compile-time inference of the output; a schema known only at run time has nothing to infer. */
export async function createJsonSchemaGrammar(llama: Llama, schema: GbnfJsonSchema): Promise<LlamaGrammar> {
  return withGrammar(llama, await llama.createGrammarForJsonSchema(schema as never), boundNumbers);
}

/** llama.cpp's exponent in its JSON grammar (`json_object`): up to 16 digits, as in the schema grammars. */
const JSON_GRAMMAR_EXPONENT = '([eE] [-+]? [0-9] [1-9]{0,15})?';

/** llama.cpp's JSON grammar, for `json_object`, with its exponents bounded to two digits. */
export async function createJsonGrammar(llama: Llama): Promise<LlamaGrammar> {
  return withGrammar(llama, await llama.getGrammarFor("json"), (grammar) => grammar.replace(JSON_GRAMMAR_EXPONENT, "([eE] [-+]? [0-9]{1,2})?"));
}

/** `original` with its text rewritten, and the options node-llama-cpp gives its own JSON grammars. */
function withGrammar(llama: Llama, original: LlamaGrammar, rewrite: (grammar: string) => string): Promise<LlamaGrammar> | LlamaGrammar {
  const grammar = rewrite(original.grammar);
  if (grammar === original.grammar) return original;
  return llama.createGrammar({ grammar, stopGenerationTriggers: [LlamaText("\n".repeat(4))], trimWhitespaceSuffix: true });
}

/** The grammar text with node-llama-cpp's number rules replaced by `BOUNDED_NUMBER_RULES`. */
export function boundNumbers(grammar: string): string {
  return grammar
    .split("\n")
    .map((line) => {
      const name = /^([\w-]+) ::= /.exec(line)?.[1];
      const bounded = name === undefined ? undefined : BOUNDED_NUMBER_RULES.get(name);
      return bounded === undefined ? line : `${name} ::= ${bounded}`;
    })
    .join("\n");
}
