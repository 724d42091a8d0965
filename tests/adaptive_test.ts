import assert from "node:assert/strict";
import { probabilities } from "../src/model/sampling.ts";
import { AcceptanceTracker, AdaptiveSequoiaPlan } from "../src/speculative/adaptive.ts";
import { drawWithoutReplacement } from "../src/speculative/draw.ts";
import { verifySwor } from "../src/speculative/verify/rejection.ts";
import { Rng } from "../src/util/rng.ts";

const V = 12;
const logits = (seed: number) => {
  const r = new Rng(seed);
  return Float32Array.from({ length: V }, () => (r.next() * 2 - 1) * 2.5);
};
const s = { temperature: 1, topK: 0, topP: 1 };
const p = probabilities(logits(1), s), q = probabilities(logits(2), s);

/** Visits of one SWOR-verified star of `b` children. */
function star(b: number, rng: Rng): [number, number][] {
  const kids = drawWithoutReplacement(q, b, rng);
  const tree = { tokens: [-1, ...kids], children: [kids.map((_, i) => i + 1), ...kids.map(() => [])] };
  return verifySwor(tree, () => p, () => q, rng).visits;
}

Deno.test("adaptive: the online estimate from mixed fan-outs matches a full-width star measurement", () => {
  const rng = new Rng(3);
  const full = new AcceptanceTracker(6), mixed = new AcceptanceTracker(6);
  for (let t = 0; t < 60_000; t++) {
    full.observe(star(6, rng));
    mixed.observe(star(1 + (t % 6), rng)); // nodes with 1..6 children
  }
  const a = full.estimate([]), b = mixed.estimate([]);
  for (let k = 0; k < 6; k++) assert.ok(Math.abs(a[k] - b[k]) < 0.015, `p_${k + 1}: ${a[k]} vs ${b[k]}`);
  assert.ok(a[0] > 0.2 && a.reduce((x, y) => x + y, 0) <= 1 + 1e-9);
});

Deno.test("adaptive: re-plans when the acceptance drifts, and not before", () => {
  const rng = new Rng(4);
  const truth = new AcceptanceTracker(6);
  for (let t = 0; t < 20_000; t++) truth.observe(star(6, rng));
  const real = truth.estimate([]);
  // Planned with the truth: no re-plan.
  const steady = new AdaptiveSequoiaPlan(real, 16, 5, { threshold: 0.15, minVisits: 400 });
  for (let t = 0; t < 2000; t++) assert.equal(steady.observe(star(4, rng)), undefined);
  // Planned with a very optimistic vector: the estimate drifts away and the tree is re-planned once.
  const optimistic = [0.97, 0.01, 0.01, 0, 0, 0];
  const plan = new AdaptiveSequoiaPlan(optimistic, 16, 5, { threshold: 0.15, minVisits: 400 });
  const before = plan.shape;
  let replans = 0;
  for (let t = 0; t < 2000; t++) {
    const r = plan.observe(star(4, rng));
    if (r) {
      replans++;
      assert.ok(r.distance > 0.15);
      assert.equal(r.shape.parent.length, 16);
    }
  }
  assert.ok(replans >= 1, "re-planned");
  assert.notDeepEqual([...plan.shape.parent], [...before.parent], "the shape changed");
  assert.ok(Math.abs(plan.acceptance[0] - real[0]) < 0.05, `estimate ${plan.acceptance[0]} vs ${real[0]}`);
});
