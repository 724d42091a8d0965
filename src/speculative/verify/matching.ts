/**
 * Verifiers that accept the child whose token equals one token picked from the target at each node:
 * greedy (the argmax; exact at temperature 0 for any tree) and SpecExec's match rule (a sample s ~ p_v;
 * exact for any tree built without looking at the target, however its children were chosen).
 *
 * @module
 */

import { argmax, sampleFrom } from "../../model/sampling.ts";
import type { UniformSource } from "../../util/rng.ts";
import type { Verifier, VerifyResult, VerifyTree } from "./verifier.ts";

/** Walk accepting the child whose token equals pick(v); the bonus is pick(v) at the last node. */
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

/** Greedy (T = 0): accept the child equal to the target's argmax; bonus = argmax at the last node. */
export function verifyGreedy(tree: VerifyTree, targetArgmax: (node: number) => number): VerifyResult {
  return walkMatching(tree, targetArgmax);
}

/** Match rule (SpecExec): s ~ p_v; accept the child whose token is s; bonus = s at the last node. */
export function verifyMatch(
  tree: VerifyTree,
  p: (node: number) => ArrayLike<number>,
  rng: UniformSource,
): VerifyResult {
  return walkMatching(tree, (v) => sampleFrom(p(v), rng));
}

/** Convenience for tests: the greedy verifier over explicit target distributions. */
export function greedyFromDistributions(
  tree: VerifyTree,
  p: (node: number) => ArrayLike<number>,
): VerifyResult {
  return verifyGreedy(tree, (v) => argmax(p(v)));
}

/** {@link verifyGreedy} behind the {@link Verifier} interface. */
export const GREEDY_VERIFIER: Verifier = {
  kind: "greedy",
  needsQ: false,
  verify: (tree, d) => verifyGreedy(tree, d.argmax),
};

/** {@link verifyMatch} behind the {@link Verifier} interface. */
export const MATCH_VERIFIER: Verifier = {
  kind: "match",
  needsQ: false,
  verify: (tree, d, rng) => verifyMatch(tree, d.p, rng),
};
