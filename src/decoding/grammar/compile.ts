/**
 * A `response_format` grammar ({@link GrammarSpec}) as a byte matcher: `json_object` is an object of
 * arbitrary JSON values; `json_schema` is the schema's compiled subset (json_schema.ts).
 *
 * @module
 */

import type { GrammarSpec } from "../logits/processor.ts";
import { GrammarError } from "./grammar_error.ts";
import { JsonMatcher, type MatcherOptions } from "./json_matcher.ts";
import { compileJsonSchema } from "./json_schema.ts";
import { GrammarBuilder } from "./nodes.ts";

/**
 * The matcher of `spec`.
 *
 * @example
 * ```ts
 * const m = compileGrammar({ kind: "json_schema", schema: { type: "array", items: { type: "integer" } } });
 * m.isComplete(m.stepAll(m.initial(), new TextEncoder().encode("[1, 2]"))!); // true
 * ```
 * @throws {GrammarError} when the schema is outside the supported subset
 */
export function compileGrammar(spec: GrammarSpec, options: MatcherOptions = {}): JsonMatcher {
  const b = new GrammarBuilder();
  switch (spec.kind) {
    case "json_object":
      return new JsonMatcher(b.objectMap(b.any()), options);
    case "json_schema":
      return new JsonMatcher(compileJsonSchema(spec.schema, b, options), options);
    default:
      throw new GrammarError("#", `unknown grammar kind ${JSON.stringify((spec as { kind: unknown }).kind)}`);
  }
}
