/**
 * The exactness contract, statistically: for synthetic target/draft distributions over a small
 * vocabulary, the token a verifier emits must be distributed exactly as the target p. Chi-square
 * against p with a threshold whose false-failure probability is < 1e-6 per check (fixed seeds, so the
 * suite is deterministic anyway); categories with p = 0 must never be emitted. The known-biased pairing
 * (deterministic top-k children with the min(1, p/q) rule) must fail the same check.
 */
import assert from "node:assert/strict";
import { probabilities, type SamplingParams } from "../src/model/sampling.ts";
import { drawIid, drawWithoutReplacement, topIndices } from "../src/speculative/draw.ts";
import { checkPairing, type VerifyTree } from "../src/speculative/verify/verifier.ts";
import { verifyMatch } from "../src/speculative/verify/matching.ts";
import { verifySpecInfer, verifySwor } from "../src/speculative/verify/rejection.ts";
import { Rng } from "../src/util/rng.ts";

const V = 10;
const N = 100_000;

/** Upper 1e-6 quantile of chi-square(df) by Wilson-Hilferty (conservative for small df). */
function chiThreshold(df: number): number {
  const z = 4.753; // P(Z > z) = 1e-6
  const a = 2 / (9 * df);
  return df * (1 - a + z * Math.sqrt(a)) ** 3;
}

/** Chi-square statistic of counts vs p; throws if a p = 0 category was emitted. Returns [chi, threshold]. */
function chiSquare(counts: number[], p: ArrayLike<number>, what: string): [number, number] {
  const n = counts.reduce((a, b) => a + b, 0);
  let chi = 0, df = -1;
  for (let i = 0; i < p.length; i++) {
    if (p[i] === 0) {
      assert.equal(counts[i], 0, `${what}: emitted token ${i} whose target probability is 0`);
      continue;
    }
    chi += (counts[i] - n * p[i]) ** 2 / (n * p[i]);
    df++;
  }
  return [chi, chiThreshold(Math.max(df, 1))];
}

function logits(seed: number, scale = 2.5): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: V }, () => (r.next() * 2 - 1) * scale);
}

type Children = "swor" | "iid" | "topk";
type Rule = "swor" | "specinfer" | "match";

/** Histogram of the first emitted token of a one-level tree (root + b children drawn from q). */
function firstTokenCounts(
  p: Float64Array,
  q: Float64Array,
  b: number,
  children: Children,
  rule: Rule,
  seed: number,
): number[] {
  const rng = new Rng(seed);
  const counts = new Array(V).fill(0);
  for (let t = 0; t < N; t++) {
    const toks = children === "swor"
      ? drawWithoutReplacement(q, b, rng)
      : children === "iid"
      ? drawIid(q, b, rng)
      : topIndices(q, b);
    const tree: VerifyTree = {
      tokens: [-1, ...toks],
      children: [toks.map((_, i) => i + 1), ...toks.map(() => [])],
    };
    const pv = () => p;
    // Leaves (children of the root) have their own p; reuse p: only the first token is counted.
    const r = rule === "match"
      ? verifyMatch(tree, pv, rng)
      : rule === "swor"
      ? verifySwor(tree, pv, () => q, rng)
      : verifySpecInfer(tree, pv, () => q, rng);
    counts[r.accepted.length ? tree.tokens[r.accepted[0]] : r.bonus]++;
  }
  return counts;
}

const SETTINGS: SamplingParams[] = [
  { temperature: 0.3, topK: 0, topP: 1 },
  { temperature: 0.7, topK: 0, topP: 1 },
  { temperature: 1.0, topK: 0, topP: 1 },
  { temperature: 1.0, topK: 5, topP: 1 },
  { temperature: 0.7, topK: 0, topP: 0.8 },
];

Deno.test("verify (statistical): SWOR rule with 1..8 children drawn without replacement emits p", () => {
  let seed = 100;
  for (const s of SETTINGS) {
    const p = probabilities(logits(1), s), q = probabilities(logits(2), s);
    for (let b = 1; b <= 8; b++) {
      const [chi, thr] = chiSquare(
        firstTokenCounts(p, q, b, "swor", "swor", seed++),
        p,
        `swor b=${b} ${JSON.stringify(s)}`,
      );
      assert.ok(
        chi < thr,
        `swor b=${b} ${JSON.stringify(s)}: chi-square ${chi.toFixed(1)} >= ${thr.toFixed(1)}`,
      );
    }
  }
});

Deno.test("verify (statistical): SpecInfer rule with i.i.d. children emits p", () => {
  let seed = 200;
  for (const s of SETTINGS) {
    const p = probabilities(logits(3), s), q = probabilities(logits(4), s);
    for (const b of [1, 2, 4, 6]) {
      const [chi, thr] = chiSquare(
        firstTokenCounts(p, q, b, "iid", "specinfer", seed++),
        p,
        `specinfer b=${b}`,
      );
      assert.ok(
        chi < thr,
        `specinfer b=${b} ${JSON.stringify(s)}: chi-square ${chi.toFixed(1)} >= ${thr.toFixed(1)}`,
      );
    }
  }
});

Deno.test("verify (statistical): match rule is exact even for deterministic top-k children", () => {
  let seed = 300;
  for (const s of SETTINGS) {
    const p = probabilities(logits(5), s), q = probabilities(logits(6), s);
    for (const b of [1, 3, 8]) {
      const [chi, thr] = chiSquare(firstTokenCounts(p, q, b, "topk", "match", seed++), p, `match b=${b}`);
      assert.ok(
        chi < thr,
        `match b=${b} ${JSON.stringify(s)}: chi-square ${chi.toFixed(1)} >= ${thr.toFixed(1)}`,
      );
    }
  }
});

Deno.test("verify (statistical): the known-biased pairing (top-k children + min(1, p/q)) is detected", () => {
  const s = { temperature: 1, topK: 0, topP: 1 };
  const p = probabilities(logits(7), s), q = probabilities(logits(8), s);
  const counts = firstTokenCounts(p, q, 3, "topk", "specinfer", 400);
  const [chi, thr] = chiSquare(counts, p, "biased");
  assert.ok(chi > thr, `the biased pairing went unnoticed: chi-square ${chi.toFixed(1)} < ${thr.toFixed(1)}`);
  // ... and the engine refuses to build it.
  assert.throws(() => checkPairing("specexec", "specinfer", 1), /not exact/);
  assert.throws(() => checkPairing("sequoia", "specinfer", 0.7), /not exact/);
  assert.throws(() => checkPairing("sequoia", "greedy", 0.7), /only at temperature 0/);
  checkPairing("sequoia", "swor", 0.7);
  checkPairing("specexec", "match", 1);
});

Deno.test("verify (statistical): two levels — the second token follows p(. | first)", () => {
  // Root children drawn without replacement; each child c has its own p_c, q_c and 3 grandchildren.
  const s = { temperature: 0.8, topK: 0, topP: 1 };
  const p0 = probabilities(logits(10), s), q0 = probabilities(logits(11), s);
  const pc = Array.from({ length: V }, (_, x) => probabilities(logits(20 + x), s));
  const qc = Array.from({ length: V }, (_, x) => probabilities(logits(40 + x), s));
  const rng = new Rng(500);
  const joint = Array.from({ length: V }, () => new Array(V).fill(0));
  for (let t = 0; t < N; t++) {
    const first = drawWithoutReplacement(q0, 3, rng);
    const tokens = [-1, ...first];
    const children: number[][] = [first.map((_, i) => i + 1)];
    const grand: number[][] = first.map((x) => drawWithoutReplacement(qc[x], 3, rng));
    grand.forEach(() => children.push([]));
    grand.forEach((g, i) => {
      for (const y of g) {
        children[i + 1].push(tokens.length);
        tokens.push(y);
        children.push([]);
      }
    });
    const tree = { tokens, children };
    const p = (v: number) => v === 0 ? p0 : pc[tokens[v]];
    const q = (v: number) => v === 0 ? q0 : qc[tokens[v]];
    const r = verifySwor(tree, p, q, rng);
    if (r.accepted.length >= 1) {
      const t1 = tokens[r.accepted[0]];
      const t2 = r.accepted.length >= 2 ? tokens[r.accepted[1]] : r.bonus;
      joint[t1][t2]++;
    }
  }
  for (let x = 0; x < V; x++) {
    if (joint[x].reduce((a, b) => a + b, 0) < 2000) continue;
    const [chi, thr] = chiSquare(joint[x], pc[x], `second token after ${x}`);
    assert.ok(chi < thr, `second token after ${x}: chi-square ${chi.toFixed(1)} >= ${thr.toFixed(1)}`);
  }
});
