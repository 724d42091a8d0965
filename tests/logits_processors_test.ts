/**
 * The request processors on plain arrays: penalties (vLLM's presence/frequency over generated tokens,
 * Hugging Face's repetition over prompt and output), logit_bias, min-p as a logit mask, the pipeline's
 * immutable states (one branch never sees another's tokens), logprobs' top-k, and the bounds that keep
 * every row finite.
 */
import assert from "node:assert/strict";
import { biasProcessor } from "../src/decoding/logits/bias.ts";
import { logprobsOf, logSumExp } from "../src/decoding/logits/logprobs.ts";
import { minPProcessor } from "../src/decoding/logits/min_p.ts";
import { penaltyProcessor } from "../src/decoding/logits/penalties.ts";
import { LogitsPipeline } from "../src/decoding/logits/pipeline.ts";
import { probabilities } from "../src/model/sampling.ts";

Deno.test("penalties: presence once, frequency per occurrence (generated only); repetition over prompt and output", () => {
  const p = penaltyProcessor({ presence: 0.5, frequency: 0.25, repetition: 2 });
  let s = p.initial([1]);
  s = p.advance(s, 2);
  s = p.advance(s, 2);
  const l = Float32Array.of(1, 4, -2, 3);
  p.apply(l, s);
  // id 1: prompt only -> repetition: 4 / 2; id 2: generated twice -> -2 * 2 - 0.5 - 0.25 * 2; id 3 untouched.
  assert.deepEqual(Array.from(l), [1, 2, -5, 3]);
  const before = p.initial([]);
  const after = p.advance(before, 3);
  assert.equal(before.counts.size, 0, "advance never changes the state it was given");
  assert.equal(after.counts.get(3), 1);
});

Deno.test("penalties and bias: out-of-range values are refused naming the field", () => {
  assert.throws(() => penaltyProcessor({ presence: 3, frequency: 0, repetition: 1 }), /presence_penalty/);
  assert.throws(() => penaltyProcessor({ presence: 0, frequency: -2.5, repetition: 1 }), /frequency_penalty/);
  // A tiny repetition penalty would overflow float32 (l / 1e-39 = Infinity, then NaN probabilities).
  assert.throws(
    () => penaltyProcessor({ presence: 0, frequency: 0, repetition: 1e-39 }),
    /repetition_penalty/,
  );
  assert.throws(
    () => penaltyProcessor({ presence: 0, frequency: 0, repetition: 1000 }),
    /repetition_penalty/,
  );
  assert.throws(() => biasProcessor({ 7: 1 }, 4), /logit_bias: token id 7/);
  assert.throws(() => biasProcessor({ 1: 101 }, 4), /\[-100, 100\]/);
  const p = penaltyProcessor({ presence: 0, frequency: 0, repetition: 0.01 });
  const l = Float32Array.of(3e36, -3e36, 1);
  p.apply(l, p.initial([0, 1]));
  assert.ok(l.every(Number.isFinite), "the extreme allowed penalty keeps float32 logits finite");
});

Deno.test("logit_bias adds to chosen logits; -100 bans and +100 forces under sampling", () => {
  const b = biasProcessor({ 0: -100, 2: 100 }, 3);
  const l = Float32Array.of(5, 0, 0);
  b.apply(l, null);
  const p = probabilities(l, { temperature: 1, topK: 0, topP: 1 });
  assert.ok(p[0] < 1e-40 && p[2] > 0.999999);
});

Deno.test("min-p keeps tokens at least min_p x as likely as the best at the temperature; no-op at T = 0", () => {
  const T = 0.5, minP = 0.1;
  const l = Float32Array.of(0, -1, -1.1, -1.2, -3);
  const m = minPProcessor(minP, T);
  const x = l.slice();
  m.apply(x, null);
  const p = probabilities(l, { temperature: T, topK: 0, topP: 1 });
  for (let i = 0; i < l.length; i++) {
    assert.equal(x[i] === -Infinity, p[i] < minP * p[0], `token ${i}: p ${p[i].toFixed(4)}`);
  }
  const g = l.slice();
  minPProcessor(minP, 0).apply(g, null);
  assert.deepEqual(g, l);
  assert.throws(() => minPProcessor(1.5, 1), /min_p/);
});

Deno.test("pipeline: nothing to do is undefined; states branch without sharing; the model's row is never changed", () => {
  assert.equal(LogitsPipeline.fromSpec(undefined, { temperature: 1, vocabSize: 4 }), undefined);
  assert.equal(
    LogitsPipeline.fromSpec({ logitBias: {}, repetitionPenalty: 1, minP: 0 }, {
      temperature: 1,
      vocabSize: 4,
    }),
    undefined,
  );
  assert.throws(
    () => LogitsPipeline.fromSpec({ grammar: { kind: "json_object" } }, { temperature: 1, vocabSize: 4 }),
    /grammar/,
  );
  const pipe = LogitsPipeline.fromSpec({ frequencyPenalty: 1 }, { temperature: 1, vocabSize: 4 })!;
  const root = pipe.initial([]);
  const a = pipe.advance(root, 1), b = pipe.advance(root, 2);
  const row = Float32Array.of(0, 0, 0, 0);
  assert.deepEqual(Array.from(pipe.processed(row, a)), [0, -1, 0, 0]);
  assert.deepEqual(Array.from(pipe.processed(row, b)), [0, 0, -1, 0]);
  assert.deepEqual(Array.from(pipe.processed(row, root)), [0, 0, 0, 0]);
  assert.deepEqual(Array.from(row), [0, 0, 0, 0]);
});

Deno.test("logprobs: log-softmax of the row, top-k most likely first (lower id on ties)", () => {
  const row = Float32Array.of(1, 3, 3, -Infinity, 2);
  const lse = logSumExp(row);
  const r = logprobsOf(row, 4, 3);
  assert.ok(Math.abs(r.logprob - (2 - lse)) < 1e-12);
  assert.deepEqual(r.top.map(([id]) => id), [1, 2, 4]);
  assert.ok(Math.abs(r.top.reduce((s, [, lp]) => s + Math.exp(lp), 0) + Math.exp(1 - lse) - 1) < 1e-9);
  assert.deepEqual(logprobsOf(row, 3, 0).top, []);
  assert.equal(logprobsOf(row, 3, 0).logprob, -Infinity);
});
