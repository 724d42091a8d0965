/**
 * The verification seam: a {@link Verifier} walks a drafted tree from the root against the target's
 * distributions and returns the accepted path plus one bonus token drawn from the target, so every
 * step emits >= 1 token. The engine knows only this interface and the registry below; how a rule
 * accepts is each implementation's business (matching.ts: greedy and SpecExec's match rule;
 * rejection.ts: Sequoia's SWOR rule and SpecInfer's).
 *
 * Exactness contract (ALGORITHMS.md section 3): each verifier is exact only for trees drawn a certain
 * way; {@link checkPairing} refuses every other combination (e.g. deterministic top-k children with the
 * min(1, p/q) rule, which is biased).
 *
 * @module
 */

import type { UniformSource } from "../../util/rng.ts";

/** How a drafter chose each node's children. */
export type DrafterKind = "chain" | "specinfer" | "sequoia" | "specexec" | "lookup";
/** A verification rule. */
export type VerifierKind = "greedy" | "match" | "swor" | "specinfer";

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

/** What a verifier may ask about node v (computed lazily by the engine; each rule asks only for its own). */
export interface NodeDistributions {
  /** Index of the target's largest logit at v (greedy). */
  argmax(v: number): number;
  /** The target distribution at v after the sampling transforms (temperature, top-k, top-p). */
  p(v: number): ArrayLike<number>;
  /** The draft distribution v's children were drawn from (rejection rules only). */
  q(v: number): ArrayLike<number>;
}

/** One exact verification rule. */
export interface Verifier {
  readonly kind: VerifierKind;
  /** Whether the rule reads the draft's q (the engine then has the drafter keep or read them back). */
  readonly needsQ: boolean;
  /** Walk `tree` from the root; draws from `rng` only as the rule prescribes. */
  verify(tree: VerifyTree, d: NodeDistributions, rng: UniformSource): VerifyResult;
}

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
  // children copied from earlier text (n-gram / suffix matches): a function of the context, never drawn
  // from a q; the match rule is exact for them, the min(1, p/q) rules have no q to use.
  lookup: ["greedy", "match"],
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
