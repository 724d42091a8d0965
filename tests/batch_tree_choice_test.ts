/** Sequoia's hardware-aware choice for one of B batched streams (rankTrees' `streams`). */
import assert from "node:assert/strict";
import { type MeasuredCosts, planForPick, rankTrees } from "../src/speculative/tree_choice.ts";

// A forward costs 10 ms up to 16 tokens, then grows in proportion (compute-bound beyond).
const SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256];
const COSTS: MeasuredCosts = {
  sizes: SIZES,
  target: SIZES.map((n) => 10 * Math.max(1, n / 16)),
  draft: SIZES.map((n) => 0.5 * Math.max(1, n / 16)),
  sync: 0,
  arTokensPerSubmission: 1,
};
const ACC = [0.6, 0.15, 0.08, 0.05, 0.03, 0.02, 0.01, 0.01];

Deno.test("tree choice in a batch: the pick shrinks as streams share the forward, down to no speedup", () => {
  const plan = planForPick(ACC);
  const one = rankTrees(plan, COSTS, 1)[0];
  const four = rankTrees(plan, COSTS, 4)[0];
  const sixteen = rankTrees(plan, COSTS, 16)[0];
  assert.deepEqual(
    rankTrees(plan, COSTS),
    rankTrees(plan, COSTS, 1),
    "streams = 1 is the single-stream ranking",
  );
  assert.ok(one.n >= 16, `alone: n = ${one.n}`);
  assert.ok(four.n <= 4 && four.n < one.n, `4 streams: n = ${four.n}`);
  assert.ok(four.speedup > 1, `4 streams still gain: ${four.speedup}`);
  // 16 streams already fill the flat part with one token each: any tree only adds cost.
  assert.ok(sixteen.speedup < 1, `16 streams: speedup ${sixteen.speedup}`);
  // Per stream, batched AR is B times slower per forward only past the flat part.
  assert.equal(four.arTokPerS, one.arTokPerS);
  assert.ok(Math.abs(rankTrees(plan, COSTS, 32)[0].arTokPerS - one.arTokPerS / 2) < 1e-9);
});
