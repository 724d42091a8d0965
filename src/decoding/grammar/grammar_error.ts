/**
 * The one error a grammar raises before generation starts: a `response_format` this project cannot
 * enforce exactly (a JSON Schema keyword outside the supported subset, a malformed schema, a recursive
 * `$ref`). The server answers it with a 400 that names the path and the keyword.
 *
 * @module
 */

/**
 * A grammar that cannot be compiled; the message names the JSON-pointer path and the keyword.
 *
 * @example
 * ```ts
 * new GrammarError("#/properties/age", 'keyword "minimum" is not supported');
 * // message: 'Cannot compile JSON Schema at #/properties/age: keyword "minimum" is not supported'
 * ```
 */
export class GrammarError extends Error {
  /**
   * @param path the JSON pointer (as a URI fragment, "#" is the root) of the schema that failed
   * @param reason what failed there, naming the keyword and the value
   */
  constructor(readonly path: string, reason: string) {
    super(`Cannot compile JSON Schema at ${path}: ${reason}`);
    this.name = "GrammarError";
  }
}

/** The URI-fragment JSON pointer (RFC 6901) of `segments`: "#" for the root, "~" and "/" escaped. */
export function pointer(segments: readonly (string | number)[]): string {
  return "#" + segments.map((s) => "/" + String(s).replaceAll("~", "~0").replaceAll("/", "~1")).join("");
}
