/**
 * Multi-draft rejection sampling (Sequoia's SWOR rule for children drawn without replacement,
 * SpecInfer's rule for i.i.d. children): exact for trees whose children were drawn from the draft's q
 * the way the rule assumes (see the pairing table in verifier.ts).
 *
 * @module
 */

import { sampleFrom } from "../../model/sampling.ts";
import type { UniformSource } from "../../util/rng.ts";
import type { Verifier, VerifyResult, VerifyTree } from "./verifier.ts";

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
  rng: UniformSource,
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
  rng: UniformSource,
): VerifyResult {
  return verifyRejection(tree, p, q, rng, true);
}

/** SpecInfer's rule for children drawn i.i.d. (with replacement) from q. */
export function verifySpecInfer(
  tree: VerifyTree,
  p: (node: number) => ArrayLike<number>,
  q: (node: number) => ArrayLike<number>,
  rng: UniformSource,
): VerifyResult {
  return verifyRejection(tree, p, q, rng, false);
}

/** {@link verifySwor} behind the {@link Verifier} interface. */
export const SWOR_VERIFIER: Verifier = {
  kind: "swor",
  needsQ: true,
  verify: (tree, d, rng) => verifySwor(tree, d.p, d.q, rng),
};

/** {@link verifySpecInfer} behind the {@link Verifier} interface. */
export const SPECINFER_VERIFIER: Verifier = {
  kind: "specinfer",
  needsQ: true,
  verify: (tree, d, rng) => verifySpecInfer(tree, d.p, d.q, rng),
};
