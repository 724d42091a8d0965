/**
 * Drawing a node's children from the draft distribution q: without replacement (Sequoia), i.i.d.
 * (SpecInfer), or deterministically (top-b at temperature 0, SpecExec's best-first children).
 *
 * @module
 */

import type { Rng } from "../util/rng.ts";

/**
 * `b` distinct tokens drawn from q without replacement, in draw order: the exponential race — key_i =
 * log(u_i) / q_i, the largest key is the first draw, the next largest the second, ... (equivalent to
 * sequential sampling with renormalisation). Fewer than b when q has fewer non-zero entries.
 */
export function drawWithoutReplacement(q: ArrayLike<number>, b: number, rng: Rng): number[] {
  const keys: { i: number; k: number }[] = [];
  for (let i = 0; i < q.length; i++) {
    if (q[i] <= 0) continue;
    const u = rng.next() || Number.MIN_VALUE;
    const k = Math.log(u) / q[i];
    if (keys.length < b) {
      keys.push({ i, k });
      if (keys.length === b) keys.sort((x, y) => y.k - x.k);
    } else if (k > keys[b - 1].k) {
      // insert in order (b is small)
      let j = b - 1;
      while (j > 0 && keys[j - 1].k < k) {
        keys[j] = keys[j - 1];
        j--;
      }
      keys[j] = { i, k };
    }
  }
  if (keys.length < b) keys.sort((x, y) => y.k - x.k);
  return keys.map((x) => x.i);
}

/** `b` tokens drawn i.i.d. from q (repeats possible). */
export function drawIid(q: ArrayLike<number>, b: number, rng: Rng): number[] {
  const out: number[] = [];
  for (let j = 0; j < b; j++) {
    const u = rng.next();
    let acc = 0, pick = -1;
    for (let i = 0; i < q.length; i++) {
      if (q[i] <= 0) continue;
      acc += q[i];
      pick = i;
      if (u < acc) break;
    }
    out.push(pick);
  }
  return out;
}

/** The `b` largest entries of `x` (indices, descending; ties by index). */
export function topIndices(x: ArrayLike<number>, b: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < x.length; i++) {
    if (best.length < b || x[i] > x[best[best.length - 1]]) {
      let j = best.length < b ? best.length : b - 1;
      if (best.length < b) best.push(i);
      while (j > 0 && x[best[j - 1]] < x[i]) {
        best[j] = best[j - 1];
        j--;
      }
      best[j] = i;
    }
  }
  return best;
}

/**
 * The `b` largest finite entries of `x` (indices, descending; ties by index), fewer when fewer are finite:
 * a -Infinity logit (forbidden by a processor, or outside a pruned draft's vocabulary) has q = 0 and is
 * never a child.
 */
export function topFinite(x: ArrayLike<number>, b: number): number[] {
  return topIndices(x, b).filter((i) => x[i] > -Infinity);
}
