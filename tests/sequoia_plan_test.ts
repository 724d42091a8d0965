import assert from "node:assert/strict";
import { expectedTokens, materialize, planSequoia, shapeValue } from "../src/speculative/sequoia_plan.ts";
import { appendAttention, childrenOf, levels, treeAttention } from "../src/speculative/tree.ts";

const ACC = [0.52, 0.14, 0.07, 0.045, 0.03, 0.02, 0.014, 0.01, 0.007, 0.005, 0.004, 0.003];

Deno.test("planner: acceptance [1, 0, ...] gives a chain; budget 1 gives the root alone", () => {
  const plan = planSequoia([1, 0, 0, 0], 16, 16);
  const s = materialize(plan, 6, 16);
  assert.deepEqual([...s.parent], [-1, 0, 1, 2, 3, 4]);
  assert.equal(expectedTokens(plan, 6, 16), 6);
  const one = materialize(plan, 1, 5);
  assert.deepEqual([...one.parent], [-1]);
  assert.equal(expectedTokens(plan, 1, 5), 1);
  // Depth limits a chain: 6 nodes in 3 levels with p = [1, 0..] is still worth only 3 tokens.
  assert.equal(expectedTokens(plan, 6, 3), 3);
});

Deno.test("planner: hand-checked small case", () => {
  // p = [0.5, 0.3]: with 3 nodes and 2 levels the root takes both children: 1 + 0.5 + 0.3 = 1.8;
  // with 3 levels a chain is 1 + 0.5 + 0.25 = 1.75 < 1.8, so the star still wins.
  const plan = planSequoia([0.5, 0.3], 8, 8);
  assert.ok(Math.abs(expectedTokens(plan, 3, 2) - 1.8) < 1e-12);
  assert.ok(Math.abs(expectedTokens(plan, 3, 3) - 1.8) < 1e-12);
  assert.deepEqual([...materialize(plan, 3, 3).parent], [-1, 0, 0]);
  // 4 nodes, 3 levels: star is 1.8 (no third child: p_3 = 0); root{a{x}, b}: 1 + .5 + .3 + .25 = 2.05.
  assert.ok(Math.abs(expectedTokens(plan, 4, 3) - 2.05) < 1e-12);
});

Deno.test("planner: G non-decreasing in n and d; materialized trees have n nodes, depth <= d, value G", () => {
  const M = 200, D = 12;
  const plan = planSequoia(ACC, M, D);
  // One level holds only the root: G(n > 1, 1) is infeasible (-Infinity) and cannot be materialized.
  assert.equal(expectedTokens(plan, 2, 1), -Infinity);
  assert.throws(() => materialize(plan, 2, 1), /no tree of 2 nodes fits in 1 level/);
  for (let d = 2; d <= D; d++) {
    for (let n = 1; n <= M; n++) {
      const g = expectedTokens(plan, n, d);
      if (n > 1) assert.ok(g >= expectedTokens(plan, n - 1, d) - 1e-12, `G(${n}, ${d}) < G(${n - 1}, ${d})`);
      if (d > 1) assert.ok(g >= expectedTokens(plan, n, d - 1) - 1e-12, `G(${n}, ${d}) < G(${n}, ${d - 1})`);
    }
  }
  for (const [n, d] of [[1, 1], [2, 2], [20, 2], [60, 3], [7, 3], [33, 5], [128, 8], [200, 12]]) {
    const s = materialize(plan, n, d);
    assert.equal(s.parent.length, n);
    assert.ok(levels(s.depth) <= d);
    assert.ok(Math.abs(shapeValue(s, ACC) - expectedTokens(plan, n, d)) < 1e-9, `value of tree (${n}, ${d})`);
    for (let i = 1; i < n; i++) assert.ok(s.parent[i] < i && s.depth[i] === s.depth[s.parent[i]] + 1);
  }
});

Deno.test("planner: budget 1024 x depth 32 solves in under a second", () => {
  const t0 = performance.now();
  const plan = planSequoia(ACC, 1024, 32);
  const ms = performance.now() - t0;
  assert.ok(expectedTokens(plan, 1024, 32) > expectedTokens(plan, 512, 32));
  // A generous bound for a loaded 2-core CI machine; the benchmark reports the real time.
  assert.ok(ms < 5000, `${ms} ms`);
});

Deno.test("tree: ancestor mask and positions; level-by-level append masks", () => {
  const parent = Int32Array.of(-1, 0, 0, 1, 1, 2);
  const depth = Int32Array.of(0, 1, 1, 2, 2, 2);
  assert.deepEqual(childrenOf(parent), [[1, 2], [3, 4], [5], [], [], []]);
  const { positions, mask } = treeAttention(parent, depth, 3);
  assert.deepEqual([...positions], [3, 4, 4, 5, 5, 5]);
  const w = 9;
  const row = (i: number) => [...mask.subarray(i * w, (i + 1) * w)];
  assert.deepEqual(row(0), [1, 1, 1, 1, 0, 0, 0, 0, 0]);
  assert.deepEqual(row(4), [1, 1, 1, 1, 1, 0, 0, 1, 0]);
  assert.deepEqual(row(5), [1, 1, 1, 1, 0, 1, 0, 0, 1]);
  // Append level 2 (nodes 3, 4, 5) after root and level 1 were cached at slots 3, 4, 5.
  const slotOf = Int32Array.of(3, 4, 5, -1, -1, -1);
  const a = appendAttention({ parent, depth }, 3, 6, [3, 4, 5], slotOf);
  assert.deepEqual([...slotOf], [3, 4, 5, 6, 7, 8]);
  assert.deepEqual([...a.positions], [5, 5, 5]);
  assert.deepEqual([...a.mask.subarray(0, 9)], [1, 1, 1, 1, 1, 0, 1, 0, 0]);
  assert.deepEqual([...a.mask.subarray(18, 27)], [1, 1, 1, 1, 0, 1, 0, 0, 1]);
});
