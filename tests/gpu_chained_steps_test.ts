/**
 * Chained fused steps (several speculative steps, one readback: src/gpu/llama/multi_step.ts): the two
 * chain kernels against their CPU twins on seeded, awkward sizes, then whole generations on the tiny
 * pair: greedy chained Sequoia equals AR, sampled chained output equals the unchained output at the
 * same seed (the chain consumes the RNG as single steps do), with far fewer syncs per token.
 */
import assert from "node:assert/strict";
import { Gpu } from "../src/gpu/device.ts";
import { PipelineCache } from "../src/gpu/pipelines.ts";
import { Recorder, UniformArena } from "../src/gpu/recorder.ts";
import * as ops from "../src/gpu/ops.ts";
import { chainInputsCpu, chainStateCpu, NONE } from "../src/gpu/llama/step_chain.ts";
import { chainLength } from "../src/speculative/engine.ts";
import { decode } from "../src/speculative/decode.ts";
import { GREEDY, type SamplingParams } from "../src/model/sampling.ts";
import { Rng } from "../src/util/rng.ts";
import { ACC, gpuPair, prompts, run } from "./fixtures/exact.ts";

const gpu = await Gpu.acquire();
const ctx: ops.OpContext = {
  rec: new Recorder(gpu, new UniformArena(gpu)),
  pipelines: new PipelineCache(gpu),
};
const upload = (a: Uint32Array) => gpu.createBufferWith("test", a);
const words = (rng: Rng, n: number, max = 0x100000000) =>
  Uint32Array.from({ length: n }, () => Math.floor(rng.next() * max) >>> 0);

Deno.test("gpu: chain_inputs makes positions absolute and ORs vis into every mask row, as its CPU twin", async () => {
  const rng = new Rng(7);
  for (
    const [rows, maskWords, posOffset, maskOffset, shift] of [[1, 1, 0, 0, 0], [3, 5, 2, 7, 1], [
      37,
      3,
      11,
      5,
      1,
    ]]
  ) {
    const state = Uint32Array.of(1000 + Math.floor(rng.next() * 5000), 0, 0, 0);
    const vis = words(rng, maskWords + 2);
    const positions = words(rng, posOffset + rows + 3, 300);
    const mask = words(rng, maskOffset + rows * maskWords + 4);
    const bufs = [upload(state), upload(vis), upload(positions), upload(mask)];
    const a = { rows, posOffset, shift, maskOffset, maskWords };
    await ops.chainInputs(ctx, { state: bufs[0], vis: bufs[1], positions: bufs[2], mask: bufs[3], ...a });
    await ctx.rec.submit();
    chainInputsCpu({ state, vis, positions, mask, ...a });
    assert.deepEqual(
      new Uint32Array(await gpu.read(bufs[2], positions.byteLength)),
      positions,
      `positions ${rows}`,
    );
    assert.deepEqual(
      new Uint32Array(await gpu.read(bufs[3], mask.byteLength)),
      mask,
      `mask ${rows}x${maskWords}`,
    );
  }
});

Deno.test("gpu: chain_state carries a step's result into the next step's state, as its CPU twin", async () => {
  const rng = new Rng(11);
  // (nodes, accepted, draft-kept, x slot): none accepted, all kept (the last hidden), a leaf ending the path.
  const cases: [number, number, number, number][] = [[5, 0, 0, NONE], [9, 3, 3, 40], [33, 4, 3, 70], [
    2,
    1,
    0,
    3,
  ]];
  for (const [n, count, kept, xSlot] of cases) {
    const maxDepth = Math.max(count, 1) + 1, dOff = 2 + maxDepth + 3;
    const out = words(rng, dOff + 5);
    out[0] = count;
    out[1] = 1234;
    for (let i = 0; i < count; i++) out[2 + i] = (((i + 1) << 24) | (100 + i)) >>> 0;
    out[dOff] = kept;
    const state = Uint32Array.of(500, 9, 9, 9);
    const visT = words(rng, 16), visD = words(rng, 8);
    const tokens = words(rng, n + 4, 5000);
    const results = words(rng, 3 * (2 + maxDepth));
    const a = { n, maxDepth, targetBase: 190, xSlot, rootSlot: 45, dOffset: dOff, rOffset: 2 + maxDepth };
    const b = [out, state, visT, visD, tokens, results].map(upload);
    await ops.chainState(ctx, {
      out: b[0],
      state: b[1],
      visT: b[2],
      visD: b[3],
      tokens: b[4],
      results: b[5],
      ...a,
    });
    await ctx.rec.submit();
    const x = count ? out[1 + count] & 0xffffff : tokens[0];
    chainStateCpu({ out, state, visT, visD, tokens, results, ...a });
    const read = async (i: number, like: Uint32Array) =>
      new Uint32Array(await gpu.read(b[i], like.byteLength));
    const at = `n ${n}, ${count} accepted, ${kept} kept`;
    assert.deepEqual(await read(1, state), state, `state: ${at}`);
    assert.deepEqual(await read(2, visT), visT, `target vis: ${at}`);
    assert.deepEqual(await read(3, visD), visD, `draft vis: ${at}`);
    assert.deepEqual(await read(4, tokens), tokens, `tokens: ${at}`);
    assert.deepEqual(await read(5, results), results, `results: ${at}`);
    // The twin's own rules, by hand: the next root and pending rows, the position, the visible rows.
    assert.equal(state[0], 500 + 1 + count);
    assert.deepEqual([tokens[0], tokens[n], tokens[n + 1]], [1234, x, 1234]);
    const bit = (v: Uint32Array, s: number) => (v[s >>> 5] >>> (s & 31)) & 1;
    for (let i = 0; i <= count; i++) assert.equal(bit(visT, 190 + i), 1, `target row ${190 + i} shown`);
    if (xSlot !== NONE) assert.equal(bit(visD, xSlot), 1, "the x row shown");
    const shown = kept === count ? kept : kept + 1;
    for (let i = 0; i < shown; i++) assert.equal(bit(visD, 45 + i), 1, `draft row ${45 + i} shown`);
  }
});

Deno.test("chainLength: bounded by the steps wanted, the tokens left, the caches' room and maxBatch", () => {
  const shape = { depth: Int32Array.of(0, 1, 1, 2, 2, 3) }; // 6 nodes, depth 3
  const first = { shape, forwards: [{ positions: [0] }, { positions: [0, 0] }, { positions: [0, 0] }] };
  const rest = { shape, forwards: [{ positions: [0, 0] }, { positions: [0, 0] }, { positions: [0, 0] }] };
  const room = { wanted: 8, left: 1000, tokensPerStep: 2, targetRoom: 1000, draftRoom: 1000, maxBatch: 256 };
  assert.equal(chainLength(first, rest, room), 8);
  assert.equal(chainLength(first, rest, { ...room, left: 7 }), 4, "ceil(7 / 2) steps cover 7 tokens");
  // Target: steps 1 .. K - 1 start 1 + 3 rows apart, the last writes 6: 6 + 4 (K - 1) <= 20.
  assert.equal(chainLength(first, rest, { ...room, targetRoom: 20 }), 4);
  // Draft: 1 pending + 3, then 2 + 3 a step, the last writes 6 rows: 1 + 3 + 5 (K - 2) + 6 <= 20.
  assert.equal(chainLength(first, rest, { ...room, draftRoom: 20 }), 4);
  assert.equal(chainLength(first, rest, { ...room, maxBatch: 16 }), 3, "3 x (2 + depth 3) moves fit 16");
  assert.equal(chainLength(first, rest, { ...room, targetRoom: 3 }), 1, "never below one step");
});

/** A Sequoia generation's ids and syncs (readbacks, counted by the step events). */
async function sequoia(
  prompt: number[],
  maxTokens: number,
  sampling: SamplingParams,
  seed: number,
  mode: "single" | "chained" | "overlapped",
): Promise<{ ids: number[]; syncs: number; steps: number; submittedAtFirst: number }> {
  const pair = await gpuPair();
  const ids: number[] = [];
  let syncs = 0, steps = 0, submittedAtFirst = -1;
  const submissions = () => pair.target.counters.submissions;
  const s0 = submissions();
  for await (
    const ev of decode("sequoia", pair.target, pair.draft, prompt, {
      tree: { treeSize: 12, depth: 5 },
      acceptance: ACC,
      maxTokens,
      sampling,
      seed,
      eosIds: [],
      stream: mode !== "chained",
      stepsPerReadback: mode === "single" ? 1 : 6,
      streamChain: mode === "overlapped",
    })
  ) {
    if (ev.type === "token") ids.push(ev.id);
    if (ev.type === "step") {
      if (steps === 0) submittedAtFirst = submissions() - s0;
      syncs += ev.stats.syncs;
      steps++;
    }
  }
  return { ids, syncs, steps, submittedAtFirst };
}

Deno.test("exactness: chained Sequoia steps (one readback for several, or overlapped) equal AR greedy on the GPU", async () => {
  const [p, p2] = await prompts(2);
  for (const prompt of [p, p2]) {
    // 80 tokens: chains end mid-way (the consumer stops), so the early-stop compaction runs too.
    const ar = (await run(await gpuPair(), "ar", prompt, 80)).ids;
    const single = await sequoia(prompt, 80, GREEDY, 0, "single");
    const chained = await sequoia(prompt, 80, GREEDY, 0, "chained");
    const overlapped = await sequoia(prompt, 80, GREEDY, 0, "overlapped");
    assert.deepEqual(single.ids, ar, "single steps equal AR");
    assert.deepEqual(chained.ids, ar, "chained steps equal AR");
    assert.deepEqual(overlapped.ids, ar, "overlapped chained steps equal AR");
    assert.ok(single.steps < 80, "the draft is accepted sometimes");
    // One sync per chain of up to 6 steps: well under one per step; overlapped, one per step.
    assert.ok(
      chained.syncs * 3 <= chained.steps,
      `${chained.syncs} syncs for ${chained.steps} chained steps (single: ${single.syncs} for ${single.steps})`,
    );
    assert.equal(overlapped.syncs, single.syncs, "overlapped: one sync a step, as single steps");
    // Overlapped, the next step's target work was submitted before the first step's path was read.
    assert.equal(overlapped.submittedAtFirst, single.submittedAtFirst + 1, "one step in flight");
  }
});

Deno.test("exactness: chained sampled Sequoia steps draw as single steps do at the same seed", async () => {
  const [p] = await prompts(1);
  const sampling = { temperature: 0.8, topK: 0, topP: 1 };
  for (const seed of [3, 4]) {
    const single = await sequoia(p, 48, sampling, seed, "single");
    const chained = await sequoia(p, 48, sampling, seed, "chained");
    const overlapped = await sequoia(p, 48, sampling, seed, "overlapped");
    assert.deepEqual(chained.ids, single.ids, `seed ${seed}: chained`);
    assert.deepEqual(overlapped.ids, single.ids, `seed ${seed}: overlapped`);
    assert.ok(chained.syncs < single.syncs, `${chained.syncs} vs ${single.syncs} syncs`);
  }
});
