/**
 * The engine's dispatch overheads: cached bind groups (one per parameter slot and buffers, reused across
 * submissions, cleared when the arena grows), pooled readback staging buffers (reuse, concurrent reads), one pipeline
 * cache per device, and the number of dispatches a forward records per decoder layer.
 */
import assert from "node:assert/strict";
import { Gpu } from "../src/gpu/device.ts";
import {
  type Defines,
  pipelineBinding,
  PipelineCache,
  preprocess,
  shaderSource,
  storageKinds,
} from "../src/gpu/pipelines.ts";
import { Recorder, UniformArena } from "../src/gpu/recorder.ts";
import * as ops from "../src/gpu/ops.ts";
import { uploadMatrix } from "../src/gpu/tensor.ts";
import { GpuForward } from "../src/gpu/llama/forward.ts";
import { GpuWeights } from "../src/gpu/llama/weights.ts";
import { matVec } from "../src/cpu/ops.ts";
import { encodeTensor } from "../src/model/safetensors_write.ts";
import { type Checkpoint, DEFAULT_TARGET_DIR, openCheckpoint } from "../src/model/folder.ts";
import { Rng } from "../src/util/rng.ts";
import { randomTensors, SMALL_CONFIG, smallConfig, writeModelFolder } from "./fixtures/random_model.ts";

const gpu = await Gpu.acquire();

function rand(n: number, seed: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.next() * 2 - 1);
}

Deno.test("bind groups: one per parameter slot and buffers, reused by the next submission", async () => {
  // y += W x[t] three times over the SAME buffers with different x offsets: each dispatch must bind its
  // own parameter slot (a group bound to the wrong slot would add one W x[t] twice).
  const rows = 37, cols = 24; // 37: not a multiple of any tile
  const w = rand(rows * cols, 1), x = rand(3 * cols, 2);
  const W = uploadMatrix(gpu, "w", encodeTensor(w, "F32"), [rows, cols], "F32");
  const xb = gpu.createBufferWith("x", x), y = gpu.createBuffer("y", rows * 4);
  const arena = new UniformArena(gpu, 2); // 2 slots: the third dispatch grows it
  const ctx = { rec: new Recorder(gpu, arena), pipelines: new PipelineCache(gpu) };
  const want = new Float64Array(rows);
  for (const t of [0, 2, 1]) {
    const part = new Float32Array(rows);
    matVec(w, x.subarray(t * cols, (t + 1) * cols), rows, cols, part);
    part.forEach((v, i) => want[i] += v);
  }
  const run = async () => {
    for (const t of [0, 2, 1]) await ops.matmul(ctx, { w: W, x: xb, y, n: 1, xOffset: t * cols, acc: true });
    await ctx.rec.submit();
  };
  await run(); // grows the arena (groups cleared), one group per slot
  assert.ok(arena.capacity >= 3, `arena capacity ${arena.capacity}`);
  assert.equal(arena.stats.created, 3, "one group per slot");
  await run(); // y now holds twice the sum
  assert.equal(arena.stats.created, 3, "the second submission reuses them");
  assert.equal(arena.stats.reused, 3);
  const got = new Float32Array(await gpu.read(y, rows * 4));
  got.forEach((g, i) => {
    assert.ok(
      Math.abs(g - 2 * want[i]) <= 1e-4 * (1 + Math.abs(want[i])),
      `row ${i}: ${g} vs ${2 * want[i]}`,
    );
  });
  // Slot 0 with a different output buffer is a different group.
  const y2 = gpu.createBuffer("y2", rows * 4);
  await ops.matmul(ctx, { w: W, x: xb, y: y2, n: 1 });
  await ctx.rec.submit();
  assert.equal(arena.stats.created, 4);
  arena.destroy();
  for (const b of [xb, y, y2, W.parts[0].buffer]) b.destroy();
});

Deno.test("bind groups: a wrong binding count throws at record time, naming the launch", async () => {
  const ctx = { rec: new Recorder(gpu, new UniformArena(gpu)), pipelines: new PipelineCache(gpu) };
  const pl = await ctx.pipelines.get("rmsnorm");
  const b = gpu.createBuffer("b", 64);
  assert.throws(
    () => ctx.rec.dispatch("my norm", pl, [1, 4, 0], [b, b], [1]),
    /my norm: 2 storage bindings.*3/,
  );
  b.destroy();
});

Deno.test("pipelines: every shader's group 0 gets a shared explicit layout", () => {
  assert.deepEqual(
    storageKinds(
      "@group(0) @binding(0) var<uniform> p: P;\n@group(0) @binding(1) var<storage, read> a: array<f32>;\n" +
        "@group(0) @binding(2) var<storage, read_write> b: array<f32>;",
    ),
    ["r", "w"],
  );
  // Anything else keeps layout "auto": a gap, a texture binding, no uniform first.
  assert.equal(
    storageKinds("@group(0) @binding(0) var<uniform> p: P;\n@group(0) @binding(2) var<storage> a: f32;"),
    undefined,
  );
  assert.equal(storageKinds("@group(0) @binding(0) var<storage, read> a: array<f32>;"), undefined);
  assert.equal(
    storageKinds("@group(0) @binding(0) var<uniform> p: P;\n@group(0) @binding(1) var t: texture_2d<f32>;"),
    undefined,
  );
  for (const f of Deno.readDirSync(new URL("../shaders/", import.meta.url))) {
    const name = f.name.replace(/\.wgsl$/, "");
    const src = shaderSource(name);
    if (!src.includes("@binding(")) continue; // an //#include'd helper
    // Every //#if define off, then on (unroll counts 1): each variant's bindings, as PipelineCache sees them.
    const included = [...src.matchAll(/\/\/#include (\w+)/g)].map((m) => shaderSource(m[1]));
    const ifs = [...[src, ...included].join("\n").matchAll(/\/\/#if (\w+)/g)].map((m) => m[1]);
    const counts = [...src.matchAll(/\/\/#unroll \w+ (\w+)/g)].map((m) => m[1]);
    for (const on of [false, true]) {
      const defines: Defines = Object.fromEntries([...ifs.map((k) => [k, on]), ...counts.map((k) => [k, 1])]);
      const kinds = storageKinds(preprocess(name, src, defines));
      assert.ok(kinds, `${name} (//#if defines ${on}): group 0 is not uniform binding 0 + storage 1..N`);
    }
  }
});

Deno.test("pipelines: one cache per device; concurrent first uses compile once", async () => {
  const a = new PipelineCache(gpu), b = new PipelineCache(gpu);
  const defines = { DTYPE: 0, VEC: false, TN: 3, RPT: 5, ACC: false, SPLIT: false, WG: 8, PACK: false }; // a variant no one else uses
  const before = a.compiles;
  const [p1, p2] = await Promise.all([a.get("matmul", defines), b.get("matmul", defines)]);
  assert.equal(p1, p2);
  assert.equal(a.compiles, before + 1);
  assert.equal(await new PipelineCache(gpu).get("matmul", defines), p1);
  assert.ok(pipelineBinding(p1), "built with a shared explicit layout");
  assert.equal(b.compiles, before + 1);
});

Deno.test("staging: reads reuse buffers by size class; concurrent reads get their own", async () => {
  const bufs = Array.from(
    { length: 6 },
    (_, i) => gpu.createBufferWith(`src ${i}`, Uint32Array.from({ length: 300 + i }, (_, j) => i * 1000 + j)),
  );
  await gpu.read(bufs[0], 1200); // warm: one 2 KiB staging buffer
  const s0 = { ...gpu.stagingStats };
  for (let r = 0; r < 3; r++) assert.equal(new Uint32Array(await gpu.read(bufs[0], 1200))[299], 299);
  assert.equal(gpu.stagingStats.created, s0.created, "sequential reads of one class reuse one buffer");
  // Six reads in flight at once (same class): each its own staging buffer, each its own data.
  const all = await Promise.all(bufs.map((b, i) => gpu.read(b, (300 + i) * 4)));
  all.forEach((r, i) => {
    const u = new Uint32Array(r);
    assert.equal(u.length, 300 + i);
    assert.equal(u[0], i * 1000, `read ${i}`);
    assert.equal(u[u.length - 1], i * 1000 + 299 + i, `read ${i}`);
  });
  assert.ok(gpu.stagingStats.created - s0.created <= 6 - 1, "the warm buffer served one of them");
  // readMany shares the pool (2 KiB + 2 KiB -> a 4 KiB class), and reads with an offset.
  const s1 = { ...gpu.stagingStats };
  for (let r = 0; r < 3; r++) {
    const [x, y] = await gpu.readMany([{ buffer: bufs[1], size: 1204 }, { buffer: bufs[2], size: 8 }]);
    assert.deepEqual([new Uint32Array(x)[300], ...new Uint32Array(y)], [1300, 2000, 2001]);
  }
  assert.ok(
    gpu.stagingStats.created - s1.created <= 1,
    `readMany created ${gpu.stagingStats.created - s1.created}`,
  );
  assert.deepEqual([...new Uint32Array(await gpu.read(bufs[3], 8, 40))], [3010, 3011]);
  for (const b of bufs) b.destroy();
});

/** Dispatches outside the decoder layers of a one-part model: embedding, final norm, LM head. */
const OUTSIDE_LAYERS = 3;
/** Issue 17's target: dispatches per decoder layer per forward. */
const PER_LAYER = 8;

/** Dispatches one forward of n rows (logits for `rows`) records, and bind groups it creates/reuses. */
async function countForward(
  f: Checkpoint,
  n: number,
  rows: number[],
): Promise<{ dispatches: number; tally: Map<string, number> }> {
  const w = await GpuWeights.upload(gpu, f);
  const fp = new GpuForward(gpu, f.config, 64, 16, w, {
    submissions: 0,
    readbacks: 0,
    readbackBytes: 0,
    forwards: 0,
  });
  try {
    const tokens = Array.from({ length: n }, (_, i) => (i * 7 + 3) % f.config.vocabSize);
    const st = fp.inputs.stage("count", { tokens, positions: tokens.map((_, i) => i), logitRows: rows }, 0);
    fp.ctx.rec.tally = new Map();
    const d0 = fp.ctx.rec.dispatches;
    await fp.record({ ...st, tokens: fp.inputs.tokens, tokOffset: 0 });
    const dispatches = fp.ctx.rec.dispatches - d0;
    await fp.submit("count");
    return { dispatches, tally: fp.ctx.rec.tally };
  } finally {
    fp.destroy();
    w.destroy();
  }
}

Deno.test("dispatch count: the tiny target records <= 8 dispatches per layer at n = 1 and n = 16", async () => {
  const f = await openCheckpoint(DEFAULT_TARGET_DIR);
  const L = f.config.nLayers;
  for (const [n, rows] of [[1, [0]], [16, [15]], [16, Array.from({ length: 16 }, (_, i) => i)]] as const) {
    const { dispatches, tally } = await countForward(f, n, [...rows]);
    const perLayer = (dispatches - OUTSIDE_LAYERS) / L;
    console.log(
      `tiny target n=${n} rows=${rows.length}: ${dispatches} dispatches = ${L} x ${perLayer} + ${OUTSIDE_LAYERS}`,
    );
    assert.ok(perLayer <= PER_LAYER, `n=${n}: ${perLayer} per layer: ${JSON.stringify([...tally])}`);
    assert.equal(tally.get("qk_rope"), L, "fused q/k/rope once per layer");
  }
});

Deno.test("dispatch count: a model whose shapes force the unfused paths (d % 8 != 0)", async () => {
  // hidden 36: no vec4 rows, so q/k/rope and gate/up/swiglu run as separate launches.
  const raw = { ...SMALL_CONFIG, hidden_size: 36 };
  const dir = Deno.makeTempDirSync({ prefix: "gpu_infra_" });
  await writeModelFolder(dir, raw, randomTensors(smallConfig({ hidden_size: 36 }), 3, "F16"));
  const f = await openCheckpoint(dir);
  const L = f.config.nLayers;
  for (const n of [1, 16]) {
    const { dispatches, tally } = await countForward(f, n, [n - 1]);
    const perLayer = (dispatches - OUTSIDE_LAYERS) / L;
    console.log(`unfused model n=${n}: ${dispatches} dispatches = ${L} x ${perLayer} + ${OUTSIDE_LAYERS}`);
    assert.equal(tally.get("qk_rope"), undefined);
    // 13 today: norm, q, k, 2 rope, v, attention, o, norm, gate, up, swiglu, down (see the report; issue 17).
    assert.ok(perLayer <= 13, `n=${n}: ${perLayer} per layer: ${JSON.stringify([...tally])}`);
  }
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("bind groups and pipelines: a second forward creates no group; a reloaded model compiles nothing", async () => {
  const f = await openCheckpoint(DEFAULT_TARGET_DIR);
  await countForward(f, 1, [0]); // compiles the n = 1 variants (if no test before did)
  const compiles = new PipelineCache(gpu).compiles;
  const w = await GpuWeights.upload(gpu, f);
  const fp = new GpuForward(gpu, f.config, 64, 16, w, {
    submissions: 0,
    readbacks: 0,
    readbackBytes: 0,
    forwards: 0,
  });
  const groups = fp.ctx.rec.groupStats;
  const step = async (past: number) => {
    const st = fp.inputs.stage("step", { tokens: [5], positions: [past] }, past);
    await fp.record({ ...st, tokens: fp.inputs.tokens, tokOffset: 0 });
    await fp.submit("step");
    fp.kv.append(1);
  };
  await step(0);
  const created = groups.created;
  assert.ok(created > 0);
  await step(1);
  await step(2);
  assert.equal(groups.created, created, "later forwards reuse every group");
  assert.equal(new PipelineCache(gpu).compiles, compiles, "the reloaded model compiled no shader");
  fp.destroy();
  w.destroy();
});
