import assert from "node:assert/strict";
import { planSequoia } from "../src/speculative/sequoia_plan.ts";
import { costAt, type MeasuredCosts, rankTrees } from "../src/speculative/tree_choice.ts";

const ACC = [0.6, 0.12, 0.06, 0.035, 0.025, 0.015, 0.012, 0.01];
const plan = planSequoia(ACC, 256, 17);
const sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256];

function costs(target: (n: number) => number, sync = 10): MeasuredCosts {
  return {
    sizes,
    target: sizes.map(target),
    draft: sizes.map((n) => target(n) / 10),
    sync,
    arTokensPerSubmission: 8,
  };
}

Deno.test("tree choice: a flat t(n) (offloaded or big GPU) picks large trees and predicts a speedup", () => {
  const best = rankTrees(plan, costs(() => 50))[0];
  assert.ok(best.n >= 64, `picked n=${best.n}`);
  assert.ok(best.depth >= 3, `picked d=${best.depth}`);
  assert.ok(best.speedup > 2, `speedup ${best.speedup}`);
});

Deno.test("tree choice: a steep t(n) (CPU adapter) picks small trees, and speculation may not pay", () => {
  const best = rankTrees(plan, costs((n) => 4 * n + 1))[0];
  assert.ok(best.n <= 4, `picked n=${best.n}`);
  const steeper = rankTrees(plan, costs((n) => 12 * n, 0.1))[0];
  assert.ok(steeper.speedup < 1, `speedup ${steeper.speedup} on a linear t(n) with a free sync`);
});

Deno.test("tree choice: costs interpolate between measured sizes", () => {
  assert.equal(costAt([1, 4], [10, 40], 2), 20);
  assert.equal(costAt([1, 4], [10, 40], 0.5), 10);
  assert.equal(costAt([1, 4], [10, 40], 8), 80);
});
