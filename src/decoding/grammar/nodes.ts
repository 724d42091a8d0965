/**
 * The compiled grammar: a small graph of JSON value shapes that {@link JsonMatcher} walks byte by byte.
 * `json_object` is an object of arbitrary values; a JSON Schema compiles to the same nodes with tighter
 * parameters (json_schema.ts). Nodes are immutable after construction and numbered per builder, so a
 * matcher state can name its node by id in a memoization key.
 *
 * @module
 */

import { ByteTrie } from "./byte_trie.ts";

/** Any JSON value (RFC 8259); containers only below the matcher's depth limit. */
export interface AnyNode {
  readonly kind: "any";
  readonly id: number;
  /** The shapes an arbitrary value takes, by its first byte. */
  readonly object: ObjectMapNode;
  readonly array: ArrayNode;
  readonly string: StringNode;
  readonly number: NumberNode;
  /** true, false, null */
  readonly literals: LiteralsNode;
}

/** An object with any keys (any JSON string) and values of one shape. */
export interface ObjectMapNode {
  readonly kind: "object_map";
  readonly id: number;
  readonly key: StringNode;
  readonly values: GrammarNode;
}

/** One declared property of an {@link ObjectNode}. */
export interface Property {
  readonly name: string;
  readonly value: GrammarNode;
  readonly required: boolean;
}

/**
 * An object with declared properties only, written in declaration order; optional ones may be skipped.
 * `keys[i]` holds the JSON-encoded names (without the opening quote, with the closing one) of the
 * properties that may come when the next candidate is `i`: i, and each later one while every property
 * between is optional; the trie's values are property indices.
 */
export interface ObjectNode {
  readonly kind: "object";
  readonly id: number;
  readonly properties: readonly Property[];
  readonly keys: readonly ByteTrie[];
  /** `requiredFrom[i]`: some property at index >= i is required (so "}" may not come yet). */
  readonly requiredFrom: readonly boolean[];
}

/** An array of items of one shape, with a length range. */
export interface ArrayNode {
  readonly kind: "array";
  readonly id: number;
  readonly items: GrammarNode;
  readonly minItems: number;
  /** Infinity when unbounded. */
  readonly maxItems: number;
}

/** A string whose length in code points lies in [minLength, maxLength]. */
export interface StringNode {
  readonly kind: "string";
  readonly id: number;
  readonly minLength: number;
  /** Infinity when unbounded. */
  readonly maxLength: number;
}

/** A JSON number; `integer` forbids a fraction and an exponent. */
export interface NumberNode {
  readonly kind: "number";
  readonly id: number;
  readonly integer: boolean;
}

/** One of a finite set of exact texts (an enum's values in canonical JSON, true/false/null). */
export interface LiteralsNode {
  readonly kind: "literals";
  readonly id: number;
  readonly texts: readonly string[];
  readonly trie: ByteTrie;
}

/** Any one of several shapes (anyOf, oneOf, a list of types): the matcher follows each at once. */
export interface AltNode {
  readonly kind: "alt";
  readonly id: number;
  readonly alternatives: readonly GrammarNode[];
}

/** A compiled value shape. */
export type GrammarNode =
  | AnyNode
  | ObjectMapNode
  | ObjectNode
  | ArrayNode
  | StringNode
  | NumberNode
  | LiteralsNode
  | AltNode;

const UTF8 = new TextEncoder();

/**
 * Makes the nodes of one grammar and numbers them. Node ids are what memoization keys name, so all the
 * nodes one matcher walks must come from one builder.
 *
 * @example
 * ```ts
 * const b = new GrammarBuilder();
 * const point = b.object([
 *   { name: "x", value: b.number(false), required: true },
 *   { name: "y", value: b.number(false), required: false },
 * ]);
 * ```
 */
export class GrammarBuilder {
  private nextId = 0;
  private anyNode: AnyNode | undefined;
  private anyStringNode: StringNode | undefined;

  /** Any JSON value (one node per builder; it refers to itself through its containers). */
  any(): AnyNode {
    if (this.anyNode) return this.anyNode;
    // The container shapes refer back to this node, so it is built first and completed in place.
    const node = { kind: "any", id: this.id() } as { -readonly [K in keyof AnyNode]: AnyNode[K] };
    this.anyNode = node;
    node.string = this.anyString();
    node.number = this.number(false);
    node.literals = this.literals(["true", "false", "null"]);
    node.object = this.objectMap(node);
    node.array = this.array(node, 0, Infinity);
    return node;
  }

  /** Any JSON string (object keys of a free-form object). */
  anyString(): StringNode {
    return this.anyStringNode ??= this.string(0, Infinity);
  }

  /** An object with any keys and values of shape `values`. */
  objectMap(values: GrammarNode): ObjectMapNode {
    return { kind: "object_map", id: this.id(), key: this.anyString(), values };
  }

  /** An object of declared properties only, in this order (names must be distinct). */
  object(properties: readonly Property[]): ObjectNode {
    const encoded = properties.map((p) => UTF8.encode(JSON.stringify(p.name).slice(1)));
    const keys: ByteTrie[] = [];
    const requiredFrom: boolean[] = new Array(properties.length + 1).fill(false);
    for (let i = properties.length - 1; i >= 0; i--) {
      requiredFrom[i] = properties[i].required || requiredFrom[i + 1];
    }
    for (let i = 0; i < properties.length; i++) {
      // Candidates when i is next: i itself, then later ones for as long as the skipped ones are optional.
      const candidates: [Uint8Array, number][] = [];
      for (let j = i; j < properties.length; j++) {
        candidates.push([encoded[j], j]);
        if (properties[j].required) break;
      }
      keys.push(new ByteTrie(candidates));
    }
    return { kind: "object", id: this.id(), properties, keys, requiredFrom };
  }

  /** An array of `items`, between minItems and maxItems long. */
  array(items: GrammarNode, minItems: number, maxItems: number): ArrayNode {
    return { kind: "array", id: this.id(), items, minItems, maxItems };
  }

  /** A string of minLength..maxLength code points. */
  string(minLength: number, maxLength: number): StringNode {
    return { kind: "string", id: this.id(), minLength, maxLength };
  }

  /** A number (an integer when `integer`). */
  number(integer: boolean): NumberNode {
    return { kind: "number", id: this.id(), integer };
  }

  /** Exactly one of `texts` (each a complete JSON value, no surrounding whitespace). */
  literals(texts: readonly string[]): LiteralsNode {
    return {
      kind: "literals",
      id: this.id(),
      texts,
      trie: new ByteTrie(texts.map((t, i) => [UTF8.encode(t), i])),
    };
  }

  /** One of `alternatives` (a single alternative is returned as is). */
  alt(alternatives: readonly GrammarNode[]): GrammarNode {
    if (alternatives.length === 1) return alternatives[0];
    return { kind: "alt", id: this.id(), alternatives };
  }

  private id(): number {
    return this.nextId++;
  }
}
