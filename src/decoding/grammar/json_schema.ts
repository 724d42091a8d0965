/**
 * JSON Schema -> {@link GrammarNode}: the subset that a byte automaton enforces exactly, and a
 * {@link GrammarError} naming the path and the keyword for anything else (never a silently looser
 * grammar).
 *
 * Supported (the `schema` of OpenAI's `{name, schema, strict}` wrapper; the caller unwraps it):
 * - `type`: string, number, integer, boolean, null, object, array, or a list of them (alternatives).
 *   Without `type`, the keywords present pick it (`properties` -> object, `items` -> array,
 *   `minLength` -> string); a schema with none of them (`{}`, `true`) is any JSON value.
 * - `enum`, `const`: exactly those values, each written as its canonical JSON (`JSON.stringify`: no
 *   whitespace, object keys in the value's own order). With other keywords beside them, only the values
 *   those keywords accept are kept.
 * - `properties`, `required`, `additionalProperties`: the declared properties only, written in the
 *   schema's order; optional ones may be skipped, required ones may not (what vLLM's and outlines'
 *   JSON-Schema grammars do: a fixed order keeps the automaton small and lets the model see the names it
 *   must write). `additionalProperties` may be false, true or absent beside `properties` (extra
 *   properties are never generated either way); without `properties` it may be a schema for the values
 *   of a free-form object (true / absent: any values; false: `{}` only). Every `required` name must be
 *   declared. Note that JavaScript orders integer-like keys ("1", "2") first in `properties`.
 * - `items` (one schema, not a tuple), `minItems`, `maxItems`.
 * - `minLength`, `maxLength` (code points, a surrogate-pair escape counting once).
 * - `anyOf`, `oneOf`: alternatives (oneOf's exclusivity is not enforced), with no sibling constraints.
 * - `$ref` to a local pointer (`#/$defs/x`, `#/definitions/x`); a recursive reference is refused.
 * - Ignored annotations: title, description, default, examples, $schema, $id, $comment, deprecated,
 *   readOnly, writeOnly; `$defs` / `definitions` hold referenced schemas.
 *
 * Refused, by keyword: numeric bounds (minimum, maximum, exclusive*, multipleOf), pattern, format,
 * patternProperties, propertyNames, min/maxProperties, uniqueItems, contains, prefixItems, tuple `items`,
 * allOf, not, if/then/else, dependent*, unevaluated*, remote `$ref`.
 *
 * @module
 */

import { GrammarError, pointer } from "./grammar_error.ts";
import { JsonMatcher, type MatcherOptions } from "./json_matcher.ts";
import type { GrammarBuilder, GrammarNode, Property } from "./nodes.ts";

type Schema = Record<string, unknown>;
type Path = readonly (string | number)[];

/** Keywords with no effect on the text. */
const ANNOTATIONS = new Set([
  "title",
  "description",
  "default",
  "examples",
  "$schema",
  "$id",
  "$comment",
  "deprecated",
  "readOnly",
  "writeOnly",
  "$defs",
  "definitions",
]);

/** Keywords that constrain the text, by the type they apply to ("" = any type). */
const CONSTRAINTS: Record<string, string> = {
  type: "",
  enum: "",
  const: "",
  anyOf: "",
  oneOf: "",
  $ref: "",
  properties: "object",
  required: "object",
  additionalProperties: "object",
  items: "array",
  minItems: "array",
  maxItems: "array",
  minLength: "string",
  maxLength: "string",
};

const TYPES = ["string", "number", "integer", "boolean", "null", "object", "array"];

/**
 * Compile `schema` into nodes of `builder`.
 *
 * @example
 * ```ts
 * const b = new GrammarBuilder();
 * const node = compileJsonSchema({ type: "object", properties: { ok: { type: "boolean" } } }, b);
 * ```
 * @throws {GrammarError} for a keyword outside the subset or a malformed schema, naming its path
 */
export function compileJsonSchema(
  schema: unknown,
  builder: GrammarBuilder,
  options: MatcherOptions = {},
): GrammarNode {
  return new SchemaCompiler(schema, builder, options).compile(schema, []);
}

class SchemaCompiler {
  private readonly refs = new Map<string, GrammarNode>();
  private readonly resolving = new Set<string>();

  constructor(
    private readonly root: unknown,
    private readonly b: GrammarBuilder,
    private readonly options: MatcherOptions,
  ) {}

  compile(schema: unknown, path: Path): GrammarNode {
    if (schema === true) return this.b.any();
    if (schema === false) throw new GrammarError(pointer(path), "the schema false accepts no value");
    if (!isObject(schema)) {
      throw new GrammarError(pointer(path), `expected a schema object, got ${JSON.stringify(schema)}`);
    }
    for (const k of Object.keys(schema)) {
      if (!(k in CONSTRAINTS) && !ANNOTATIONS.has(k)) {
        throw new GrammarError(pointer(path), `keyword "${k}" is not supported`);
      }
    }
    const constraints = Object.keys(schema).filter((k) => k in CONSTRAINTS);
    if ("$ref" in schema) {
      alone("$ref", constraints, path);
      return this.ref(schema.$ref, [...path, "$ref"]);
    }
    for (const k of ["anyOf", "oneOf"] as const) {
      if (!(k in schema)) continue;
      alone(k, constraints, path);
      const alts = schema[k];
      if (!Array.isArray(alts) || alts.length === 0) {
        throw new GrammarError(pointer([...path, k]), `"${k}" must be a non-empty array of schemas`);
      }
      return this.b.alt(alts.map((s, i) => this.compile(s, [...path, k, i])));
    }
    if ("enum" in schema || "const" in schema) return this.values(schema, path);
    return this.typed(schema, path);
  }

  /** enum / const: the listed values that the other keywords (if any) accept. */
  private values(schema: Schema, path: Path): GrammarNode {
    let values: unknown[] | undefined;
    if ("enum" in schema) {
      if (!Array.isArray(schema.enum) || schema.enum.length === 0) {
        throw new GrammarError(pointer([...path, "enum"]), `"enum" must be a non-empty array`);
      }
      values = schema.enum;
    }
    if ("const" in schema) {
      const c = canonical(schema.const);
      values = values === undefined ? [schema.const] : values.filter((v) => canonical(v) === c);
    }
    const texts = [...new Set(values!.map(canonical))];
    const rest = Object.fromEntries(Object.entries(schema).filter(([k]) => k !== "enum" && k !== "const"));
    let kept = texts;
    if (Object.keys(rest).some((k) => k in CONSTRAINTS)) {
      // Let the rest of the schema judge each value: its automaton either reads the text or it does not.
      const m = new JsonMatcher(this.typed(rest, path), { ...this.options, maxWhitespace: 0 });
      const enc = new TextEncoder();
      kept = texts.filter((t) => {
        const s = m.stepAll(m.initial(), enc.encode(t));
        return s !== undefined && m.isComplete(s);
      });
    }
    if (kept.length === 0) {
      throw new GrammarError(
        pointer(path),
        `no value of "enum" / "const" satisfies the schema's other keywords`,
      );
    }
    return this.b.literals(kept);
  }

  /** A schema of one or more types (explicit or inferred from its keywords). */
  private typed(schema: Schema, path: Path): GrammarNode {
    let types: string[];
    if ("type" in schema) {
      const t = schema.type;
      types = typeof t === "string" ? [t] : Array.isArray(t) ? [...t] : [];
      if (types.length === 0 || types.some((x) => typeof x !== "string" || !TYPES.includes(x))) {
        throw new GrammarError(
          pointer([...path, "type"]),
          `"type" must be one of ${TYPES.join(", ")} or a non-empty list of them, got ${JSON.stringify(t)}`,
        );
      }
    } else {
      types = [...new Set(Object.keys(schema).map((k) => CONSTRAINTS[k]).filter((t) => t))];
      if (types.length === 0) return this.b.any();
    }
    if (types.includes("number")) types = types.filter((t) => t !== "integer"); // number covers integer
    return this.b.alt([...new Set(types)].map((t) => this.ofType(t, schema, path)));
  }

  private ofType(type: string, s: Schema, path: Path): GrammarNode {
    switch (type) {
      case "string": {
        const min = count(s, "minLength", path) ?? 0;
        const max = count(s, "maxLength", path) ?? Infinity;
        if (min > max) throw new GrammarError(pointer(path), `"minLength" ${min} exceeds "maxLength" ${max}`);
        return this.b.string(min, max);
      }
      case "number":
      case "integer":
        return this.b.number(type === "integer");
      case "boolean":
        return this.b.literals(["true", "false"]);
      case "null":
        return this.b.literals(["null"]);
      case "array":
        return this.array(s, path);
      default:
        return this.object(s, path);
    }
  }

  private array(s: Schema, path: Path): GrammarNode {
    if (Array.isArray(s.items)) {
      throw new GrammarError(pointer([...path, "items"]), `"items" as an array (a tuple) is not supported`);
    }
    const items = "items" in s ? this.compile(s.items, [...path, "items"]) : this.b.any();
    const min = count(s, "minItems", path) ?? 0;
    const max = count(s, "maxItems", path) ?? Infinity;
    if (min > max) throw new GrammarError(pointer(path), `"minItems" ${min} exceeds "maxItems" ${max}`);
    return this.b.array(items, min, max);
  }

  private object(s: Schema, path: Path): GrammarNode {
    const required = s.required ?? [];
    if (!Array.isArray(required) || required.some((r) => typeof r !== "string")) {
      throw new GrammarError(pointer([...path, "required"]), `"required" must be an array of strings`);
    }
    const extra = s.additionalProperties;
    if (!("properties" in s)) {
      if (required.length > 0) {
        throw new GrammarError(
          pointer([...path, "required"]),
          `"required" without "properties" is not supported (declare "${required[0]}" in "properties")`,
        );
      }
      if (extra === false) return this.b.object([]);
      const values = extra === undefined
        ? this.b.any()
        : this.compile(extra, [...path, "additionalProperties"]);
      return this.b.objectMap(values);
    }
    if (!isObject(s.properties)) {
      throw new GrammarError(pointer([...path, "properties"]), `"properties" must be an object of schemas`);
    }
    if (extra !== undefined && typeof extra !== "boolean") {
      throw new GrammarError(
        pointer([...path, "additionalProperties"]),
        `"additionalProperties" as a schema beside "properties" is not supported (use false)`,
      );
    }
    const names = Object.keys(s.properties);
    for (const r of required) {
      if (!names.includes(r)) {
        throw new GrammarError(
          pointer([...path, "required"]),
          `required property "${r}" is not in "properties"`,
        );
      }
    }
    const props: Property[] = names.map((name) => ({
      name,
      value: this.compile((s.properties as Schema)[name], [...path, "properties", name]),
      required: required.includes(name),
    }));
    return this.b.object(props);
  }

  /** The node of a local `$ref` (compiled once per target; a cycle is refused). */
  private ref(ref: unknown, path: Path): GrammarNode {
    if (typeof ref !== "string" || !ref.startsWith("#")) {
      throw new GrammarError(
        pointer(path),
        `"$ref" ${JSON.stringify(ref)} is not a local reference ("#/...")`,
      );
    }
    const cached = this.refs.get(ref);
    if (cached) return cached;
    if (this.resolving.has(ref)) {
      throw new GrammarError(pointer(path), `recursive "$ref" "${ref}" is not supported`);
    }
    if (ref !== "#" && !ref.startsWith("#/")) {
      throw new GrammarError(pointer(path), `"$ref" "${ref}" is not a JSON pointer`);
    }
    // RFC 6901 in a URI fragment: percent-decode, then "~1" -> "/" and "~0" -> "~" (in that order).
    const segments = ref === "#"
      ? []
      : ref.slice(2).split("/").map((s) => decodeURIComponent(s).replaceAll("~1", "/").replaceAll("~0", "~"));
    let target: unknown = this.root;
    for (const seg of segments) {
      target = isObject(target) || Array.isArray(target) ? (target as Schema)[seg] : undefined;
      if (target === undefined) throw new GrammarError(pointer(path), `"$ref" "${ref}" points at nothing`);
    }
    this.resolving.add(ref);
    try {
      const node = this.compile(target, segments);
      this.refs.set(ref, node);
      return node;
    } finally {
      this.resolving.delete(ref);
    }
  }
}

function isObject(v: unknown): v is Schema {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function canonical(v: unknown): string {
  return JSON.stringify(v);
}

/** Refuse constraint keywords beside one that must stand alone ($ref, anyOf, oneOf). */
function alone(keyword: string, constraints: string[], path: Path): void {
  const other = constraints.find((k) => k !== keyword);
  if (other !== undefined) {
    throw new GrammarError(pointer(path), `keyword "${other}" beside "${keyword}" is not supported`);
  }
}

/** A non-negative integer keyword, or undefined when absent. */
function count(s: Schema, keyword: string, path: Path): number | undefined {
  const v = s[keyword];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    throw new GrammarError(
      pointer([...path, keyword]),
      `"${keyword}" must be a non-negative integer, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}
