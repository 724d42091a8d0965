/**
 * The Sequoia planner (Chen et al. 2024, section 3.1): dynamic programming over tree size, depth and
 * root fan-out giving G(n, d), the best expected tokens per step of any tree with n nodes and at most d
 * levels, for a positional acceptance vector p_1..p_W (p_k: probability that the k-th drawn child of a
 * node is the accepted one), and the tree that achieves it.
 *
 *   T[1][l][0] = 1
 *   T[m][l][1] = 1 + p_1 * G[m-1][l-1]
 *   T[m][l][b] = max_{y} T[y][l][b-1] + p_b * G[m-y][l-1]     (b >= 2)
 *   G[m][l]    = max_b T[m][l][b]
 *
 * Cost O(M^2 * D * W) multiply-adds in typed arrays.
 *
 * @module
 */

import type { TreeShape } from "./tree.ts";

/** The solved tables. */
export interface SequoiaPlan {
  /** Acceptance vector used (length W). */
  acceptance: Float64Array;
  maxNodes: number;
  maxDepth: number;
  /** Exact-size optimum for n in [1, maxNodes], d in [1, maxDepth]: index (d - 1) * (maxNodes + 1) + n. */
  g: Float64Array;
  /** G(n, d) = max over sizes m <= n of g(m, d) (extra nodes become zero-value padding), same indexing. */
  best: Float64Array;
  /** The size m achieving best(n, d). */
  bestSize: Int32Array;
  /** Best root fan-out for (n, d), same indexing. */
  bestB: Int16Array;
  /** choice[(l - 1, b, m)]: the split y of T[m][l][b] (nodes in the first b-1 children's tree). */
  choice: Int16Array;
}

const NEG = -Infinity;

/**
 * Solve the DP for trees of up to `maxNodes` nodes (root included) and `maxDepth` levels (root = level 1).
 * @param acceptance p_1..p_W, non-negative, sum <= 1 (p_reject excluded)
 */
export function planSequoia(acceptance: ArrayLike<number>, maxNodes: number, maxDepth: number): SequoiaPlan {
  const W = acceptance.length;
  if (W < 1) throw new RangeError("planSequoia: empty acceptance vector");
  let sum = 0;
  for (let k = 0; k < W; k++) {
    if (!(acceptance[k] >= 0)) {
      throw new RangeError(`planSequoia: acceptance[${k}] = ${acceptance[k]} must be >= 0`);
    }
    sum += acceptance[k];
  }
  if (sum > 1 + 1e-9) throw new RangeError(`planSequoia: acceptance sums to ${sum} > 1`);
  if (!Number.isInteger(maxNodes) || maxNodes < 1 || maxNodes > 4096) {
    throw new RangeError(`planSequoia: maxNodes ${maxNodes} outside [1, 4096]`);
  }
  if (!Number.isInteger(maxDepth) || maxDepth < 1 || maxDepth > 256) {
    throw new RangeError(`planSequoia: maxDepth ${maxDepth} outside [1, 256]`);
  }
  const M = maxNodes, D = maxDepth;
  const p = Float64Array.from(acceptance);
  const g = new Float64Array((M + 1) * D).fill(NEG);
  const bestB = new Int16Array((M + 1) * D);
  const choice = new Int16Array(D * (W + 1) * (M + 1));
  // T for the current level count l: (W + 1) rows of (M + 1).
  const T = new Float64Array((W + 1) * (M + 1));
  const gPrev = new Float64Array(M + 1).fill(NEG); // G[.][l - 1]
  for (let l = 1; l <= D; l++) {
    T.fill(NEG);
    T[0 * (M + 1) + 1] = 1;
    if (l > 1) {
      const p1 = p[0];
      for (let m = 2; m <= M; m++) if (gPrev[m - 1] > NEG) T[1 * (M + 1) + m] = 1 + p1 * gPrev[m - 1];
      for (let b = 2; b <= W && b < M; b++) {
        const pb = p[b - 1];
        const prev = (b - 1) * (M + 1), cur = b * (M + 1);
        const cbase = ((l - 1) * (W + 1) + b) * (M + 1);
        for (let m = b + 1; m <= M; m++) {
          let best = NEG, arg = 0;
          // y >= b: the first b-1 children plus the root need at least b nodes; m - y >= 1.
          for (let y = b; y < m; y++) {
            const a = T[prev + y];
            if (a === NEG) continue;
            const v = a + pb * gPrev[m - y];
            if (v > best) {
              best = v;
              arg = y;
            }
          }
          T[cur + m] = best;
          choice[cbase + m] = arg;
        }
      }
      // record b = 1 choices too (y = 1: the root alone)
      for (let m = 2; m <= M; m++) choice[((l - 1) * (W + 1) + 1) * (M + 1) + m] = 1;
    }
    const gl = (l - 1) * (M + 1);
    for (let m = 1; m <= M; m++) {
      let best = NEG, arg = 0;
      for (let b = 0; b <= W; b++) {
        const v = T[b * (M + 1) + m];
        if (v > best + 1e-12) {
          best = v;
          arg = b;
        }
      }
      g[gl + m] = best;
      bestB[gl + m] = arg;
    }
    gPrev.set(g.subarray(gl, gl + M + 1));
  }
  // Budgets the exact DP cannot fill (a node has at most W ranked children) are padded: G(n, d) is
  // the best over sizes <= n, and the spare nodes become extra children of zero modelled value.
  const best = new Float64Array(g.length).fill(NEG);
  const bestSize = new Int32Array(g.length);
  for (let l = 1; l <= D; l++) {
    const base = (l - 1) * (M + 1);
    for (let m = 1; m <= M; m++) {
      const i = base + m;
      if (m > 1 && l > 1 && best[i - 1] >= g[i]) {
        best[i] = best[i - 1];
        bestSize[i] = bestSize[i - 1];
      } else {
        best[i] = g[i];
        bestSize[i] = m;
      }
    }
  }
  return { acceptance: p, maxNodes: M, maxDepth: D, g, best, bestSize, bestB, choice };
}

/**
 * G(n, d): best expected tokens per step (accepted + bonus) of a tree with n nodes and at most d levels;
 * -Infinity where no such tree exists (n > 1 with d = 1).
 */
export function expectedTokens(plan: SequoiaPlan, n: number, d: number): number {
  if (n < 1 || n > plan.maxNodes || d < 1 || d > plan.maxDepth) {
    throw new RangeError(`G(${n}, ${d}) outside the plan's [1, ${plan.maxNodes}] x [1, ${plan.maxDepth}]`);
  }
  return plan.best[(d - 1) * (plan.maxNodes + 1) + n];
}

/**
 * The optimal tree for (n, d) as a shape, numbered breadth-first with each node's children in draw
 * order (child k is the k-th drawn, accepted with probability p_k).
 */
export function materialize(plan: SequoiaPlan, n: number, d: number): TreeShape {
  if (expectedTokens(plan, n, d) === -Infinity) {
    throw new RangeError(`no tree of ${n} nodes fits in ${d} level${d === 1 ? "" : "s"}`);
  }
  const M = plan.maxNodes, W = plan.acceptance.length;
  // Build as nested child lists first, then renumber breadth-first.
  interface Node {
    children: Node[];
  }
  const build = (m: number, l: number, b: number): Node => {
    // A tree of m nodes, <= l levels, root fan-out exactly b.
    if (b === 0) return { children: [] };
    const y = plan.choice[((l - 1) * (W + 1) + b) * (M + 1) + m];
    const left = build(y, l, b - 1); // root + first b-1 children
    const rest = m - y;
    const last = build(rest, l - 1, plan.bestB[(l - 2) * (M + 1) + rest]);
    left.children.push(last);
    return left;
  };
  const size = plan.bestSize[(d - 1) * (M + 1) + n];
  const root = build(size, d, plan.bestB[(d - 1) * (M + 1) + size]);
  const parent: number[] = [-1], depth: number[] = [0];
  const queue: { node: Node; index: number }[] = [{ node: root, index: 0 }];
  for (let q = 0; q < queue.length; q++) {
    const { node, index } = queue[q];
    for (const c of node.children) {
      const i = parent.length;
      parent.push(index);
      depth.push(depth[index] + 1);
      queue.push({ node: c, index: i });
    }
  }
  // Padding: the spare n - size nodes go, one per node, to the nodes most likely to be reached among
  // those that may still have children (depth <= d - 2), as their last-drawn children.
  if (n > size) {
    const shape = { parent: Int32Array.from(parent), depth: Int32Array.from(depth) };
    const reach = reachProbabilities(shape, plan.acceptance);
    const hosts = [...parent.keys()].filter((i) => depth[i] <= d - 2).sort((a, b) =>
      reach[b] - reach[a] || a - b
    );
    const extra: number[] = [];
    for (let k = 0; k < n - size; k++) extra.push(hosts[k % hosts.length]);
    // Re-number breadth-first: rebuild child lists with the padding appended to each host's children.
    const kids: number[][] = Array.from({ length: parent.length }, () => []);
    for (let i = 1; i < parent.length; i++) kids[parent[i]].push(i);
    let next = parent.length;
    for (const h of extra) {
      kids[h].push(next);
      kids.push([]);
      next++;
    }
    const p2: number[] = [-1], d2: number[] = [0];
    const order = [0];
    for (let q = 0; q < order.length; q++) {
      const old = order[q];
      for (const c of kids[old]) {
        p2.push(q);
        d2.push(d2[q] + 1);
        order.push(c);
      }
    }
    return { parent: Int32Array.from(p2), depth: Int32Array.from(d2) };
  }
  return { parent: Int32Array.from(parent), depth: Int32Array.from(depth) };
}

/** Probability of reaching each node (product of p_rank along its path; 0 beyond the vector). */
function reachProbabilities(shape: TreeShape, acceptance: ArrayLike<number>): Float64Array {
  const n = shape.parent.length;
  const reach = new Float64Array(n);
  const seen = new Int32Array(n);
  reach[0] = 1;
  for (let i = 1; i < n; i++) {
    const par = shape.parent[i];
    const rank = ++seen[par];
    reach[i] = reach[par] * (rank <= acceptance.length ? acceptance[rank - 1] : 0);
  }
  return reach;
}

/**
 * Expected tokens per step of any shape under the acceptance vector: 1 (the bonus) + the sum over
 * non-root nodes of the product of p_rank along the path (rank = position among siblings, 1-based).
 */
export function shapeValue(shape: TreeShape, acceptance: ArrayLike<number>): number {
  return reachProbabilities(shape, acceptance).reduce((a, b) => a + b, 0);
}
