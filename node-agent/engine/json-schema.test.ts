import { describe, expect, test } from "vitest";
import { getLlama } from "node-llama-cpp";
import { boundNumbers, createJsonGrammar, createJsonSchemaGrammar, toGrammarSchema, UnsupportedSchemaError } from "./json-schema.ts";

describe("toGrammarSchema", () => {
  test("keeps the shape node-llama-cpp enforces and the descriptions models read", () => {
    expect(
      toGrammarSchema({
        type: "object",
        description: "a person",
        properties: { name: { type: "string", maxLength: 8 }, born: { type: "string", format: "date" }, tags: { type: "array", items: { enum: ["a", "b"] }, maxItems: 2 } },
        required: ["name"],
        additionalProperties: false,
      }),
    ).toEqual({
      type: "object",
      description: "a person",
      properties: {
        name: { type: "string", minLength: undefined, maxLength: 8 },
        born: { type: "string", format: "date" },
        tags: { type: "array", prefixItems: undefined, items: { enum: ["a", "b"] }, minItems: undefined, maxItems: 2 },
      },
      additionalProperties: false,
      minProperties: undefined,
      maxProperties: undefined,
    });
  });

  test("rewrites what clients commonly send: anyOf, definitions refs, nullable type lists, untyped objects", () => {
    const converted = toGrammarSchema({
      properties: { pet: { $ref: "#/definitions/Pet" }, note: { anyOf: [{ type: "string" }, { type: "null" }] }, count: { type: ["integer", "null"] } },
      definitions: { Pet: { type: "object", properties: { kind: { const: "cat" } } } },
    });
    expect(converted).toMatchObject({
      type: "object",
      properties: { pet: { $ref: "#/$defs/Pet" }, note: { oneOf: [{ type: "string" }, { type: "null" }] }, count: { type: ["integer", "null"] } },
      $defs: { Pet: { type: "object", properties: { kind: { const: "cat" } } } },
    });
  });

  test("an object without declared properties accepts any keys, as JSON Schema says", () => {
    expect(toGrammarSchema({ type: "object" })).toMatchObject({ type: "object", additionalProperties: true });
  });

  test.each([
    [{ type: "string", pattern: "^a+$" }, "pattern"],
    [{ type: "object", properties: { a: { $ref: "#/$defs/Missing" } } }, "cannot be resolved"],
    [{ allOf: [{ type: "string" }, { maxLength: 3 }] }, "allOf"],
    [{ type: "date" }, "not a JSON Schema type"],
    [{ not: { type: "string" } }, "not"],
    [{ enum: [{ a: 1 }] }, "constants"],
  ])("refuses %j, naming the problem", (schema, problem) => {
    expect(() => toGrammarSchema(schema)).toThrow(UnsupportedSchemaError);
    expect(() => toGrammarSchema(schema)).toThrow(problem);
  });
});

test("boundNumbers takes exponents off integers and bounds them on other numbers, leaving other rules alone", () => {
  // node-llama-cpp's rules as it writes them (utils/gbnfJson/terminals/GbnfNumber.js).
  const exponent = '([eE] [-+]? ("0" | [1-9] [0-9]{0,15}))?';
  const grammar = [
    'root ::= "[" integer-number-rule "," fractional-number-rule "]"',
    `integer-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,15}) ${exponent}`,
    `fractional-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ${exponent}`,
  ].join("\n");
  const [root, integer, fractional] = boundNumbers(grammar).split("\n");
  expect(root).toBe('root ::= "[" integer-number-rule "," fractional-number-rule "]"');
  expect(integer).toBe('integer-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,14})');
  expect(fractional).toBe('fractional-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?');
});

test("the grammars handed to the engine have bounded numbers: json_object's and a JSON Schema's, as this node-llama-cpp writes them", async () => {
  const llama = await getLlama({ gpu: false, build: "never" });
  try {
    const json = (await createJsonGrammar(llama)).grammar;
    expect(json).toContain('([eE] [-+]? [0-9]{1,2})?');
    expect(json).not.toMatch(/\{0,15\}\)\?/);
    const schema = (await createJsonSchemaGrammar(llama, { type: "array", items: { oneOf: [{ type: "integer" }, { type: "number" }] } })).grammar;
    expect(schema).toContain('integer-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,14})\n');
    expect(schema).toContain('fractional-number-rule ::= "-"? ("0" | [1-9] [0-9]{0,15}) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?');
  } finally {
    await llama.dispose();
  }
});
