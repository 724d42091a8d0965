/**
 * Tree verifiers: walk a drafted tree from the root against the target's distributions and return the
 * accepted path plus one bonus token drawn from the target, so every step emits >= 1 token.
 *
 * Exactness contract (ALGORITHMS.md section 3): each verifier is exact only for trees drawn a certain
 * way; {@link checkPairing} refuses every other combination (e.g. deterministic top-k children with the
 * min(1, p/q) rule, which is biased).
 *
 * @module
 */

import { argmax, sampleFrom } from "../../model/sampling.ts";
import type { Rng } from "../../util/rng.ts";

/** How a drafter chose each node's children. */
export type DrafterKind = "chain" | "specinfer" | "sequoia" | "specexec";
/** A verification rule. */
export type VerifierKind = "greedy" | "match" | "swor" | "specinfer";

/** Verifiers that are exact for trees built by each drafter (greedy: temperature 0 only). */
export const EXACT_PAIRINGS: Readonly<Record<DrafterKind, readonly VerifierKind[]>> = {
  // A chain draws one child per node from q: SWOR and SpecInfer coincide there.
  chain: ["greedy", "specinfer", "swor", "match"],
  // i.i.d. children from q (with replacement): the SpecInfer rule, or match.
  specinfer: ["greedy", "specinfer", "match"],
  // children drawn from q without replacement: the SWOR rule, or match.
  sequoia: ["greedy", "swor", "match"],
  // deterministic best-first children: only the match rule is exact (any tree built without the target).
  specexec: ["greedy", "match"],
};

/** Throw unless `verifier` is exact for trees from `drafter` at `temperature`. */
export function checkPairing(drafter: DrafterKind, verifier: VerifierKind, temperature: number): void {
  if (verifier === "greedy" && temperature !== 0) {
    throw new RangeError(
      `verifier "greedy" is exact only at temperature 0 (got ${temperature}); use "${
        EXACT_PAIRINGS[drafter][1]
      }"`,
    );
  }
  if (!EXACT_PAIRINGS[drafter].includes(verifier)) {
    throw new RangeError(
      `verifier "${verifier}" is not exact for "${drafter}" trees (exact: ${
        EXACT_PAIRINGS[drafter].join(", ")
      }); ` +
        `refusing a biased pairing`,
    );
  }
}

/** A tree to verify: tokens per node and each node's children in draw order. */
export interface VerifyTree {
  tokens: ArrayLike<number>;
  children: number[][];
}

/** Result of walking one tree. */
export interface VerifyResult {
  /** Accepted nodes on the path from the root (root excluded), in order. */
  accepted: number[];
  /** Token drawn from the target after the last accepted node. */
  bonus: number;
  /**
   * Every visited node that had children: [children, rank of the accepted child (1-based, draw
   * order) or 0 if none] — the raw material of an online acceptance-vector estimate.
   */
  visits: [number, number][];
}

/** Greedy (T = 0): accept the child equal to the target's argmax; bonus = argmax at the last node. */
export function verifyGreedy(tree: VerifyTree, targetArgmax: (node: number) => number): VerifyResult {
  return walkMatching(tree, targetArgmax);
}

/** Walk accepting the child whose token equals pick(v) (greedy: argmax; match rule: a sample). */
function walkMatching(tree: VerifyTree, pick: (node: number) => number): VerifyResult {
  const accepted: number[] = [];
  const visits: [number, number][] = [];
  let v = 0;
  for (;;) {
    const t = pick(v);
    const kids = tree.children[v];
    const k = kids.findIndex((c) => tree.tokens[c] === t);
    if (kids.length) visits.push([kids.length, k + 1]);
    if (k < 0) return { accepted, bonus: t, visits };
    accepted.push(kids[k]);
    v = kids[k];
  }
}

/** Match rule (SpecExec): s ~ p_v; accept the child whose token is s; bonus = s at the last node. */
export function verifyMatch(
  tree: VerifyTree,
  p: (node: number) => ArrayLike<number>,
  rng: Rng,
): VerifyResult {
  return walkMatching(tree, (v) => sampleFrom(p(v), rng));
}

/**
 * Multi-draft rejection sampling. At node v with children x_1..x_b in draw order: r ~ U(0, 1); accept
 * x if r * q[x] <= p[x] (probability min(1, p/q)), else p <- normalize(max(p - q, 0)) and, for
 * children drawn WITHOUT replacement (SWOR, Sequoia), q[x] <- 0 and renormalize q; for i.i.d. children
 * (SpecInfer) q stays. No child accepted: bonus ~ residual p. At a leaf: bonus ~ p_v.
 */
function verifyRejection(
  tree: VerifyTree,
  p: (node: number) => ArrayLike<number>,
  q: (node: number) => ArrayLike<number>,
  rng: Rng,
  withoutReplacement: boolean,
): VerifyResult {
  const accepted: number[] = [];
  const visits: [number, number][] = [];
  let v = 0;
  for (;;) {
    const kids = tree.children[v];
    if (kids.length === 0) return { accepted, bonus: sampleFrom(p(v), rng), visits };
    let pr = Float64Array.from(p(v));
    let qr = Float64Array.from(q(v));
    let next = -1;
    for (const c of kids) {
      const x = tree.tokens[c];
      const r = rng.next();
      if (r * qr[x] < pr[x] || (qr[x] === 0 && pr[x] > 0)) {
        next = c;
        break;
      }
      // Rejected: residual p = max(p - q, 0) normalised.
      let z = 0;
      const res = new Float64Array(pr.length);
      for (let i = 0; i < pr.length; i++) {
        const d = pr[i] - qr[i];
        if (d > 0) {
          res[i] = d;
          z += d;
        }
      }
      if (z > 0) {
        for (let i = 0; i < res.length; i++) res[i] /= z;
        pr = res;
      }
      if (withoutReplacement) {
        const qz = 1 - qr[x];
        qr[x] = 0;
        if (qz > 0) { for (let i = 0; i < qr.length; i++) qr[i] /= qz; }
        else qr = new Float64Array(qr.length);
      }
    }
    visits.push([kids.length, next < 0 ? 0 : kids.indexOf(next) + 1]);
    if (next < 0) return { accepted, bonus: sampleFrom(pr, rng), visits };
    accepted.push(next);
    v = next;
  }
}

/** Sequoia's rule for children drawn without replacement from q (exact; robust across temperatures). */
export function verifySwor(
  tree: VerifyTree,
  p: (node: number) => ArrayLike<number>,
  q: (node: number) => ArrayLike<number>,
  rng: Rng,
): VerifyResult {
  return verifyRejection(tree, p, q, rng, true);
}

/** SpecInfer's rule for children drawn i.i.d. (with replacement) from q. */
export function verifySpecInfer(
  tree: VerifyTree,
  p: (node: number) => ArrayLike<number>,
  q: (node: number) => ArrayLike<number>,
  rng: Rng,
): VerifyResult {
  return verifyRejection(tree, p, q, rng, false);
}

/** Convenience for tests: the greedy verifier over explicit target distributions. */
export function greedyFromDistributions(
  tree: VerifyTree,
  p: (node: number) => ArrayLike<number>,
): VerifyResult {
  return verifyGreedy(tree, (v) => argmax(p(v)));
}
