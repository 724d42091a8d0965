import assert from "node:assert/strict";
import { argmax, probabilities, sampleFrom, sampleToken, validateSampling } from "../src/model/sampling.ts";
import { Rng } from "../src/util/rng.ts";

const close = (a: ArrayLike<number>, b: number[], tol = 1e-12) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < b.length; i++) assert.ok(Math.abs(a[i] - b[i]) < tol, `index ${i}: ${a[i]} vs ${b[i]}`);
};

// logits = log([0.1, 0.4, 0.2, 0.3]) -> softmax at T=1 is exactly that distribution.
const P = [0.1, 0.4, 0.2, 0.3];
const L = Float32Array.from(P.map(Math.log));

Deno.test("sampling: temperature 1 reproduces softmax; T=0 is one-hot argmax", () => {
  close(probabilities(L, { temperature: 1, topK: 0, topP: 1 }), P, 1e-7);
  close(probabilities(L, { temperature: 0, topK: 0, topP: 1 }), [0, 1, 0, 0]);
});

Deno.test("sampling: temperature 0.5 squares then renormalises", () => {
  const sq = P.map((p) => p * p);
  const z = sq.reduce((a, b) => a + b);
  close(probabilities(L, { temperature: 0.5, topK: 0, topP: 1 }), sq.map((x) => x / z), 1e-7);
});

Deno.test("sampling: top-k keeps the k largest", () => {
  close(probabilities(L, { temperature: 1, topK: 2, topP: 1 }), [0, 0.4 / 0.7, 0, 0.3 / 0.7], 1e-7);
  close(probabilities(L, { temperature: 1, topK: 1, topP: 1 }), [0, 1, 0, 0]);
});

Deno.test("sampling: top-p keeps the shortest prefix reaching the mass (crossing token kept)", () => {
  // sorted: 0.4, 0.3, 0.2, 0.1; cumulative 0.4, 0.7, 0.9, 1.0
  close(probabilities(L, { temperature: 1, topK: 0, topP: 0.5 }), [0, 0.4 / 0.7, 0, 0.3 / 0.7], 1e-7);
  close(probabilities(L, { temperature: 1, topK: 0, topP: 0.35 }), [0, 1, 0, 0], 1e-7);
  close(probabilities(L, { temperature: 1, topK: 0, topP: 0.85 }), [0, 4 / 9, 2 / 9, 3 / 9], 1e-7);
  // top-k first, then top-p on the renormalised top-k: top-2 = {0.4/0.7, 0.3/0.7}; 0.571 >= 0.55.
  close(probabilities(L, { temperature: 1, topK: 2, topP: 0.55 }), [0, 1, 0, 0], 1e-7);
});

Deno.test("sampling: invalid parameters are refused by name", () => {
  assert.throws(() => validateSampling({ temperature: -1, topK: 0, topP: 1 }), /temperature/);
  assert.throws(() => validateSampling({ temperature: 1, topK: 1.5, topP: 1 }), /top_k/);
  assert.throws(() => validateSampling({ temperature: 1, topK: 0, topP: 0 }), /top_p/);
});

Deno.test("sampling: argmax takes the first maximum", () => {
  assert.equal(argmax([1, 3, 3, 2]), 1);
});

Deno.test("rng: seeded, reproducible, uniform", () => {
  const a = new Rng(42), b = new Rng(42), c = new Rng(43);
  const xs = Array.from({ length: 5 }, () => a.next());
  assert.deepEqual(xs, Array.from({ length: 5 }, () => b.next()));
  assert.notDeepEqual(xs, Array.from({ length: 5 }, () => c.next()));
  // Mean and bucket counts of 200k draws.
  const r = new Rng(7);
  const n = 200_000, buckets = new Array(10).fill(0);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const u = r.next();
    assert.ok(u >= 0 && u < 1);
    sum += u;
    buckets[Math.floor(u * 10)]++;
  }
  assert.ok(Math.abs(sum / n - 0.5) < 0.005);
  const chi = buckets.reduce((a, k) => a + (k - n / 10) ** 2 / (n / 10), 0);
  assert.ok(chi < 40, `chi-square ${chi} (9 dof; P(chi > 40) < 1e-5)`);
});

Deno.test("sampling: seeded draws follow the distribution (chi-square)", () => {
  const rng = new Rng(123);
  const params = { temperature: 0.7, topK: 3, topP: 1 };
  const p = probabilities(L, params);
  const n = 100_000;
  const counts = new Array(4).fill(0);
  for (let i = 0; i < n; i++) counts[sampleToken(L, params, rng)]++;
  assert.equal(counts[0], 0, "a token removed by top-k is never drawn");
  let chi = 0;
  for (let i = 1; i < 4; i++) chi += (counts[i] - n * p[i]) ** 2 / (n * p[i]);
  // 2 degrees of freedom: P(chi > 30) ~ 3e-7.
  assert.ok(chi < 30, `chi-square ${chi}, counts ${counts}`);
  // The same seed gives the same draws.
  const r1 = new Rng(5), r2 = new Rng(5);
  for (let i = 0; i < 100; i++) assert.equal(sampleFrom(p, r1), sampleFrom(p, r2));
});
