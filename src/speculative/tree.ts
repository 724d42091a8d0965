/**
 * Token trees as typed arrays. Node 0 is the root: the last emitted token, not yet in the KV caches.
 * Nodes are numbered so every parent precedes its children (breadth-first for planned trees); a node's
 * children are kept in draw order, which the verifiers depend on.
 *
 * @module
 */

/** A token tree (shape + tokens). */
export interface TokenTree {
  /** (n) token id per node. */
  tokens: Int32Array;
  /** (n) parent index; -1 for the root. parent[i] < i. */
  parent: Int32Array;
  /** (n) depth; root = 0. */
  depth: Int32Array;
}

/** A tree shape without tokens (what the Sequoia planner produces). */
export interface TreeShape {
  parent: Int32Array;
  depth: Int32Array;
}

/** Children of every node, each list in index order (= draw order). */
export function childrenOf(parent: Int32Array): number[][] {
  const ch: number[][] = Array.from({ length: parent.length }, () => []);
  for (let i = 1; i < parent.length; i++) ch[parent[i]].push(i);
  return ch;
}

/** Depths from parents (parent[i] < i). */
export function depthsOf(parent: Int32Array): Int32Array {
  const d = new Int32Array(parent.length);
  for (let i = 1; i < parent.length; i++) {
    if (parent[i] < 0 || parent[i] >= i) {
      throw new RangeError(`tree: node ${i} has parent ${parent[i]}, must be in [0, ${i})`);
    }
    d[i] = d[parent[i]] + 1;
  }
  return d;
}

/** Nodes on the path root -> `node` (inclusive). */
export function pathTo(parent: Int32Array, node: number): number[] {
  const p: number[] = [];
  for (let v = node; v >= 0; v = parent[v]) p.push(v);
  return p.reverse();
}

/** Greatest depth + 1 (number of levels). */
export function levels(depth: Int32Array): number {
  let m = 0;
  for (const d of depth) m = Math.max(m, d);
  return m + 1;
}

/**
 * The attention inputs for verifying `tree` after `past` cached slots: positions past + depth, and the
 * (n, past + n) ancestor mask (every row sees the whole prefix, its ancestors and itself).
 */
export function treeAttention(
  parent: Int32Array,
  depth: Int32Array,
  past: number,
): { positions: Int32Array; mask: Uint8Array } {
  const n = parent.length, w = past + n;
  const mask = new Uint8Array(n * w);
  const positions = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    mask.fill(1, i * w, i * w + past);
    // Ancestors of i are ancestors of parent[i] plus parent[i]: copy the parent's row (parent < i).
    if (parent[i] >= 0) mask.set(mask.subarray(parent[i] * w + past, parent[i] * w + past + n), i * w + past);
    mask[i * w + past + i] = 1;
    positions[i] = past + depth[i];
  }
  return { positions, mask };
}

/**
 * Attention inputs for a forward over some tree nodes `rows`, appended after `cacheLen` cached slots,
 * where earlier tree nodes already sit in the cache at slotOf[node] (-1 = not cached) and the new rows
 * go to slots cacheLen + k. Every row sees the prefix [0, prefixLen) (everything before the root),
 * its cached ancestors and itself. Positions are prefixLen + depth (the root sits at position
 * prefixLen). Used by drafters that expand a tree level by level.
 */
export function appendAttention(
  tree: { parent: Int32Array; depth: Int32Array },
  prefixLen: number,
  cacheLen: number,
  rows: ArrayLike<number>,
  slotOf: Int32Array,
): { positions: Int32Array; mask: Uint8Array } {
  const n = rows.length, w = cacheLen + n;
  const mask = new Uint8Array(n * w);
  const positions = new Int32Array(n);
  for (let k = 0; k < n; k++) {
    const r = rows[k];
    slotOf[r] = cacheLen + k;
  }
  for (let k = 0; k < n; k++) {
    const r = rows[k];
    mask.fill(1, k * w, k * w + prefixLen);
    for (let v = r; v >= 0; v = tree.parent[v]) {
      if (slotOf[v] < 0) throw new RangeError(`tree: ancestor ${v} of node ${r} is not in the cache`);
      mask[k * w + slotOf[v]] = 1;
    }
    positions[k] = prefixLen + tree.depth[r];
  }
  return { positions, mask };
}
