/**
 * A small immutable trie over byte strings, the shape of the finite parts of a grammar: an `enum` /
 * `const` set (each value's canonical JSON) and the property names an object may write next. A matcher
 * state holds only a node number, so branching a state costs nothing.
 *
 * @module
 */

/**
 * Byte strings in a trie; node 0 is the root. Each string's end node carries the value given with it,
 * so a caller learns which string it finished (which property, which literal).
 *
 * @example
 * ```ts
 * const enc = (s: string) => new TextEncoder().encode(s);
 * const t = new ByteTrie([[enc("ab"), 0], [enc("a"), 1]]);
 * const a = t.next(0, 0x61); // after "a"
 * t.value(a); // 1 ("a" ends here)
 * t.value(t.next(a, 0x62)); // 0
 * ```
 */
export class ByteTrie {
  // One Map per node: tries here are small (tens to hundreds of nodes) and stepped one byte at a time.
  private readonly edges: Map<number, number>[] = [new Map()];
  private readonly values: number[] = [-1];

  /** @param entries (bytes, value >= 0) pairs; a repeated string keeps its first value */
  constructor(entries: Iterable<readonly [Uint8Array, number]>) {
    for (const [bytes, value] of entries) {
      let node = 0;
      for (const b of bytes) {
        let next = this.edges[node].get(b);
        if (next === undefined) {
          next = this.edges.length;
          this.edges.push(new Map());
          this.values.push(-1);
          this.edges[node].set(b, next);
        }
        node = next;
      }
      if (this.values[node] < 0) this.values[node] = value;
    }
  }

  /** The node after `byte` from `node`, or -1 when no string continues that way. */
  next(node: number, byte: number): number {
    return this.edges[node].get(byte) ?? -1;
  }

  /** The value of the string that ends at `node`, or -1. */
  value(node: number): number {
    return this.values[node];
  }

  /** True when some string continues past `node`. */
  hasChildren(node: number): boolean {
    return this.edges[node].size > 0;
  }
}
