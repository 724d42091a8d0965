/**
 * The CPU twin of the device verifier (shaders/tree_verify.wgsl): the same exact rules, fed a fixed
 * list of uniforms in the order the CPU verifiers draw them (one per draw: greedy none, match one per
 * visited node, the rejection rules one per child tried plus one for the bonus). A step needs at most
 * n uniforms for an n-node tree: each non-root node is tried at most once, and one bonus is drawn.
 *
 * @module
 */

import { ReplayUniforms } from "../../util/rng.ts";
import type { NodeDistributions, VerifierKind, VerifyResult, VerifyTree } from "./verifier.ts";
import { VERIFIERS } from "./registry.ts";

/** Uniforms a device step reserves for an n-node tree (an upper bound of what any rule draws). */
export function uniformsPerStep(n: number): number {
  return n;
}

/** Verify `tree` with `rule` drawing `uniforms` in order; also how many were drawn. */
export function verifyWithUniforms(
  rule: VerifierKind,
  tree: VerifyTree,
  d: NodeDistributions,
  uniforms: ArrayLike<number>,
): VerifyResult & { used: number } {
  const src = new ReplayUniforms(uniforms);
  const r = VERIFIERS[rule].verify(tree, d, src);
  return { ...r, used: src.used };
}
