/**
 * A byte trie of a vocabulary's tokens, built once per vocabulary and shared by every grammar over it:
 * the token mask walks it depth-first, so a byte prefix shared by many tokens ("Ġthe", "Ġthere", ...)
 * is stepped through the grammar once, not once per token.
 *
 * Layout (compressed sparse rows, nodes numbered depth-first, root 0):
 *   childStart (nodes + 1)   node n's edges are childStart[n] .. childStart[n + 1] - 1
 *   childByte  (edges)       the byte on each edge, ascending within a node
 *   childNode  (edges)       the node it leads to
 *   tokenStart (nodes + 1)   the tokens whose bytes end exactly at node n: tokenIds[tokenStart[n] ..]
 *   tokenIds   (tokens)      (several ids may share bytes, e.g. SentencePiece's "▁" and "<0x20>")
 *
 * @module
 */

import type { TokenVocabulary } from "../logits/processor.ts";

/** The byte trie of a vocabulary's non-special, non-empty tokens. */
export class TokenTrie {
  readonly childStart: Int32Array;
  readonly childByte: Uint8Array;
  readonly childNode: Int32Array;
  readonly tokenStart: Int32Array;
  readonly tokenIds: Int32Array;
  /** Number of trie nodes (the root included). */
  readonly nodes: number;

  private constructor(readonly vocab: TokenVocabulary, build: Built) {
    this.childStart = build.childStart;
    this.childByte = build.childByte;
    this.childNode = build.childNode;
    this.tokenStart = build.tokenStart;
    this.tokenIds = build.tokenIds;
    this.nodes = build.childStart.length - 1;
  }

  /**
   * The trie of `vocab` (cached: one per vocabulary object). Special tokens (no bytes) and tokens with
   * zero bytes are left out: an empty token would be allowed in every state and change nothing.
   *
   * @example
   * ```ts
   * const trie = TokenTrie.of(vocab);
   * trie.nodes; // 100,298 for SmolLM2's 49,152 tokens
   * ```
   */
  static of(vocab: TokenVocabulary): TokenTrie {
    let trie = CACHE.get(vocab);
    if (!trie) {
      trie = new TokenTrie(vocab, build(vocab));
      CACHE.set(vocab, trie);
    }
    return trie;
  }
}

const CACHE = new WeakMap<TokenVocabulary, TokenTrie>();

interface Built {
  childStart: Int32Array;
  childByte: Uint8Array;
  childNode: Int32Array;
  tokenStart: Int32Array;
  tokenIds: Int32Array;
}

/** Lexicographic order of byte strings (a prefix first). */
function compareBytes(x: Uint8Array, y: Uint8Array): number {
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/**
 * Build from the tokens in lexicographic order: that order visits the trie depth-first, so each token
 * adds nodes only below its longest common prefix with the previous one, and nodes are numbered in
 * preorder as they appear. Typed arrays throughout (a Map per node made this 5x slower: ~100k nodes).
 */
function build(vocab: TokenVocabulary): Built {
  const entries: { id: number; bytes: Uint8Array }[] = [];
  let total = 0;
  for (let id = 0; id < vocab.size; id++) {
    const bytes = vocab.bytes(id);
    if (bytes === undefined || bytes.length === 0) continue;
    entries.push({ id, bytes });
    total += bytes.length;
  }
  entries.sort((x, y) => compareBytes(x.bytes, y.bytes) || x.id - y.id);
  const parent = new Int32Array(total + 1).fill(-1);
  const byte = new Uint8Array(total + 1);
  const tokenNode = new Int32Array(entries.length);
  const path = [0]; // path[d] = node at depth d of the previous token
  let nodes = 1;
  let prev: Uint8Array = new Uint8Array();
  entries.forEach(({ bytes }, i) => {
    let lcp = 0;
    while (lcp < bytes.length && lcp < prev.length && bytes[lcp] === prev[lcp]) lcp++;
    path.length = lcp + 1;
    for (let d = lcp; d < bytes.length; d++) {
      parent[nodes] = path[d];
      byte[nodes] = bytes[d];
      path.push(nodes++);
    }
    tokenNode[i] = path[bytes.length];
    prev = bytes;
  });
  // Rows: count, prefix-sum, fill. Children appear in increasing node number, which is increasing byte.
  const childStart = new Int32Array(nodes + 1);
  for (let n = 1; n < nodes; n++) childStart[parent[n] + 1]++;
  for (let n = 0; n < nodes; n++) childStart[n + 1] += childStart[n];
  const childByte = new Uint8Array(nodes - 1);
  const childNode = new Int32Array(nodes - 1);
  const fill = childStart.slice(0, nodes);
  for (let n = 1; n < nodes; n++) {
    const e = fill[parent[n]]++;
    childByte[e] = byte[n];
    childNode[e] = n;
  }
  const tokenStart = new Int32Array(nodes + 1);
  for (const n of tokenNode) tokenStart[n + 1]++;
  for (let n = 0; n < nodes; n++) tokenStart[n + 1] += tokenStart[n];
  const tokenIds = new Int32Array(entries.length);
  const at = tokenStart.slice(0, nodes);
  entries.forEach(({ id }, i) => tokenIds[at[tokenNode[i]]++] = id);
  return { childStart, childByte, childNode, tokenStart, tokenIds };
}
