/**
 * The fused tree step (FusedTreeStep on GpuLlama) driven directly with a hand-built plan for a tiny
 * random pair: drawn tokens against the CPU draft's top-k choices (temperature 0), target logits against
 * a CPU forward over the same tree, q rows against the CPU draft distributions when sampling, and plans
 * over a limit refused with the numbers named and both caches untouched.
 *
 * The tree (breadth-first): root 0 with children 1, 2; node 1 with children 3, 4; node 2 with child 5.
 * The draft runs the k = 2 pending tokens (the root last) and then level 1; leaves are never forwarded.
 */
import assert from "node:assert/strict";
import { Gpu } from "../src/gpu/device.ts";
import { GpuLlama } from "../src/gpu/llama/model.ts";
import { MAX_CHILDREN } from "../src/gpu/ops.ts";
import { openCheckpoint } from "../src/model/folder.ts";
import { loadCpuModel } from "../src/cpu/load.ts";
import type { CpuLlama } from "../src/cpu/llama.ts";
import type { FusedTreeStepPlan } from "../src/model/capabilities.ts";
import { GREEDY, probabilities, type SamplingParams } from "../src/model/sampling.ts";
import { randomTensors, SMALL_CONFIG, smallConfig, writeModelFolder } from "./fixtures/random_model.ts";
import { maxRelErr } from "./fixtures/numeric.ts";

const gpu = await Gpu.acquire();

/** Same tolerance as gpu_model_test.ts: f32 with another summation order, relative to the largest |b|. */
const TOL = 2e-4;
/** The b largest logits' indices, ties by lower index (what tree_draw picks at temperature 0). */
function topB(row: Float32Array, b: number): number[] {
  return Array.from(row.keys()).sort((x, y) => row[y] - row[x] || x - y).slice(0, b);
}

const PREFIX = [1, 17, 40, 5, 63, 22, 9];
const PENDING = [70, 3]; // not yet in the draft's cache; the root (3) is already after the target's
const PARENT = [-1, 0, 0, 1, 1, 2];
const N = PARENT.length;

/** (rows, past + rows) mask: columns [0, cached), plus each row's ancestors (node -> column, -1: none). */
function ancestorMask(
  rows: number[],
  past: number,
  colOf: (node: number) => number,
  cached: number,
): Uint8Array {
  const w = past + rows.length;
  const m = new Uint8Array(rows.length * w);
  rows.forEach((r, i) => {
    m.fill(1, i * w, i * w + cached);
    for (let a = r; a >= 0; a = PARENT[a]) {
      const c = colOf(a);
      if (c >= 0) m[i * w + c] = 1;
    }
  });
  return m;
}

const depth = (i: number): number => (PARENT[i] < 0 ? 0 : 1 + depth(PARENT[i]));

/** The plan for the tree above, with the draft cache at PREFIX.length and the target's at PREFIX + 1. */
function plan(sampling: SamplingParams, wantQ: boolean): FusedTreeStepPlan {
  const P = PREFIX.length, rootPos = P + PENDING.length - 1, rootSlot = rootPos;
  // Level 1 (nodes 1, 2) after prefix + pending in the draft: the root is slot rootSlot, node i column past + (i - 1).
  const levelPast = P + PENDING.length;
  const level1 = [1, 2];
  const targetPast = P + 1;
  return {
    nodes: N,
    pending: PENDING,
    forwards: [
      {
        tokOffset: N,
        positions: Int32Array.of(P, P + 1),
        draw: Uint32Array.of(0, 0, 0, 1, 2, 0), // only the root (last pending row) draws: nodes 1, 2
      },
      {
        tokOffset: 1,
        positions: Int32Array.from(level1, (i) => rootPos + depth(i)),
        mask: ancestorMask(level1, levelPast, (a) => (a === 0 ? rootSlot : levelPast + a - 1), levelPast),
        draw: Uint32Array.of(3, 2, 1, 5, 1, 2),
      },
    ],
    target: {
      positions: Int32Array.from({ length: N }, (_, i) => rootPos + depth(i)),
      mask: ancestorMask(
        Array.from({ length: N }, (_, i) => i),
        targetPast,
        (a) => targetPast + a,
        targetPast,
      ),
    },
    sampling,
    seed: 12345,
    draw: "swor",
    wantQ,
  };
}

interface Pair {
  target: GpuLlama;
  draft: GpuLlama;
  cpuTarget: CpuLlama;
  cpuDraft: CpuLlama;
  close(): void;
}

async function pair(): Promise<Pair> {
  const load = async (seed: number) => {
    const dir = Deno.makeTempDirSync({ prefix: "gpu_fused_" });
    await writeModelFolder(dir, SMALL_CONFIG, randomTensors(smallConfig(), seed, "F16"));
    const f = await openCheckpoint(dir);
    return { f, gpu: await GpuLlama.load(gpu, f, { maxBatch: 16 }), cpu: await loadCpuModel(f) };
  };
  const t = await load(5), d = await load(9);
  const prefill = async (m: { forward: GpuLlama["forward"] }, tokens: number[]) => {
    await m.forward({
      tokens: Int32Array.from(tokens),
      positions: Int32Array.from(tokens, (_, i) => i),
      logitRows: [tokens.length - 1],
    });
  };
  // The target holds everything before the root; the draft lacks the pending tokens.
  for (const m of [t.gpu, t.cpu]) await prefill(m, [...PREFIX, PENDING[0]]);
  for (const m of [d.gpu, d.cpu]) await prefill(m, PREFIX);
  return {
    target: t.gpu,
    draft: d.gpu,
    cpuTarget: t.cpu,
    cpuDraft: d.cpu,
    close() {
      t.gpu.dispose();
      d.gpu.dispose();
      t.f.checkpoint.close();
      d.f.checkpoint.close();
    },
  };
}

/** The CPU draft's logits for the plan's forwards: (2, V) for the pending rows, (2, V) for level 1. */
async function cpuDraftLogits(cpu: CpuLlama, p: FusedTreeStepPlan, tokens: ArrayLike<number>) {
  const f0 = await cpu.forward({ tokens: Int32Array.from(PENDING), positions: p.forwards[0].positions });
  const f1 = await cpu.forward({
    tokens: Int32Array.of(tokens[1], tokens[2]),
    positions: p.forwards[1].positions,
    mask: p.forwards[1].mask,
  });
  return { f0, f1 };
}

Deno.test("fused tree step (T = 0): drawn tokens are the CPU top-k, target logits the CPU tree forward", async () => {
  const { target, draft, cpuTarget, cpuDraft, close } = await pair();
  const lim = target.fusedTreeLimits(draft)!;
  assert.deepEqual(lim, { maxDraftRows: 16, maxNodes: 16, maxChildren: MAX_CHILDREN });
  const p = plan(GREEDY, false);
  const before = { ...target.counters }, draftSubs = draft.counters.submissions;
  const r = await target.fusedTreeStep(draft, p);
  assert.equal(target.counters.readbacks - before.readbacks, 1, "one readback");
  assert.equal(target.counters.submissions - before.submissions, 1);
  assert.equal(draft.counters.submissions - draftSubs, 1);
  assert.equal(r.q, undefined);
  assert.equal(draft.kv.length, PREFIX.length + PENDING.length + 2);
  assert.equal(target.kv.length, PREFIX.length + 1 + N);

  const V = target.config.vocabSize;
  const { f0, f1 } = await cpuDraftLogits(cpuDraft, p, r.tokens);
  const row = (l: Float32Array, i: number) => l.subarray(i * V, (i + 1) * V);
  const want = [PENDING[1], ...topB(row(f0, 1), 2), ...topB(row(f1, 0), 2), ...topB(row(f1, 1), 1)];
  assert.deepEqual(Array.from(r.tokens), want);

  const cpuLogits = await cpuTarget.forward({ tokens: Int32Array.from(want), ...p.target });
  const err = maxRelErr(r.targetLogits, cpuLogits);
  assert.ok(err < TOL, `target logits err ${err}`);
  close();
});

Deno.test("fused tree step (sampling): q rows are the CPU draft distributions, children distinct", async () => {
  const { target, draft, cpuDraft, close } = await pair();
  const sampling = { temperature: 0.8, topK: 0, topP: 1 };
  const p = plan(sampling, true);
  const r = await target.fusedTreeStep(draft, p);
  const V = target.config.vocabSize;
  const { f0, f1 } = await cpuDraftLogits(cpuDraft, p, r.tokens);
  const row = (l: Float32Array, i: number) => l.subarray(i * V, (i + 1) * V);
  const q = r.q!;
  // Node 0's q is the root's row (pending row 1; pending row 0 draws nothing and must not overwrite it).
  const wantQ = [row(f0, 1), row(f1, 0), row(f1, 1)].map((l) => probabilities(l, sampling));
  wantQ.forEach((w, i) => {
    const err = maxRelErr(q.subarray(i * V, (i + 1) * V), w);
    assert.ok(err < 1e-3, `q row ${i} err ${err}`);
  });
  for (let i = 3; i < N; i++) {
    assert.ok(q.subarray(i * V, (i + 1) * V).every((x) => x === 0), `q row ${i} zero`);
  }
  assert.notEqual(r.tokens[1], r.tokens[2], "children of the root drawn without replacement");
  assert.notEqual(r.tokens[3], r.tokens[4]);
  for (let i = 1; i < N; i++) {
    assert.ok(q[PARENT[i] * V + r.tokens[i]] > 0, `node ${i} drawn from its parent's q`);
  }
  close();
});

Deno.test("fused tree step: plans over a limit are refused with the numbers named, caches untouched", async () => {
  const { target, draft, cpuDraft, close } = await pair();
  const L = { t: target.kv.length, d: draft.kv.length };
  const p = plan(GREEDY, false);
  await assert.rejects(
    target.fusedTreeStep(draft, { ...p, nodes: 14 }),
    /14 nodes \+ 2 pending \+ 1 exceed the draft's maxDraftRows 16/,
  );
  const wide = { ...p.forwards[0], draw: Uint32Array.of(0, 0, 0, 1, MAX_CHILDREN + 1, 0) };
  await assert.rejects(
    target.fusedTreeStep(draft, { ...p, forwards: [wide, p.forwards[1]] }),
    new RegExp(`draws ${MAX_CHILDREN + 1} children \\(max ${MAX_CHILDREN}\\)`),
  );
  const outside = { ...p.forwards[1], draw: Uint32Array.of(3, 2, 1, 5, 2, 2) };
  await assert.rejects(
    target.fusedTreeStep(draft, { ...p, forwards: [p.forwards[0], outside] }),
    /row 1 draws nodes \[5, 7\) outside \[1, 6\)/,
  );
  const badMask = { ...p.target, mask: p.target.mask.subarray(1) };
  await assert.rejects(
    target.fusedTreeStep(draft, { ...p, target: badMask }),
    /mask has 83 entries, expected 6 x 14/,
  );
  assert.deepEqual({ t: target.kv.length, d: draft.kv.length }, L);
  // Not a pair: a model with itself, or with a CPU model.
  assert.equal(target.fusedTreeLimits(target), undefined);
  assert.equal(target.fusedTreeLimits(cpuDraft), undefined);
  // And the pair still runs a step after the refusals.
  const r = await target.fusedTreeStep(draft, p);
  assert.equal(r.tokens.length, N);
  close();
});
