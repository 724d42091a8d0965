/**
 * The draft-free lookup method: the n-gram index and the tree-building rule on plain arrays, the online
 * fallback (synthetic outcomes, and through the engine on scripted targets: forwards counted against
 * emitted tokens), exactness on the tiny target (greedy = AR, sampled first and second tokens against
 * the exact target distribution with and without processors, on a prompt lookup proposes for), the
 * device's plain-step path, and a server with no draft model answering `method: "lookup"`.
 */
import assert from "node:assert/strict";
import {
  acceptedAlong,
  buildLookupTree,
  LookupDrafter,
  LookupPolicy,
  NgramIndex,
} from "../src/speculative/drafters/lookup.ts";
import type { Drafter, DraftInput, StepOutcome } from "../src/speculative/drafters/drafter.ts";
import { generateSpeculative, type SpeculativeEvent } from "../src/speculative/engine.ts";
import { decode } from "../src/speculative/decode.ts";
import { makeDrafter } from "../src/speculative/methods.ts";
import { checkPairing } from "../src/speculative/verify/verifier.ts";
import type { CausalLM, ForwardInput } from "../src/model/causal_lm.ts";
import { GREEDY, probabilities, type SamplingParams } from "../src/model/sampling.ts";
import { randomCpuModel, smallConfig } from "./fixtures/random_model.ts";
import { categories, chiSquare, cpuPair, gpuPair, targetFolder } from "./fixtures/exact.ts";
import { createApp, localService } from "../src/server/app.ts";
import { LogitsPipeline } from "../src/decoding/logits/pipeline.ts";
import type { ProcessingSpec } from "../src/decoding/logits/processor.ts";

const tok = targetFolder.tokenizer;

// ---------------------------------------------------------------- index and tree (plain arrays)

Deno.test("lookup index: the longest recurring suffix, most recent first, matches extended backwards", () => {
  const ix = new NgramIndex(3);
  //          0  1  2  3  4  5  6  7  8  9 10 11
  ix.extend([1, 2, 3, 4, 9, 2, 3, 5, 1, 2, 3]);
  // Suffix "1 2 3" (3-gram) occurred once before, at end 2; its match extends to 3 tokens only (start).
  assert.deepEqual(ix.matches(8, 32), [{ end: 2, length: 3 }]);
  ix.push(7); // "3 7", "7": new -> nothing matches
  assert.deepEqual(ix.matches(8, 32), []);
  ix.push(2); // "7 2" new, "2" occurred at 9, 5, 1 (most recent first)
  assert.deepEqual(ix.matches(8, 32), [{ end: 9, length: 1 }, { end: 5, length: 1 }, { end: 1, length: 1 }]);
  assert.deepEqual(ix.matches(2, 32).map((m) => m.end), [9, 5], "at most `limit`");
  // A long repeat: the 3-gram seeds the match, which then extends up to maxMatch.
  const long = new NgramIndex(3);
  const passage = [5, 6, 7, 8, 9, 10, 11, 12];
  long.extend([...passage, 40, ...passage]);
  assert.deepEqual(long.matches(4, 32), [{ end: 7, length: 8 }]);
  assert.deepEqual(long.matches(4, 5), [{ end: 7, length: 5 }]);
  // Incremental: extend() indexes only the new tail (same answers as building at once).
  const a = new NgramIndex(2), b = new NgramIndex(2);
  const text = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 9, 2];
  for (let i = 1; i <= text.length; i++) a.extend(text.slice(0, i));
  b.extend(text);
  assert.deepEqual(a.tokens, b.tokens);
  assert.deepEqual(a.matches(8, 32), b.matches(8, 32));
  assert.deepEqual(a.matches(8, 32), [{ end: 6, length: 3 }]); // "5 9 2" at 4..6
});

Deno.test("lookup tree: continuations merged into a trie, branches by weight, top-K connected, breadth-first", () => {
  // Root 2 (last); earlier "2" at 1 (-> 3 4 5 ...) and at 6 (-> 3 8 ...), "1 2" matches at 1 only.
  const text = [1, 2, 3, 4, 5, 6, 2, 3, 8, 0, 1, 2];
  const ix = new NgramIndex(3);
  ix.extend(text);
  const m = ix.matches(16, 32);
  assert.deepEqual(m, [{ end: 1, length: 2 }], "the longest suffix (1 2) only");
  const chain = buildLookupTree(text, m, { budget: 16, depth: 4, decay: 0.9 });
  assert.deepEqual([...chain.tokens], [2, 3, 4, 5, 6], "one occurrence: a chain of its continuation");
  assert.deepEqual([...chain.parent], [-1, 0, 1, 2, 3]);
  assert.deepEqual([...chain.depth], [0, 1, 2, 3, 4]);
  // Two occurrences of the 1-gram "2" (suffix "0 2" is new): they share "3", then differ.
  const text2 = [1, 2, 3, 4, 5, 6, 2, 3, 8, 9, 0, 2];
  const m2 = new NgramIndex(3);
  m2.extend(text2);
  const occ = m2.matches(16, 32);
  assert.deepEqual(occ.map((o) => o.end), [6, 1]);
  const t = buildLookupTree(text2, occ, { budget: 16, depth: 3, decay: 0.9 });
  // Breadth-first: root, 3, then 3's children (8 from the more recent occurrence first: equal weights,
  // ties by creation = recency), then their children.
  assert.deepEqual([...t.tokens], [2, 3, 8, 4, 9, 5]);
  assert.deepEqual([...t.parent], [-1, 0, 1, 1, 2, 3]);
  for (let i = 1; i < t.parent.length; i++) {
    assert.ok(t.parent[i] < i && t.score[i] <= t.score[t.parent[i]], "parents first, scores fall");
  }
  // Heavier (longer-matching) continuations win the budget: weights 3 vs 1.
  const w = buildLookupTree(text2, [{ end: 1, length: 3 }, { end: 6, length: 1 }], {
    budget: 4,
    depth: 3,
    decay: 0.9,
  });
  assert.deepEqual([...w.tokens], [2, 3, 4, 5], "budget 4: the heavy branch");
  // Budget 1 or no match: the root alone. Continuations never pass the root.
  assert.deepEqual([...buildLookupTree(text2, occ, { budget: 1, depth: 3, decay: 0.9 }).tokens], [2]);
  assert.deepEqual([...buildLookupTree(text2, [], { budget: 16, depth: 3, decay: 0.9 }).tokens], [2]);
  const edge = buildLookupTree([7, 7, 7], [{ end: 1, length: 2 }], { budget: 16, depth: 8, decay: 0.9 });
  assert.deepEqual([...edge.tokens], [7, 7], "only text[2] follows the match at 1");
});

Deno.test("lookup drafter: incremental over the engine's history array, a new history starts afresh", async () => {
  const d = new LookupDrafter({ budget: 8, depth: 4 });
  const history = [10, 11, 12, 13, 20, 10, 11];
  const input = (h: readonly number[]): DraftInput => ({
    prefixLen: h.length - 1,
    pending: [h[h.length - 1]],
    history: h,
    sampling: GREEDY,
    rng: undefined as never,
    maxNodes: 64,
    draftRoom: 64,
  });
  const a = await d.draft(input(history));
  assert.deepEqual([...a.tokens], [11, 12, 13, 20], "the slow start: 4 nodes at first");
  assert.equal(a.forwards, 0);
  assert.deepEqual(a.children, [[1], [2], [3], []]);
  d.observe({ treeSize: 4, accepted: 3, ms: 1, leaf: true }); // a full path: the limit doubles
  assert.equal(d.policy.limit, 8);
  assert.ok(a.q.every((x) => x === undefined) && a.slotOf.every((s) => s === -1));
  history.push(12, 99); // the engine appends in place
  const b = await d.draft(input(history));
  assert.deepEqual([...b.tokens], [99], "nothing matches 99: the root alone");
  assert.equal(b.plainSteps, 8, "and, no plain step measured yet, the 8-step calibration run starts");
  const c = await d.draft(input([5, 6, 5]));
  assert.deepEqual([...c.tokens], [5, 6, 5], "a different history: a fresh index");
  const weak = await d.draft(input([1, 2, 3, 4, 5, 6, 9, 1]));
  assert.deepEqual([...weak.tokens], [1, 2, 3], "a one-token match risks 1 + 2 x 1 nodes");
  const small = await d.draft({ ...input([5, 6, 5]), maxNodes: 2 });
  assert.equal(small.tokens.length, 2, "never more nodes than the step has room for");
  checkPairing("lookup", "match", 0.7);
  checkPairing("lookup", "greedy", 0);
  assert.throws(() => checkPairing("lookup", "swor", 0.7), /not exact/);
  assert.throws(() => checkPairing("lookup", "specinfer", 0.7), /not exact/);
});

Deno.test("lookup policy: backoff 1, 8, 16, ... while proposals fail; node limit halves and recovers; measured cost", () => {
  const p = new LookupPolicy(16, 64);
  const fail: StepOutcome = { treeSize: 9, accepted: 0, ms: 10 };
  const plain: StepOutcome = { treeSize: 1, accepted: 0, ms: 5 };
  const skips: number[] = [], limits: number[] = [];
  for (let i = 0; i < 7; i++) {
    assert.ok(p.proposing);
    p.observe(fail);
    skips.push(p.skip);
    limits.push(p.limit);
    while (!p.proposing) p.observe(plain);
  }
  assert.deepEqual(skips, [1, 8, 16, 32, 64, 64, 64]);
  assert.deepEqual(limits, [2, 2, 2, 2, 2, 2, 2], "from the slow start's 4, halved");
  assert.equal(p.plainMs, 5, "runs of >= 8 plain steps measure a plain token");
  // A proposal whose time per token beats a plain token pays: the streak ends; when its path reached a
  // leaf the limit doubles back.
  p.observe({ treeSize: 2, accepted: 1, ms: 8, leaf: true }); // 4 ms per token <= 0.85 x 5
  assert.equal(p.failures, 0);
  assert.equal(p.limit, 4);
  p.observe({ treeSize: 4, accepted: 1, ms: 6 });
  assert.equal(p.limit, 4, "a path that stopped inside the tree: the tree was big enough");
  assert.ok(p.proposing);
  // Accepted something but not 15% faster per token than a plain step: it does not pay.
  p.observe({ treeSize: 4, accepted: 1, ms: 9 });
  assert.equal(p.skip, 1);
  // Before any plain run is measured, accepting anything pays; after 4 such proposals, one 8-step
  // calibration run measures the plain cost.
  const q = new LookupPolicy(16);
  for (let i = 0; i < 3; i++) q.observe({ treeSize: 16, accepted: 2, ms: 1000 });
  assert.ok(q.proposing && q.plainMs === undefined);
  q.observe({ treeSize: 16, accepted: 2, ms: 1000 });
  assert.equal(q.skip, 8, "calibration run");
  for (let i = 0; i < 8; i++) q.observe({ treeSize: 1, accepted: 0, ms: 100 });
  assert.equal(q.plainMs, 100);
  q.observe({ treeSize: 16, accepted: 2, ms: 1000 }); // 333 ms per token > 100: does not pay
  assert.equal(q.skip, 1);
  // A plain step outside a backoff (nothing matched) changes nothing but the cost of a lone plain step.
  const r = new LookupPolicy(16);
  r.observe(plain);
  assert.ok(r.proposing && r.plainMs === undefined && r.limit === 4 && r.minRun === 1);
  assert.equal(r.noMatch(), 8, "nothing to propose and no plain cost measured yet: the calibration run");
  for (let i = 0; i < 8; i++) r.observe(plain);
  assert.equal(r.plainMs, 5);
  assert.equal(r.noMatch(), 1, "a lone plain step costs what a run's does: no run");
  // A device whose readback dominates: a plain step alone 21 ms, in a batch of 8 7 ms each. Plain steps
  // then come in runs of 8 (nothing matched, and the first backoff too).
  const g = new LookupPolicy(16);
  g.observe({ treeSize: 3, accepted: 0, ms: 25 });
  g.observe({ treeSize: 1, accepted: 0, ms: 21 });
  g.observe({ treeSize: 3, accepted: 0, ms: 25 });
  assert.equal(g.skip, 8);
  for (let i = 0; i < 8; i++) g.observe({ treeSize: 1, accepted: 0, ms: 7, batch: 8 });
  assert.ok(g.plainMs === 7 && g.singleMs === 21 && g.minRun === 8);
  assert.equal(g.noMatch(), 8);
  assert.ok(!g.proposing);
  for (let i = 0; i < 8; i++) g.observe({ treeSize: 1, accepted: 0, ms: 7, batch: 8 });
  g.observe({ treeSize: 3, accepted: 2, ms: 15 }); // 5 ms per token: pays
  g.observe({ treeSize: 3, accepted: 0, ms: 15 });
  assert.equal(g.skip, 8, "the first backoff is a whole run");
});

Deno.test("lookup shadow: a backoff checks the tree it would propose against the tokens emitted; a repeat ends it", async () => {
  const text = [1, 2, 3, 4, 9, 1, 2];
  const ix = new NgramIndex(3);
  ix.extend(text);
  const t = buildLookupTree(text, ix.matches(16, 32), { budget: 8, depth: 4, decay: 0.9 });
  assert.deepEqual([...t.tokens], [2, 3, 4, 9, 1]);
  assert.equal(acceptedAlong(t, [...text, 3, 4, 7], text.length), 2);
  assert.equal(acceptedAlong(t, [...text, 5], text.length), 0);
  assert.equal(acceptedAlong(t, text, text.length), 0, "nothing emitted yet");

  const d = new LookupDrafter({ budget: 8, depth: 4 });
  const h = [10, 11, 12, 13, 14, 15, 16, 17, 50, 10, 11];
  const step = (history: number[]): DraftInput => ({
    prefixLen: history.length - 1,
    pending: [history[history.length - 1]],
    history,
    sampling: GREEDY,
    rng: undefined as never,
    maxNodes: 64,
    draftRoom: 64,
  });
  const fail = (n: number) => d.observe({ treeSize: n, accepted: 0, ms: 1 });
  const plain = () => d.observe({ treeSize: 1, accepted: 0, ms: 1 });
  assert.equal((await d.draft(step(h))).tokens.length, 4); // 11 -> 12 13 14
  fail(4); // backoff of 1
  h.push(60);
  assert.equal((await d.draft(step(h))).tokens.length, 1);
  plain();
  h.push(10);
  assert.equal((await d.draft(step(h))).tokens.length, 2, "halved limit"); // 10 -> 11
  fail(2); // second failure: a backoff of 8
  assert.equal(d.policy.skip, 8);
  h.push(12); // the text starts repeating the passage: 12 13 14 ...
  assert.equal((await d.draft(step(h))).tokens.length, 1, "in the backoff: plain, a shadow tree built");
  plain();
  h.push(13);
  assert.equal((await d.draft(step(h))).tokens.length, 1, "the shadow has accepted one: not enough yet");
  plain();
  h.push(14);
  const resumed = await d.draft(step(h));
  assert.ok(resumed.tokens.length > 1, "the shadow would have accepted two: the backoff ends");
  assert.equal(d.policy.failures, 0);
  assert.equal(resumed.tokens[1], 15);
});

// ---------------------------------------------------------------- through the engine, scripted targets

/**
 * A target whose next token is a function of the position alone (script(p) = the token at position p),
 * with a real small model underneath for the KV cache; counts forwards and verified rows.
 */
class ScriptedModel implements CausalLM {
  forwards = 0;
  rows = 0;
  private readonly inner: CausalLM;
  /**
   * `msPerForward`: every forward takes at least this long whatever its size (a flat t(n), as on a GPU),
   * so lookup's measured cost decides the same way on a busy machine.
   */
  constructor(private readonly script: (pos: number) => number, private readonly msPerForward = 0) {
    this.inner = randomCpuModel(smallConfig({ vocab_size: 400, max_position_embeddings: 512 }), 3);
  }
  get config() {
    return this.inner.config;
  }
  get kv() {
    return this.inner.kv;
  }
  async forward(input: ForwardInput): Promise<Float32Array> {
    const t0 = performance.now();
    const out = await this.inner.forward(input);
    while (performance.now() - t0 < this.msPerForward) await new Promise((r) => setTimeout(r, 1));
    this.forwards++;
    this.rows += input.tokens.length;
    const V = this.config.vocabSize;
    const rows = input.logitRows ?? Array.from(input.positions, (_, i) => i);
    for (let k = 0; k < rows.length; k++) {
      const row = out.subarray(k * V, (k + 1) * V);
      row.fill(-20);
      row[this.script(input.positions[rows[k]] + 1)] = 20;
    }
    return out;
  }
  dispose(): void {}
}

async function collect(gen: AsyncGenerator<SpeculativeEvent>) {
  const ids: number[] = [], steps: { treeSize: number; accepted: number }[] = [];
  let stats: Record<string, number> = {};
  for await (const ev of gen) {
    if (ev.type === "token") ids.push(ev.id);
    if (ev.type === "step") steps.push(ev.stats);
    if (ev.type === "done") stats = ev.stats as unknown as Record<string, number>;
  }
  return { ids, steps, stats };
}

Deno.test("lookup fallback: text that never repeats a continuation costs AR's forwards, a few wasted nodes", async () => {
  // Token 5 at every even position, a new token at every odd one: after each 5, lookup proposes what
  // followed an earlier 5, and it is always wrong.
  const script = (p: number) => (p % 2 === 0 ? 5 : 10 + ((p - 1) >> 1) % 380);
  const m = new ScriptedModel(script);
  const prompt = Array.from({ length: 20 }, (_, i) => script(i));
  const T = 400;
  const { drafter, verifier } = makeDrafter("lookup", {});
  const r = await collect(generateSpeculative(m, undefined, prompt, {
    drafter,
    verifier,
    maxTokens: T,
    sampling: GREEDY,
    seed: 0,
  }));
  assert.deepEqual(r.ids, Array.from({ length: T }, (_, i) => script(prompt.length + i)), "exact");
  const proposals = r.steps.filter((s) => s.treeSize > 1);
  const wasted = proposals.reduce((a, s) => a + s.treeSize - 1, 0);
  assert.equal(proposals.filter((s) => s.accepted > 0).length, 0, "every proposal fails");
  // AR: one forward per token. Lookup: the same (plus prefill), and only the failed re-tries' nodes.
  assert.equal(r.stats.targetForwards, T);
  assert.equal(m.forwards, T + 1, "prefill + one forward per token");
  assert.ok(proposals.length <= Math.log2(64) + T / 64 + 2, `${proposals.length} proposals`);
  assert.ok(wasted <= 0.1 * T, `${wasted} wasted nodes for ${T} tokens`);
  assert.equal(m.rows - prompt.length + 1, T + wasted, "rows verified = tokens + wasted nodes");
});

Deno.test("lookup on repeating text: many tokens per forward, exact, no draft model touched", async () => {
  const period = [30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40];
  const script = (p: number) => period[p % period.length];
  const m = new ScriptedModel(script, 4);
  const prompt = Array.from({ length: 24 }, (_, i) => script(i));
  const draft = randomCpuModel(smallConfig({ vocab_size: 400, max_position_embeddings: 512 }), 9);
  const { drafter, verifier } = makeDrafter("lookup", { treeSize: 16, depth: 8 });
  const r = await collect(generateSpeculative(m, draft, prompt, {
    drafter,
    verifier,
    maxTokens: 200,
    sampling: { temperature: 0.9, topK: 0, topP: 1 },
    seed: 1,
  }));
  assert.deepEqual(r.ids, Array.from({ length: 200 }, (_, i) => script(prompt.length + i)));
  assert.ok(r.stats.tokensPerStep > 6, `${r.stats.tokensPerStep} tokens/step`);
  assert.equal(r.stats.draftForwards, 0);
  assert.equal(draft.kv.length, 0, "the loaded draft is never used");
});

// ---------------------------------------------------------------- exactness on the tiny target

/**
 * The tiny target's own greedy loop, cut inside it: lookup proposes from the first step (two children
 * at the root, " and" and " nor"), and the target gives " and" about 0.68 at T = 1, so the proposal is
 * accepted in some runs and rejected in others. (The tiny model copies no in-context text it did not
 * learn, so a repeated Bible verse would not do.)
 */
const REPEATED =
  "And the LORD said unto Moses, Behold, I will not be a burnt offering, nor a burnt offering, " +
  "and the burnt offering, and the burnt offering,";

async function lookupRun(
  pair: { target: CausalLM },
  prompt: number[],
  maxTokens: number,
  sampling: SamplingParams,
  seed: number,
  processing?: ProcessingSpec,
) {
  return await collect(decode("lookup", pair.target, undefined, prompt, {
    tree: {},
    maxTokens,
    sampling,
    seed,
    eosIds: [],
    ...(processing ? { processing } : {}),
  }));
}

Deno.test("lookup exactness: greedy equals AR on a repeated passage (CPU); sampled equals AR draw for draw", async () => {
  const pair = await cpuPair();
  const prompt = tok.encode(REPEATED);
  const ar = await collect(decode("ar", pair.target, undefined, prompt, {
    tree: {},
    maxTokens: 96,
    sampling: GREEDY,
    seed: 0,
    eosIds: [],
  }));
  const lk = await lookupRun(pair, prompt, 96, GREEDY, 0);
  assert.deepEqual(lk.ids, ar.ids);
  assert.ok(lk.stats.tokensPerStep > 1.5, `${lk.stats.tokensPerStep} tokens/step`);
  assert.ok(lk.steps[0].treeSize > 1 && lk.steps[0].accepted > 0, "the first step copies the repeat");
  // At T > 0 the match rule draws one uniform per emitted token from the target's p at that token's
  // context, as AR does: with the same seed the same tokens (the bonus and accepted children alike).
  const sampling = { temperature: 0.8, topK: 0, topP: 0.95 };
  for (const seed of [1, 2, 3]) {
    const a = await collect(decode("ar", pair.target, undefined, prompt, {
      tree: {},
      maxTokens: 48,
      sampling,
      seed,
      eosIds: [],
    }));
    const l = await lookupRun(pair, prompt, 48, sampling, seed);
    assert.deepEqual(l.ids, a.ids, `seed ${seed}`);
  }
});

/** Exact target distribution after `ids` (CPU reference), processed by `spec` when given. */
async function dist(ids: number[], prompt: number[], sampling: SamplingParams, spec?: ProcessingSpec) {
  const { target } = await cpuPair();
  target.kv.truncate(0);
  const logits = await target.forward({
    tokens: Int32Array.from(ids),
    positions: Int32Array.from(ids, (_, i) => i),
    logitRows: [ids.length - 1],
  });
  if (!spec) return probabilities(logits, sampling);
  const pipe = LogitsPipeline.fromSpec(spec, {
    temperature: sampling.temperature,
    vocabSize: logits.length,
  })!;
  let st = pipe.initial(prompt);
  for (const t of ids.slice(prompt.length)) st = pipe.advance(st, t);
  return probabilities(pipe.processed(logits, st), sampling);
}

/**
 * Sampled first and second tokens of lookup (N seeds) against the exact (processed) target: chi-square
 * over the 5 / 3 likeliest tokens plus the rest, at the 1e-6 upper quantiles (as fixtures/exact.ts).
 * The prompt makes lookup propose at the first step, and the proposal is accepted in some runs and
 * rejected in others (else the test would not exercise the rule).
 */
async function assertLookupSampled(spec: ProcessingSpec | undefined, N: number) {
  const sampling = { temperature: 1, topK: 0, topP: 1 };
  const prompt = tok.encode(REPEATED);
  const [top1, p1] = categories(await dist(prompt, prompt, sampling, spec), 5);
  const [top2, p2] = categories(await dist([...prompt, top1[0]], prompt, sampling, spec), 3);
  const pair = await cpuPair();
  const c1 = new Array(p1.length).fill(0), c2 = new Array(p2.length).fill(0);
  let accepted = 0, rejected = 0;
  for (let s = 0; s < N; s++) {
    const r = await lookupRun(pair, prompt, 2, sampling, 5000 + s, spec);
    assert.ok(r.steps[0].treeSize > 1, "lookup proposes at the first step");
    if (r.steps[0].accepted > 0) accepted++;
    else rejected++;
    const k = top1.indexOf(r.ids[0]);
    c1[k < 0 ? p1.length - 1 : k]++;
    if (r.ids[0] === top1[0]) {
      const k2 = top2.indexOf(r.ids[1]);
      c2[k2 < 0 ? p2.length - 1 : k2]++;
    }
  }
  assert.ok(accepted > 20 && rejected > 20, `accepted ${accepted}, rejected ${rejected}`);
  const x1 = chiSquare(c1, p1), x2 = chiSquare(c2, p2);
  assert.ok(
    x1 < 36,
    `first-token chi-square ${x1.toFixed(1)}, counts ${c1}, p ${p1.map((x) => x.toFixed(3))}`,
  );
  assert.ok(c2.reduce((a, b) => a + b, 0) > 40, "too few samples with the likeliest first token");
  assert.ok(
    x2 < 31,
    `second-token chi-square ${x2.toFixed(1)}, counts ${c2}, p ${p2.map((x) => x.toFixed(3))}`,
  );
}

Deno.test("lookup exactness: sampled first and second tokens follow the target distribution (T = 1)", async () => {
  await assertLookupSampled(undefined, 240);
});

Deno.test("lookup exactness with processors: greedy equals AR, sampled tokens follow the processed target", async () => {
  const spec: ProcessingSpec = {
    presencePenalty: 0.5,
    frequencyPenalty: 0.3,
    repetitionPenalty: 1.2,
    logitBias: { [tok.encode(" light", { addBos: false })[0]]: -3 },
  };
  const pair = await cpuPair();
  const prompt = tok.encode(REPEATED);
  const ar = await collect(decode("ar", pair.target, undefined, prompt, {
    tree: {},
    maxTokens: 64,
    sampling: GREEDY,
    seed: 0,
    eosIds: [],
    processing: spec,
  }));
  const plain = await lookupRun(pair, prompt, 64, GREEDY, 0);
  assert.notDeepEqual(ar.ids, plain.ids, "the processors change the output");
  const lk = await lookupRun(pair, prompt, 64, GREEDY, 0, spec);
  assert.deepEqual(lk.ids, ar.ids);
  await assertLookupSampled(spec, 240);
});

// ---------------------------------------------------------------- the device's plain steps

Deno.test("lookup on the GPU: greedy equals AR, plain steps decoded in device submissions", async () => {
  const gpu = await gpuPair();
  const prompt = tok.encode(REPEATED);
  const ar = await collect(decode("ar", gpu.target, undefined, prompt, {
    tree: {},
    maxTokens: 40,
    sampling: GREEDY,
    seed: 0,
    eosIds: [],
  }));
  assert.deepEqual((await lookupRun(gpu, prompt, 40, GREEDY, 0)).ids, ar.ids);
  // A drafter that proposes nothing and says so for 8 steps at a time: the engine decodes them on the
  // device as AR does (one readback per 8 tokens), with the same tokens.
  let observed = 0;
  const silent: Drafter = {
    kind: "lookup",
    needsDraftModel: false,
    draft: (input) =>
      Promise.resolve({
        tokens: Int32Array.of(input.history[input.history.length - 1]),
        parent: Int32Array.of(-1),
        depth: Int32Array.of(0),
        children: [[]],
        q: [undefined],
        slotOf: Int32Array.of(-1),
        forwards: 0,
        plainSteps: 8,
      }),
    observe: () => void observed++,
  };
  const r = await collect(generateSpeculative(gpu.target, undefined, prompt, {
    drafter: silent,
    verifier: "match",
    maxTokens: 40,
    sampling: GREEDY,
    seed: 0,
  }));
  assert.deepEqual(r.ids, ar.ids);
  assert.equal(observed, 40, "every plain step observed");
  assert.equal(r.steps.length, 40);
  assert.ok(r.stats.syncs <= 40 / 8 + 2, `${r.stats.syncs} syncs for 40 tokens`);
});

// ---------------------------------------------------------------- a server with no draft model

Deno.test("server without a draft model: method lookup answers exactly like AR; status lists it; sequoia 400", async () => {
  const { target } = await cpuPair();
  const app = createApp(localService({ name: "tiny", model: target, tokenizer: tok }));
  const ask = async (body: Record<string, unknown>) =>
    await app.request("/v1/generate", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: REPEATED, max_tokens: 32, temperature: 0, ...body }),
    });
  const ar = await (await ask({ method: "ar" })).json();
  const res = await ask({ method: "lookup", tree_size: 8 });
  const lk = await res.json();
  assert.equal(res.status, 200, JSON.stringify(lk));
  assert.equal(lk.method, "lookup");
  assert.deepEqual(lk.tokens, ar.tokens);
  assert.ok(lk.stats.tokensPerStep > 1, `${lk.stats.tokensPerStep} tokens/step`);
  assert.ok(lk.timings.draft_n > 0 && lk.timings.draft_n_accepted > 0, JSON.stringify(lk.timings));
  const st = await (await app.request("/v1/status")).json();
  assert.deepEqual(st.methods, ["ar", "lookup"]);
  const bad = await ask({ method: "sequoia" });
  assert.equal(bad.status, 400);
  assert.match((await bad.json()).error.message, /needs a draft model/);
  const metrics = await (await app.request("/metrics")).text();
  assert.match(metrics, /specdec_spec_decode_drafts_total\{method="lookup"\} [1-9]/);
});
