/**
 * `--method auto`'s per-request choice on hand-made costs (pure arithmetic, milliseconds): AR wins when
 * the draft is too expensive, Sequoia with good acceptance, lookup on a prompt that repeats itself (and
 * not on one that does not), SpecExec when its measured budget is the fastest; exclusions, the
 * no-profile rule; and lookup's self-repetition replay on constructed token sequences.
 */
import assert from "node:assert/strict";
import {
  arMsPerToken,
  chooseMethod,
  predictLookup,
  predictSequoia,
  type ProfileCosts,
} from "../src/runtime/method_choice.ts";
import { LOOKUP_DEFAULTS, replayLookup } from "../src/speculative/drafters/lookup.ts";
import { type MeasuredCosts, planForPick, rankTrees } from "../src/speculative/tree_choice.ts";

/** A GPU-like adapter: verifying 16 tokens costs little more than 1; a 5 ms readback per step. */
const FLAT: MeasuredCosts = {
  sizes: [1, 2, 4, 8, 16, 32],
  target: [10, 10.2, 10.5, 11, 12, 14],
  draft: [1, 1, 1.05, 1.1, 1.2, 1.4],
  sync: 5,
  arTokensPerSubmission: 8,
  host: { ar: 0.1, step: [0.2, 0.01] },
};
/** The same adapter with a draft as slow as the target. */
const SLOW_DRAFT: MeasuredCosts = { ...FLAT, draft: FLAT.target.map((t) => t * 1.5) };

const GOOD = [0.8, 0.1, 0.04, 0.02, 0.01, 0.01];
const POOR = [0.3, 0.1, 0.05, 0.03, 0.02, 0.01];

/** A passage of 24 distinct tokens. */
const PASSAGE = Array.from({ length: 24 }, (_, i) => 100 + i);
/** Text that repeats itself: the passage three times (an edit prompt quoting its input, say). */
const REPEATING = [...PASSAGE, ...PASSAGE, ...PASSAGE];
/** Text that never repeats a token. */
const FRESH = Array.from({ length: 72 }, (_, i) => 300 + i);

const byMethod = (c: ReturnType<typeof chooseMethod>) =>
  Object.fromEntries(c.predictions.map((p) => [p.method, p.tokPerS]));

Deno.test("method choice: AR's prediction is t(1) + sync / k + host", () => {
  assert.equal(arMsPerToken(FLAT), 10 + 5 / 8 + 0.1);
  const c = chooseMethod({ costs: FLAT, exclude: [] });
  assert.equal(c.method, "ar");
  assert.ok(Math.abs(byMethod(c).ar - 1000 / (10 + 5 / 8 + 0.1)) < 1e-9);
});

Deno.test("method choice: AR wins when the draft is too expensive; Sequoia when acceptance is good", () => {
  const slow = chooseMethod({ costs: SLOW_DRAFT, sequoia: { acceptance: POOR } });
  assert.equal(slow.method, "ar", slow.reason.summary);
  assert.ok(byMethod(slow).sequoia < byMethod(slow).ar);
  assert.equal(slow.reason.rule, "fastest predicted");
  assert.equal(slow.reason.speedup, 1);
  assert.equal(slow.reason.runnerUp?.method, "sequoia");

  const good = chooseMethod({ costs: FLAT, sequoia: { acceptance: GOOD } });
  assert.equal(good.method, "sequoia", good.reason.summary);
  assert.ok(good.reason.speedup! > 1.5, good.reason.summary);
  // The winner's tree is the hardware-aware pick at this acceptance vector (tree_choice.ts).
  const pick = rankTrees(planForPick(GOOD), FLAT)[0];
  assert.deepEqual(good.tree, { treeSize: pick.n, depth: pick.depth });
  assert.equal(byMethod(good).sequoia, pick.tokPerS);
});

Deno.test("method choice: Sequoia at the request's shape is the ranked table's entry for it", () => {
  const plan = planForPick(GOOD);
  const row = rankTrees(plan, FLAT).find((r) => r.n === 8 && r.depth === 3)!;
  const p = predictSequoia(FLAT, plan, { treeSize: 8, depth: 3 })!;
  assert.ok(Math.abs(p.tokPerS - row.tokPerS) < 1e-9, `${p.tokPerS} vs ${row.tokPerS}`);
  assert.deepEqual(p.tree, { treeSize: 8, depth: 3 });
});

Deno.test("method choice: lookup wins on a prompt that repeats itself, loses on one that does not", () => {
  const sequoia = { acceptance: POOR };
  const rep = chooseMethod({ costs: FLAT, sequoia, lookup: replayLookup(REPEATING) });
  assert.equal(rep.method, "lookup", rep.reason.summary);
  assert.deepEqual(rep.tree, { treeSize: LOOKUP_DEFAULTS.budget, depth: LOOKUP_DEFAULTS.depth });
  const fresh = chooseMethod({ costs: FLAT, sequoia, lookup: replayLookup(FRESH) });
  assert.notEqual(fresh.method, "lookup", fresh.reason.summary);
  // Nothing ever matched: every replayed step is a plain one, decoded as AR's, so the two tie and AR,
  // first in the tie-break order, wins the pair.
  assert.ok(Math.abs(byMethod(fresh).lookup - byMethod(fresh).ar) < 1e-9);
  assert.equal(fresh.predictions[0].method, "ar");
  const noDraft = chooseMethod({ costs: FLAT, lookup: replayLookup(FRESH) });
  assert.equal(noDraft.method, "ar");
  assert.deepEqual(noDraft.excluded.map((e) => e.method), ["sequoia", "specexec"]);
});

Deno.test("method choice: lookup's tok/s is the replay's tokens over its steps' t(n) (plain steps at AR's cost)", () => {
  const replay = { budget: 16, depth: 8, nodes: [1, 9, 5], accepted: [0, 8, 2], meanAccepted: 10 / 3 };
  const p = predictLookup(FLAT, replay);
  const step = (n: number, t: number) => t + FLAT.sync + 0.2 + 0.01 * n;
  // t(9) and t(5) interpolated between the measured sizes.
  const ms = arMsPerToken(FLAT) + step(9, 11 + (12 - 11) / 8) + step(5, 10.5 + (11 - 10.5) / 4);
  assert.ok(Math.abs(p.tokPerS - 1000 * 13 / ms) < 1e-9, `${p.tokPerS}`);
  assert.equal(p.tokensPerStep, 13 / 3);
  // A target-only profile (no draft costs) predicts lookup alike.
  const { draft: _, ...targetOnly } = FLAT;
  assert.equal(predictLookup(targetOnly as ProfileCosts, replay).tokPerS, p.tokPerS);
});

Deno.test("method choice: SpecExec wins when its measured budget is the fastest", () => {
  const budgets = [
    { budget: 32, tokPerS: 150, tokensPerStep: 3 },
    { budget: 64, tokPerS: 400, tokensPerStep: 6 },
    { budget: 128, tokPerS: 300, tokensPerStep: 7 },
  ];
  const c = chooseMethod({ costs: FLAT, sequoia: { acceptance: POOR }, specexec: { budgets } });
  assert.equal(c.method, "specexec", c.reason.summary);
  assert.deepEqual(c.tree, { budget: 64 });
  const best = c.predictions[0];
  assert.equal(best.basis, "measured");
  assert.equal(best.stepMs, 1000 * 6 / 400);
  // A request's own budget: its row, or the nearest measured one (by ratio), said in a note.
  const own = chooseMethod({ costs: FLAT, specexec: { budgets, budget: 128 } });
  assert.equal(byMethod(own).specexec, 300);
  const near = chooseMethod({ costs: FLAT, specexec: { budgets, budget: 100 } });
  const p = near.predictions.find((x) => x.method === "specexec")!;
  assert.equal(p.tokPerS, 300);
  assert.deepEqual(p.tree, { budget: 100 });
  assert.match(p.note!, /K = 100 was not measured; predicted at K = 128/);
});

Deno.test("method choice: exclusions, no profile, nothing left", () => {
  // The request sets tree_size: ar and specexec do not read it.
  const exclude = [
    { method: "ar" as const, why: "the request sets tree_size, which ar does not read" },
    { method: "specexec" as const, why: "the request sets tree_size, which specexec does not read" },
  ];
  const c = chooseMethod({
    costs: SLOW_DRAFT,
    sequoia: { acceptance: POOR },
    lookup: replayLookup(FRESH),
    exclude,
  });
  assert.deepEqual(c.predictions.map((p) => p.method).sort(), ["lookup", "sequoia"]);
  assert.equal(c.reason.arTokPerS, 1000 / arMsPerToken(SLOW_DRAFT), "AR stays the yardstick");
  // No hardware profile (the CPU reference): nothing predicted; ar, else the first method allowed.
  const none = chooseMethod({ lookup: replayLookup(REPEATING) });
  assert.equal(none.method, "ar");
  assert.equal(none.reason.rule, "no hardware profile");
  assert.deepEqual(none.predictions, []);
  assert.equal(chooseMethod({ exclude, sequoia: { acceptance: POOR } }).method, "sequoia");
  assert.throws(
    () => chooseMethod({ costs: FLAT, exclude: [{ method: "ar", why: "x" }] }),
    /every method is excluded/,
  );
});

Deno.test("lookup replay: a repeated passage is predicted from its earlier copy, a fresh text not at all", () => {
  // Second half = the third copy and half of the second: the index holds the tokens before each root.
  const r = replayLookup(REPEATING);
  assert.equal(r.budget, LOOKUP_DEFAULTS.budget);
  assert.ok(r.accepted.every((a) => a === LOOKUP_DEFAULTS.depth), `${r.accepted}`);
  assert.equal(r.meanAccepted, LOOKUP_DEFAULTS.depth);
  // Every step is the copy's continuation, one path of `depth` nodes below the root.
  assert.ok(r.nodes.every((n) => n === 1 + LOOKUP_DEFAULTS.depth));
  // Steps cover the second half: each emits accepted + 1 tokens (the last one cut by the text's end).
  const emitted = r.accepted.reduce((s, a) => s + a + 1, 0);
  assert.ok(emitted >= REPEATING.length - 1 - REPEATING.length / 2, `${emitted}`);

  const f = replayLookup(FRESH);
  assert.equal(f.nodes.length, FRESH.length - 1 - FRESH.length / 2, "one plain step per token");
  assert.ok(f.nodes.every((n) => n === 1) && f.meanAccepted === 0);
  assert.deepEqual(replayLookup([7]), { budget: 16, depth: 8, nodes: [], accepted: [], meanAccepted: 0 });
});

Deno.test("lookup replay: only earlier tokens are used; a match's start, the budget and the window", () => {
  // The second half is the first half reversed: every token was seen, but followed by another one.
  const half = Array.from({ length: 20 }, (_, i) => 10 + i);
  const r = replayLookup([...half, ...half.slice().reverse()]);
  assert.ok(r.accepted.every((a) => a === 0), `${r.accepted}`);
  assert.ok(r.nodes.some((n) => n > 1), "it did propose (one-token matches)");
  // A copy starting at the half: the first step's match is one token long, so it risks 1 + 2 x 1 nodes
  // (the drafter's rule) and accepts both; the next, with a longer match, the depth cap.
  const two = replayLookup([...PASSAGE, ...PASSAGE], { budget: 32, depth: 6 });
  assert.deepEqual(two.nodes.slice(0, 2), [3, 7]);
  assert.deepEqual(two.accepted.slice(0, 2), [2, 6]);
  // The budget caps the tree (root included) whatever the depth.
  assert.ok(replayLookup(REPEATING, { budget: 4 }).nodes.every((n) => n <= 4));
  // A long text: only the last `window` positions are replayed.
  const long = Array.from({ length: 3000 }, (_, i) => i % 500);
  assert.ok(replayLookup(long, { window: 100 }).nodes.length <= 100);
  assert.throws(() => replayLookup(REPEATING, { budget: 0 }), /budget and depth must be >= 1, got 0 and 8/);
});
