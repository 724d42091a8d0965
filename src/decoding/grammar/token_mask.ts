/**
 * Which tokens may come next in a grammar state: a depth-first walk of the vocabulary's byte trie that
 * carries the matcher state down each edge and prunes a subtree at the first byte the grammar refuses,
 * so the cost is the number of trie nodes whose prefix the grammar still accepts (inside a string that
 * is most of the trie; after a number, a handful), not vocabulary x token length.
 *
 * EOS ids are allowed exactly when the matcher says the value is complete; a complete object, array,
 * string or literal accepts no further byte, so there EOS is the only token allowed.
 *
 * Masks are memoized by the matcher's `key(state)` in an LRU: the states a JSON reply goes through
 * repeat (inside any string, after any value of one property), so most tokens reuse a mask.
 *
 * @module
 */

import { GRAMMAR_DEFAULTS } from "./json_matcher.ts";
import type { TokenTrie } from "./token_trie.ts";

/** What the mask needs of a byte automaton (immutable states). */
export interface ByteMatcher<S> {
  step(state: S, byte: number): S | undefined;
  isComplete(state: S): boolean;
  key(state: S): string;
}

/**
 * A set of allowed token ids over a vocabulary of `size` ids, one bit each (bit `id & 31` of word
 * `id >> 5`). Shared between callers: never modify one.
 */
export type TokenMask = Uint32Array;

/** True when `id` is in `mask`. */
export function allows(mask: TokenMask, id: number): boolean {
  return (mask[id >>> 5] >>> (id & 31) & 1) === 1;
}

/** Counters of a {@link TokenMasker}, for tests and the bench. */
export interface MaskStats {
  /** Masks computed by walking the trie. */
  computed: number;
  /** Masks returned from the cache. */
  cached: number;
  /** Grammar steps taken by the walks. */
  steps: number;
}

/**
 * Token masks of one grammar over one vocabulary, memoized.
 *
 * @example
 * ```ts
 * const masker = new TokenMasker(compileGrammar({ kind: "json_object" }), TokenTrie.of(vocab));
 * const mask = masker.mask(matcher.initial()); // "{" and the tokens that start with it (and whitespace)
 * ```
 */
export class TokenMasker<S> {
  private readonly cache = new Map<string, TokenMask>();
  private readonly words: number;
  private readonly capacity: number;
  readonly stats: MaskStats = { computed: 0, cached: 0, steps: 0 };

  /** @param options.cacheSize masks kept (least recently used dropped first) */
  constructor(
    private readonly matcher: ByteMatcher<S>,
    private readonly trie: TokenTrie,
    options: { cacheSize?: number } = {},
  ) {
    this.words = (trie.vocab.size + 31) >>> 5;
    this.capacity = options.cacheSize ?? GRAMMAR_DEFAULTS.maskCacheSize;
    for (const id of trie.vocab.eosIds) {
      if (!Number.isInteger(id) || id < 0 || id >= trie.vocab.size) {
        throw new RangeError(`EOS id ${id} is outside the vocabulary of ${trie.vocab.size} ids`);
      }
    }
    if (trie.vocab.eosIds.length === 0) {
      throw new RangeError("a grammar needs an EOS id to end the text, the vocabulary has none");
    }
  }

  /** The tokens allowed in `state` (memoized; do not modify the result). */
  mask(state: S): TokenMask {
    const key = this.matcher.key(state);
    const hit = this.cache.get(key);
    if (hit) {
      // Map keeps insertion order: re-inserting makes this the most recently used entry.
      this.cache.delete(key);
      this.cache.set(key, hit);
      this.stats.cached++;
      return hit;
    }
    const mask = this.compute(state);
    this.cache.set(key, mask);
    if (this.cache.size > this.capacity) this.cache.delete(this.cache.keys().next().value!);
    return mask;
  }

  /** The mask of `state` by walking the trie (no cache). */
  compute(state: S): TokenMask {
    const bits = new Uint32Array(this.words);
    this.stats.computed++;
    this.walk(0, state, bits);
    if (this.matcher.isComplete(state)) {
      for (const id of this.trie.vocab.eosIds) bits[id >>> 5] |= 1 << (id & 31);
    }
    return bits;
  }

  /** Mark every token under trie node `node` whose remaining bytes the grammar accepts from `state`. */
  private walk(node: number, state: S, bits: Uint32Array): void {
    const { childStart, childByte, childNode, tokenStart, tokenIds } = this.trie;
    const end = childStart[node + 1];
    for (let e = childStart[node]; e < end; e++) {
      const next = this.matcher.step(state, childByte[e]);
      this.stats.steps++;
      if (next === undefined) continue;
      const child = childNode[e];
      for (let t = tokenStart[child]; t < tokenStart[child + 1]; t++) {
        const id = tokenIds[t];
        bits[id >>> 5] |= 1 << (id & 31);
      }
      if (childStart[child] < childStart[child + 1]) this.walk(child, next, bits);
    }
  }
}
