/**
 * Every WGSL kernel against its CPU twin on seeded, awkward sizes. Failures name the index and both
 * values. Runs on whatever adapter is present (CI: Mesa lavapipe).
 */
import assert from "node:assert/strict";
import { ropeInputs } from "./fixtures/rope.ts";
import { Gpu } from "../src/gpu/device.ts";
import { PipelineCache } from "../src/gpu/pipelines.ts";
import { Recorder, UniformArena } from "../src/gpu/recorder.ts";
import * as ops from "../src/gpu/ops.ts";
import { uploadMatrix } from "../src/gpu/tensor.ts";
import {
  MATMUL_CHOICE_VERSION,
  type MatmulChoice,
  matmulTiled,
  type TiledTile,
  tiledTileFor,
} from "../src/gpu/matmul_tiled.ts";
import { isCurrentChoice, measureMatmulChoice } from "../src/gpu/matmul_choice.ts";
import { attention, matVec, rmsNorm, rope, swiGlu } from "../src/cpu/ops.ts";
import { type DType, toF32 } from "../src/model/dtype.ts";
import { encodeTensor } from "../src/model/safetensors_write.ts";
import { argmax, probabilities, sampleFrom } from "../src/model/sampling.ts";
import { Rng } from "../src/util/rng.ts";
import { topIndices } from "../src/speculative/draw.ts";

const gpu = await Gpu.acquire();
const ctx: ops.OpContext = {
  rec: new Recorder(gpu, new UniformArena(gpu)),
  pipelines: new PipelineCache(gpu),
};

function rand(n: number, seed: number, scale = 1): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => (r.next() * 2 - 1) * scale);
}

const upload = (a: Float32Array | Uint32Array) => gpu.createBufferWith("test", a);
const empty = (n: number) => gpu.createBuffer("test out", n * 4);
async function readF32(b: GPUBuffer, n: number): Promise<Float32Array> {
  return new Float32Array(await gpu.read(b, n * 4));
}
async function readU32(b: GPUBuffer, n: number): Promise<Uint32Array> {
  return new Uint32Array(await gpu.read(b, n * 4));
}

function assertClose(got: Float32Array, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    assert.ok(err <= tol * (1 + Math.abs(want[i])), `${what}: index ${i}: gpu ${got[i]} vs cpu ${want[i]}`);
  }
}

/** Values as stored in `dtype` (what both sides compute with). */
function rounded(x: Float32Array, dtype: DType): Float32Array {
  return toF32(encodeTensor(x, dtype), dtype);
}

Deno.test("gpu: embedding gather, all dtypes, table split into row chunks", async () => {
  const vocab = 37, d = 50;
  const toks = Uint32Array.of(3, 0, 36, 17, 3, 20);
  for (const dtype of ["F32", "F16", "BF16"] as DType[]) {
    const table = rand(vocab * d, 1);
    // Force ~4 rows per binding to exercise the split path.
    const m = uploadMatrix(gpu, "embed", encodeTensor(table, dtype), [vocab, d], dtype, 4 * d * 4);
    assert.ok(m.parts.length >= 5, `${m.parts.length} parts`);
    const out = empty(toks.length * d);
    await ops.embedding(ctx, { table: m, tokens: upload(toks), tokOffset: 0, out, n: toks.length });
    await ctx.rec.submit();
    const want = new Float32Array(toks.length * d);
    const r = rounded(table, dtype);
    toks.forEach((t, i) => want.set(r.subarray(t * d, (t + 1) * d), i * d));
    assertClose(await readF32(out, toks.length * d), want, 0, `embedding ${dtype}`);
  }
});

Deno.test("gpu: rmsnorm", async () => {
  const n = 3, d = 77;
  const x = rand(n * d, 2, 3), w = rand(d, 3);
  const out = empty(n * d);
  await ops.rmsNorm(ctx, { x: upload(x), w: upload(w), out, n, d, eps: 1e-5 });
  await ctx.rec.submit();
  const want = new Float32Array(n * d);
  for (let t = 0; t < n; t++) {
    rmsNorm(x.subarray(t * d, (t + 1) * d), w, 1e-5, want.subarray(t * d, (t + 1) * d));
  }
  assertClose(await readF32(out, n * d), want, 1e-5, "rmsnorm");
});

Deno.test("gpu: matmul, all dtypes, vec4 and scalar paths, tiles, offsets, residual, row chunks", async () => {
  for (const dtype of ["F32", "F16", "BF16"] as DType[]) {
    for (const inDim of [48, 70]) { // 48: vec4 path; 70: scalar path (70 % 8 != 0)
      for (const n of [1, 3, 5, 13, 37]) {
        for (const acc of [false, true]) {
          const out = 37;
          const W = rand(out * inDim, 10 + n, 0.5);
          const x = rand(2 * inDim + n * inDim, 20 + n); // x rows start at xOffset = 2 * inDim
          const yStride = out + 3, yOffset = 5;
          const y0 = rand(yOffset + n * yStride, 30 + n);
          const m = uploadMatrix(gpu, "w", encodeTensor(W, dtype), [out, inDim], dtype, 10 * inDim * 4);
          const y = upload(y0);
          await ops.matmul(ctx, { w: m, x: upload(x), y, n, xOffset: 2 * inDim, yOffset, yStride, acc });
          await ctx.rec.submit();
          const want = y0.slice();
          const wr = rounded(W, dtype);
          const row = new Float32Array(out);
          for (let t = 0; t < n; t++) {
            matVec(wr, x.subarray((2 + t) * inDim, (3 + t) * inDim), out, inDim, row);
            for (let o = 0; o < out; o++) {
              want[yOffset + t * yStride + o] = (acc ? want[yOffset + t * yStride + o] : 0) + row[o];
            }
          }
          assertClose(
            await readF32(y, y0.length),
            want,
            2e-5,
            `matmul ${dtype} in=${inDim} n=${n} acc=${acc}`,
          );
        }
      }
    }
  }
});

Deno.test("gpu: matmul tiles, row-per-thread and split lanes, awkward rows / in / n, row chunks", async () => {
  const tiles: ops.MatmulTile[] = [
    { tn: 1, rpt: 1, split: true, wg: 64 },
    { tn: 4, rpt: 8, split: true, wg: 64 },
    { tn: 1, rpt: 8, split: false, wg: 8 },
    { tn: 2, rpt: 3, split: false, wg: 16 },
    { tn: 8, rpt: 8, split: false, wg: 8 },
  ];
  for (const dtype of ["F32", "F16", "BF16"] as DType[]) {
    for (const [out, inDim] of [[37, 48], [101, 70], [9, 584]]) {
      for (const n of [1, 3, 11]) {
        for (const tile of tiles) {
          const W = rand(out * inDim, 40 + n, 0.5);
          const x = rand(n * inDim, 50 + n);
          const y0 = rand(n * out, 60 + n);
          const m = uploadMatrix(gpu, "w", encodeTensor(W, dtype), [out, inDim], dtype, 6 * inDim * 4);
          const y = upload(y0);
          await ops.matmul(ctx, { w: m, x: upload(x), y, n, acc: true, tile });
          await ctx.rec.submit();
          const want = y0.slice();
          const row = new Float32Array(out);
          for (let t = 0; t < n; t++) {
            matVec(rounded(W, dtype), x.subarray(t * inDim, (t + 1) * inDim), out, inDim, row);
            for (let o = 0; o < out; o++) want[t * out + o] += row[o];
          }
          const what = `matmul ${dtype} ${out}x${inDim} n=${n} tile ${JSON.stringify(tile)}`;
          assertClose(await readF32(y, y0.length), want, 2e-5, what);
        }
      }
    }
  }
});

/**
 * y0 (+)= W x for token rows t < n on the CPU (matVec on the rounded weights), and per element the bound
 * sum_k |x_k W_rk| the tolerances scale with. x row t at xOffset + t * in, y (t, col) at yOffset + t *
 * yStride + col.
 */
function matmulTwin(
  wr: Float32Array,
  x: Float32Array,
  y0: Float32Array,
  g: {
    n: number;
    rows: number;
    inDim: number;
    xOffset: number;
    yOffset: number;
    yStride: number;
    acc: boolean;
  },
): { want: Float32Array; scale: Float32Array } {
  const want = y0.slice(), scale = new Float32Array(y0.length);
  const row = new Float32Array(g.rows), absRow = new Float32Array(g.rows);
  const absW = wr.map(Math.abs);
  for (let t = 0; t < g.n; t++) {
    const xt = x.subarray(g.xOffset + t * g.inDim, g.xOffset + (t + 1) * g.inDim);
    matVec(wr, xt, g.rows, g.inDim, row);
    matVec(absW, xt.map(Math.abs), g.rows, g.inDim, absRow);
    for (let o = 0; o < g.rows; o++) {
      const i = g.yOffset + t * g.yStride + o;
      want[i] = (g.acc ? want[i] : 0) + row[o];
      scale[i] = absRow[o];
    }
  }
  return { want, scale };
}

Deno.test("gpu: matmul_tiled (GEMM) vs CPU: all dtypes, f16 tiles, awkward n / rows / in, acc, offsets, parts", async () => {
  // (n, rows, in): every n of 1, 2, 5, 17, 64, 130, 257, rows of 1, 7, 129, 576 and in of 8, 40, 576, 1544.
  const shapes: [number, number, number][] = [
    [1, 7, 40],
    [2, 129, 8],
    [5, 576, 1544],
    [17, 1, 576],
    [64, 129, 1544],
    [130, 7, 576],
    [257, 576, 40],
    [257, 129, 8],
  ];
  const tiles: TiledTile[] = [
    { bm: 64, bn: 64, bk: 16, tm: 4, tr: 4 },
    { bm: 16, bn: 64, bk: 16, tm: 4, tr: 4 },
    { bm: 32, bn: 32, bk: 8, tm: 4, tr: 2 },
    { bm: 8, bn: 16, bk: 4, tm: 1, tr: 1 },
    { bm: 64, bn: 128, bk: 8, tm: 8, tr: 4 },
  ];
  let k = 0;
  for (const dtype of ["F32", "F16", "BF16"] as DType[]) {
    for (const [n, rows, inDim] of shapes) {
      // Two tiles per shape (all five per dtype), plus the f16 variant of the first for F16 weights.
      const picked = [tiles[k % tiles.length], tiles[(k + 2) % tiles.length]];
      if (dtype === "F16" && gpu.hasF16) picked.push({ ...picked[0], f16: true });
      k++;
      const acc = k % 2 === 0, xOffset = k % 3 === 0 ? 3 : 0, yOffset = k % 2, yStride = rows + (k % 4);
      const W = rand(rows * inDim, 100 + k, 0.5);
      const x = rand(xOffset + n * inDim, 200 + k);
      const y0 = rand(yOffset + n * yStride, 300 + k);
      // About three parts (an even number of rows each for odd 16-bit rows).
      const partBytes = Math.max(2, Math.ceil(rows / 3)) * inDim * 4;
      const m = uploadMatrix(gpu, "w", encodeTensor(W, dtype), [rows, inDim], dtype, partBytes);
      assert.ok(rows < 3 || m.parts.length >= 2, `${m.parts.length} parts`);
      const xb = upload(x);
      const g = { n, rows, inDim, xOffset, yOffset, yStride, acc };
      const { want, scale } = matmulTwin(rounded(W, dtype), x, y0, g);
      for (const tile of picked) {
        const y = upload(y0);
        await matmulTiled(ctx, { w: m, x: xb, y, n, xOffset, yOffset, yStride, acc, tile });
        await ctx.rec.submit();
        const got = await readF32(y, y0.length);
        // f32: reassociation only (~in * 2^-24 of the absolute sum at worst); f16: x and each product
        // rounded to f16 and summed 4 at a time in f16 (documented in the shader), then f32.
        const eps = tile.f16 ? 4 * 2 ** -11 : 4e-6;
        const what = `matmul_tiled ${dtype} n=${n} ${rows}x${inDim} acc=${acc} tile ${JSON.stringify(tile)}`;
        for (let i = 0; i < want.length; i++) {
          const err = Math.abs(got[i] - want[i]);
          assert.ok(
            err <= eps * scale[i] + 1e-6 * Math.abs(want[i]),
            `${what}: index ${i}: gpu ${got[i]} vs cpu ${want[i]}`,
          );
        }
      }
    }
  }
});

Deno.test("gpu: matmul consults ctx.kernels: the bucket's tiled kernel, row-walking where it says null", async () => {
  const rows = 45, inDim = 72, dtype: DType = "F16";
  const tile: TiledTile = { bm: 16, bn: 32, bk: 8, tm: 2, tr: 2 };
  const choice: MatmulChoice = {
    version: MATMUL_CHOICE_VERSION,
    shaders: "test",
    buckets: [{ n: 1, tile: null }, { n: 2, tile: null }, { n: 4, tile }],
  };
  assert.equal(tiledTileFor(choice, 1), undefined);
  assert.equal(tiledTileFor(choice, 3), tile);
  assert.equal(tiledTileFor(choice, 300), tile); // past the last bucket: the last one
  assert.equal(tiledTileFor(undefined, 64), undefined);
  const m = uploadMatrix(gpu, "w", encodeTensor(rand(rows * inDim, 7, 0.5), dtype), [rows, inDim], dtype);
  const chosen: ops.OpContext = { ...ctx, kernels: { matmul: choice } };
  for (const n of [2, 7]) {
    const x = upload(rand(n * inDim, 8 + n));
    const viaChoice = empty(n * rows), direct = empty(n * rows);
    await ops.matmul(chosen, { w: m, x, y: viaChoice, n });
    const expect = tiledTileFor(choice, n);
    if (expect) await matmulTiled(ctx, { w: m, x, y: direct, n, tile: expect });
    else await ops.matmul(ctx, { w: m, x, y: direct, n });
    await ctx.rec.submit();
    const a = await readF32(viaChoice, n * rows), b = await readF32(direct, n * rows);
    assertClose(a, b, 0, `matmul via ctx.kernels n=${n}`);
  }
  // The row-walking and the tiled kernel sum in different orders: the choice really switched kernels.
  const x = upload(rand(7 * inDim, 15));
  const rw = empty(7 * rows), tl = empty(7 * rows);
  await ops.matmul(ctx, { w: m, x, y: rw, n: 7 });
  await ops.matmul(chosen, { w: m, x, y: tl, n: 7 });
  await ctx.rec.submit();
  const a = await readF32(rw, 7 * rows), b = await readF32(tl, 7 * rows);
  assert.ok(a.some((v, i) => v !== b[i]), "tiled and row-walking results are bit-identical: no switch?");
  assertClose(a, b, 1e-4, "tiled vs row-walking");
});

Deno.test("gpu: measureMatmulChoice times both kernels per bucket and returns a current choice", async () => {
  const w = uploadMatrix(gpu, "w", encodeTensor(rand(70 * 72, 9, 0.5), "F16"), [70, 72], "F16");
  const c = await measureMatmulChoice(gpu, [{ w, count: 2 }], { buckets: [1, 8] });
  assert.ok(isCurrentChoice(c));
  assert.deepEqual(c.buckets.map((b) => b.n), [1, 8]);
  for (const b of c.buckets) {
    assert.ok(b.ms && b.ms.rows > 0, `bucket ${b.n} timed`);
    if (b.tile) assert.ok(b.ms.tiled! <= 0.9 * b.ms.rows, `bucket ${b.n}: a tile that won by 10%`);
  }
  assert.ok(!isCurrentChoice({ ...c, shaders: "other kernels" }));
  assert.ok(!isCurrentChoice({ ...c, version: MATMUL_CHOICE_VERSION + 1 }));
  // Past the budget: row-walking, unmeasured.
  const none = await measureMatmulChoice(gpu, [{ w, count: 1 }], { buckets: [1, 2], budgetMs: 0 });
  assert.deepEqual(none.buckets, [{ n: 1, tile: null }, { n: 2, tile: null }]);
});

Deno.test("gpu: gate_up (fused gate, up, swiglu) equals the CPU and the unfused kernels bit for bit", async () => {
  const tiles: (ops.MatmulTile | undefined)[] = [
    undefined,
    { tn: 2, rpt: 3, split: false, wg: 16 },
    { tn: 8, rpt: 8, split: false, wg: 8 },
  ];
  for (const dtype of ["F32", "F16", "BF16"] as DType[]) {
    for (const [rows, inDim] of [[37, 48], [101, 584]]) {
      for (const n of [1, 3, 11]) {
        for (const tile of tiles) {
          const G = rand(rows * inDim, 70 + n, 0.5), U = rand(rows * inDim, 80 + n, 0.5);
          const x = upload(rand(n * inDim, 90 + n, 2));
          const wGate = uploadMatrix(gpu, "g", encodeTensor(G, dtype), [rows, inDim], dtype);
          const wUp = uploadMatrix(gpu, "u", encodeTensor(U, dtype), [rows, inDim], dtype);
          assert.ok(ops.gateUpFusable(wGate, wUp));
          const out = empty(n * rows), g = empty(n * rows), u = empty(n * rows);
          await ops.gateUp(ctx, { wGate, wUp, x, out, n, tile });
          const t = tile ?? ops.matmulTile(n, rows);
          await ops.matmul(ctx, { w: wGate, x, y: g, n, tile: t });
          await ops.matmul(ctx, { w: wUp, x, y: u, n, tile: t });
          await ops.swiGlu(ctx, { gate: g, up: u, count: n * rows });
          await ctx.rec.submit();
          const got = await readF32(out, n * rows);
          const what = `gate_up ${dtype} ${rows}x${inDim} n=${n} tile ${JSON.stringify(tile)}`;
          assertClose(got, await readF32(g, n * rows), 0, `${what} vs unfused`);
          const xs = await readF32(x, n * inDim), want = new Float32Array(n * rows);
          const gr = new Float32Array(rows), ur = new Float32Array(rows);
          for (let r = 0; r < n; r++) {
            matVec(rounded(G, dtype), xs.subarray(r * inDim, (r + 1) * inDim), rows, inDim, gr);
            matVec(rounded(U, dtype), xs.subarray(r * inDim, (r + 1) * inDim), rows, inDim, ur);
            swiGlu(gr, ur, want.subarray(r * rows, (r + 1) * rows));
          }
          assertClose(got, want, 1e-4, `${what} vs cpu`);
        }
      }
    }
  }
});

Deno.test("gpu: qk_rope (fused q/k projections + rope) equals the CPU and the unfused kernels bit for bit", async () => {
  const nHeads = 5, nKv = 2, hd = 12, cap = 40;
  const { inv, table } = ropeInputs(hd, cap);
  const tb = upload(table);
  const positions = Uint32Array.from({ length: 16 }, (_, i) => (i * 7 + 3) % cap);
  const pb = upload(positions);
  const tiles: (ops.MatmulTile | undefined)[] = [
    undefined,
    { tn: 2, rpt: 6, split: false, wg: 16 },
    { tn: 8, rpt: 2, split: false, wg: 8 },
  ];
  for (const dtype of ["F32", "F16", "BF16"] as DType[]) {
    for (const inDim of [48, 584]) {
      for (const n of [1, 3, 11]) {
        for (const tile of tiles) {
          const qDim = nHeads * hd, kvDim = nKv * hd, kOffset = 2 * kvDim, posOffset = 4;
          const Q = rand(qDim * inDim, 100 + n, 0.5), K = rand(kvDim * inDim, 110 + n, 0.5);
          const xs = rand(n * inDim, 120 + n, 2);
          const x = upload(xs);
          const wq = uploadMatrix(gpu, "q", encodeTensor(Q, dtype), [qDim, inDim], dtype);
          const wk = uploadMatrix(gpu, "k", encodeTensor(K, dtype), [kvDim, inDim], dtype);
          assert.ok(ops.qkRopeFusable(wq, wk, hd));
          const k0 = rand(kOffset + n * kvDim, 130 + n);
          const q = empty(n * qDim), k = upload(k0), q2 = empty(n * qDim), k2 = upload(k0);
          const r = { n, headDim: hd, positions: pb, posOffset, table: tb };
          await ops.qkRope(ctx, { ...r, wq, wk, x, q, k, kOffset, tile });
          const t = tile ?? ops.matmulTile(n, qDim);
          await ops.matmul(ctx, { w: wq, x, y: q2, n, tile: t });
          await ops.matmul(ctx, { w: wk, x, y: k2, n, yOffset: kOffset, tile: t });
          await ops.rope(ctx, { ...r, x: q2, offset: 0, stride: qDim, nHeads });
          await ops.rope(ctx, { ...r, x: k2, offset: kOffset, stride: kvDim, nHeads: nKv });
          await ctx.rec.submit();
          const what = `qk_rope ${dtype} in=${inDim} n=${n} tile ${JSON.stringify(tile)}`;
          const gq = await readF32(q, n * qDim), gk = await readF32(k, k0.length);
          assertClose(gq, await readF32(q2, n * qDim), 0, `${what}: q vs unfused`);
          assertClose(gk, await readF32(k2, k0.length), 0, `${what}: k vs unfused`);
          const wantQ = new Float32Array(n * qDim), wantK = k0.slice();
          for (let i = 0; i < n; i++) {
            const xi = xs.subarray(i * inDim, (i + 1) * inDim);
            const qi = wantQ.subarray(i * qDim, (i + 1) * qDim);
            const ki = wantK.subarray(kOffset + i * kvDim, kOffset + (i + 1) * kvDim);
            matVec(rounded(Q, dtype), xi, qDim, inDim, qi);
            matVec(rounded(K, dtype), xi, kvDim, inDim, ki);
            rope(qi, nHeads, hd, positions[posOffset + i], inv);
            rope(ki, nKv, hd, positions[posOffset + i], inv);
          }
          assertClose(gq, wantQ, 1e-4, `${what}: q vs cpu`);
          assertClose(gk, wantK, 1e-4, `${what}: k vs cpu`);
        }
      }
    }
  }
});

/** f16 halves of u32 words as f32 (element e = half e % 2 of word e / 2). */
const unpackF16 = (w: Uint32Array) => toF32(new Uint8Array(w.buffer, w.byteOffset, w.byteLength), "F16");

Deno.test("gpu: f16 KV writers (qk_rope k, matmul v store, rope pack) equal their f32 kernels rounded, words outside untouched", async () => {
  const nHeads = 5, nKv = 3, hd = 16, cap = 40, qDim = nHeads * hd, kvDim = nKv * hd;
  const { table } = ropeInputs(hd, cap);
  const tb = upload(table), pb = upload(Uint32Array.from({ length: 16 }, (_, i) => (i * 7 + 3) % cap));
  const tiles: (ops.MatmulTile | undefined)[] = [undefined, { tn: 2, rpt: 4, split: true, wg: 64 }];
  for (const dtype of ["F32", "F16"] as DType[]) {
    for (const n of [1, 3, 11]) {
      for (const tile of tiles) {
        const inDim = 48 + 8 * n, kOffset = 3 * kvDim, posOffset = 2; // kOffset: past = 3 slots
        const Q = rand(qDim * inDim, 200 + n, 0.5), K = rand(kvDim * inDim, 210 + n, 0.5);
        const V = rand(kvDim * inDim, 215 + n, 0.5);
        const x = upload(rand(n * inDim, 220 + n, 2));
        const wq = uploadMatrix(gpu, "q", encodeTensor(Q, dtype), [qDim, inDim], dtype);
        const wk = uploadMatrix(gpu, "k", encodeTensor(K, dtype), [kvDim, inDim], dtype);
        const wv = uploadMatrix(gpu, "v", encodeTensor(V, dtype), [kvDim, inDim], dtype);
        const slots = 3 + n + 2, k0 = rand(slots * kvDim, 230 + n), k0h = packF16(k0);
        const r = { n, headDim: hd, positions: pb, posOffset, table: tb };
        // f32 references: fused k, v matmul, unfused k (matmul + in-place rope) into a compact buffer
        const q = empty(n * qDim), k32 = upload(k0), v32 = upload(k0), kc = empty(n * kvDim);
        await ops.qkRope(ctx, { ...r, wq, wk, x, q, k: k32, kOffset });
        await ops.matmul(ctx, { w: wv, x, y: v32, n, yOffset: kOffset, tile });
        await ops.matmul(ctx, { w: wk, x, y: kc, n });
        await ops.rope(ctx, { ...r, x: kc, offset: 0, stride: kvDim, nHeads: nKv });
        // f16 writers into caches holding other data
        const k16 = upload(k0h), v16 = upload(k0h), kr16 = upload(k0h), kcSrc = empty(n * kvDim);
        await ops.qkRope(ctx, { ...r, wq, wk, x, q, k: k16, kOffset, kDtype: "f16" });
        await ops.matmul(ctx, { w: wv, x, y: v16, n, yOffset: kOffset, tile, yDtype: "f16" });
        await ops.matmul(ctx, { w: wk, x, y: kcSrc, n });
        await ops.rope(ctx, { ...r, x: kcSrc, offset: kOffset, stride: kvDim, nHeads: nKv, f16Out: kr16 });
        await ctx.rec.submit();
        const what = `f16 writers ${dtype} n=${n} tile ${JSON.stringify(tile)}`;
        const words = slots * kvDim / 2, lo = kOffset / 2, hi = (kOffset + n * kvDim) / 2;
        const expect = (f32Rows: Float32Array) => {
          const w = k0h.slice();
          w.set(packF16(f32Rows), lo);
          return unpackF16(w);
        };
        const ref = async (b: GPUBuffer, from: number) =>
          (await readF32(b, slots * kvDim)).subarray(from, from + n * kvDim);
        // One f16 rounding of the f32 result: exact or 1 ulp apart (pack2x16float's rounding mode is the
        // implementation's; CPU encoding rounds to nearest even).
        const ulp = (got: Float32Array, want: Float32Array, name: string) =>
          assertClose(got, want, 2 ** -10, name);
        const gotK = unpackF16(await readU32(k16, words)), gotV = unpackF16(await readU32(v16, words));
        ulp(gotK, expect(await ref(k32, kOffset)), `${what}: qk_rope k`);
        ulp(gotV, expect(await ref(v32, kOffset)), `${what}: matmul v`);
        ulp(
          unpackF16(await readU32(kr16, words)),
          expect(await readF32(kc, n * kvDim)),
          `${what}: rope pack`,
        );
        for (const [name, b] of [["k", k16], ["v", v16], ["rope", kr16]] as const) {
          const got = await readU32(b, words);
          for (const i of [...Array(lo).keys(), ...Array.from({ length: words - hi }, (_, j) => hi + j)]) {
            assert.equal(got[i], k0h[i], `${what}: ${name} word ${i} outside the new rows changed`);
          }
        }
      }
    }
  }
});

Deno.test("gpu: rope (rotate_half) from the f64 cos/sin table", async () => {
  const n = 3, nHeads = 5, hd = 12, cap = 40, stride = nHeads * hd + 4, offset = 7;
  const { inv, table } = ropeInputs(hd, cap);
  const positions = Uint32Array.of(0, 0, 33, 9, 39); // posOffset 2 -> 33, 9, 39
  const x = rand(offset + n * stride, 4);
  const xb = upload(x);
  await ops.rope(ctx, {
    x: xb,
    offset,
    stride,
    n,
    nHeads,
    headDim: hd,
    positions: upload(positions),
    posOffset: 2,
    table: upload(table),
  });
  await ctx.rec.submit();
  const want = x.slice();
  for (let t = 0; t < n; t++) {
    rope(
      want.subarray(offset + t * stride, offset + t * stride + nHeads * hd),
      nHeads,
      hd,
      positions[2 + t],
      inv,
    );
  }
  assertClose(await readF32(xb, x.length), want, 1e-5, "rope");
});

Deno.test("gpu: attention with GQA, causal and tree masks", async () => {
  const nHeads = 6, nKv = 2, hd = 8, kvDim = nKv * hd, past = 37, n = 5, cap = 64;
  const q = rand(n * nHeads * hd, 5), k = rand(cap * kvDim, 6), v = rand(cap * kvDim, 7);
  // Tree: node parents [-1, 0, 0, 1, -1] -> ancestor sets.
  const parent = [-1, 0, 0, 1, -1];
  const w = past + n, maskWords = Math.ceil(w / 32);
  const vis: number[][] = [];
  const bits = new Uint32Array(n * maskWords);
  for (let t = 0; t < n; t++) {
    const s = Array.from({ length: past }, (_, j) => j);
    const anc: number[] = [];
    for (let a = t; a >= 0; a = parent[a]) anc.unshift(past + a);
    vis.push([...s, ...anc]);
    for (const j of vis[t]) bits[t * maskWords + (j >>> 5)] |= 1 << (j & 31);
  }
  for (const causal of [true, false]) {
    const out = empty(n * nHeads * hd);
    await ops.attention(ctx, {
      q: upload(q),
      k: upload(k),
      v: upload(v),
      mask: upload(bits),
      scratch: empty(n * nHeads * cap),
      out,
      n,
      past,
      nHeads,
      nKvHeads: nKv,
      headDim: hd,
      maskWords,
      causal,
      cap,
    });
    await ctx.rec.submit();
    const want = new Float32Array(n * nHeads * hd);
    for (let t = 0; t < n; t++) {
      const visible = causal ? Array.from({ length: past + t + 1 }, (_, j) => j) : vis[t];
      attention(q.subarray(t * nHeads * hd, (t + 1) * nHeads * hd), k, v, visible, {
        nHeads,
        nKvHeads: nKv,
        headDim: hd,
      }, want.subarray(t * nHeads * hd, (t + 1) * nHeads * hd));
    }
    assertClose(await readF32(out, want.length), want, 1e-5, `attention causal=${causal}`);
  }
});

/** Visible slots of each of n rows after `past`: causal, or a random tree (each row's parent earlier or none). */
function treeMask(
  n: number,
  past: number,
  seed: number,
): { vis: number[][]; bits: Uint32Array; words: number } {
  const r = new Rng(seed), words = Math.ceil((past + n) / 32), parent: number[] = [];
  const vis: number[][] = [], bits = new Uint32Array(n * words);
  for (let t = 0; t < n; t++) {
    parent.push(t === 0 || r.next() < 0.2 ? -1 : Math.floor(r.next() * t));
    const anc: number[] = [];
    for (let a = t; a >= 0; a = parent[a]) anc.unshift(past + a);
    vis.push([...Array.from({ length: past }, (_, j) => j), ...anc]);
    for (const j of vis[t]) bits[t * words + (j >>> 5)] |= 1 << (j & 31);
  }
  return { vis, bits, words };
}

/** u32 words of x as f16 pairs (element e in word e / 2, even element low): the f16 KV layout. */
const packF16 = (x: Float32Array) => new Uint32Array(encodeTensor(x, "F16").buffer);

Deno.test("gpu: flash attention equals the CPU attention: GQA 1 and 3, head dims 64/48/80/32, causal and tree masks, f32 and f16 KV", async () => {
  // [n, past, nHeads, nKv, headDim, kvDtype]: contexts of 1 .. 2 tiles and more, never a multiple of one.
  const cases: [number, number, number, number, number, ops.KvDtype][] = [
    [1, 0, 9, 3, 64, "f32"],
    [1, 75, 9, 3, 64, "f32"],
    [3, 0, 4, 4, 48, "f32"],
    [17, 40, 9, 3, 64, "f32"],
    [70, 0, 6, 2, 80, "f32"],
    [17, 101, 4, 4, 64, "f16"],
    [3, 37, 9, 3, 48, "f16"],
    [70, 5, 8, 2, 32, "f16"],
  ];
  let seed = 100;
  for (const [n, past, nHeads, nKv, hd, kvDtype] of cases) {
    const kvDim = nKv * hd, slots = past + n + 3; // slots past the context hold data that must not leak in
    const q = rand(n * nHeads * hd, seed++),
      kf = rand(slots * kvDim, seed++),
      vf = rand(slots * kvDim, seed++, 2);
    const k = kvDtype === "f16" ? rounded(kf, "F16") : kf, v = kvDtype === "f16" ? rounded(vf, "F16") : vf;
    const tree = treeMask(n, past, seed++);
    for (const causal of [true, false]) {
      const out = empty(n * nHeads * hd);
      await ops.flashAttention(ctx, {
        q: upload(q),
        k: upload(kvDtype === "f16" ? packF16(k) : k),
        v: upload(kvDtype === "f16" ? packF16(v) : v),
        mask: upload(tree.bits),
        out,
        n,
        past,
        nHeads,
        nKvHeads: nKv,
        headDim: hd,
        maskWords: tree.words,
        causal,
        kvDtype,
      });
      await ctx.rec.submit();
      const want = new Float32Array(n * nHeads * hd);
      for (let t = 0; t < n; t++) {
        const visible = causal ? Array.from({ length: past + t + 1 }, (_, j) => j) : tree.vis[t];
        const row = (a: Float32Array) => a.subarray(t * nHeads * hd, (t + 1) * nHeads * hd);
        attention(row(q), k, v, visible, { nHeads, nKvHeads: nKv, headDim: hd }, row(want));
      }
      const what = `flash n=${n} past=${past} heads=${nHeads}/${nKv} hd=${hd} ${kvDtype} causal=${causal}`;
      assertClose(await readF32(out, want.length), want, 1e-5, what);
    }
  }
});

Deno.test("gpu: swiglu", async () => {
  const count = 1001;
  const g = rand(count, 8, 6), u = rand(count, 9);
  const gb = upload(g);
  await ops.swiGlu(ctx, { gate: gb, up: upload(u), count });
  await ctx.rec.submit();
  const want = new Float32Array(count);
  swiGlu(g, u, want);
  assertClose(await readF32(gb, count), want, 1e-6, "swiglu");
});

Deno.test("gpu: argmax takes the first maximum", async () => {
  const n = 4, vocab = 1003;
  const l = rand(n * vocab, 11);
  l[2 * vocab + 500] = 5;
  l[2 * vocab + 900] = 5; // tie: first index wins
  const out = empty(n + 2);
  await ops.argmax(ctx, { logits: upload(l), out, outOffset: 2, n, vocab });
  await ctx.rec.submit();
  const got = await readU32(out, n + 2);
  for (let t = 0; t < n; t++) {
    assert.equal(got[2 + t], argmax(l.subarray(t * vocab, (t + 1) * vocab)), `row ${t}`);
  }
  assert.equal(got[4], 500);
});

Deno.test("gpu: sampling picks the same token as the CPU sampler for the same uniform", async () => {
  const vocab = 517, n = 48;
  const logits = rand(n * vocab, 12, 4);
  const uRng = new Rng(13);
  const u = Float32Array.from({ length: n }, () => uRng.next());
  for (
    const p of [
      { temperature: 1, topK: 0, topP: 1 },
      { temperature: 0.7, topK: 40, topP: 1 },
      { temperature: 0.3, topK: 0, topP: 0.9 },
      { temperature: 1.3, topK: 25, topP: 0.8 },
      { temperature: 1, topK: 1, topP: 1 },
    ]
  ) {
    const out = empty(n);
    await ops.sample(ctx, {
      logits: upload(logits),
      uniforms: upload(u),
      uOffset: 0,
      out,
      outOffset: 0,
      n,
      vocab,
      ...p,
    });
    await ctx.rec.submit();
    const got = await readU32(out, n);
    for (let t = 0; t < n; t++) {
      const probs = probabilities(logits.subarray(t * vocab, (t + 1) * vocab), p);
      const fixed = { next: () => u[t] } as unknown as Rng;
      assert.equal(got[t], sampleFrom(probs, fixed), `row ${t} with ${JSON.stringify(p)}`);
      assert.ok(probs[got[t]] > 0, "never a token outside top-k/top-p");
    }
  }
});

Deno.test("gpu: kv copy moves an accepted path with overlapping rows", async () => {
  const kvDim = 20, slots = 30;
  const k = rand(slots * kvDim, 14), v = rand(slots * kvDim, 15);
  const kb = upload(k), vb = upload(v);
  const src = Uint32Array.of(11, 13, 14, 17); // -> rows 10, 11, 12, 13 (13 is read and written)
  await ops.kvCopy(ctx, {
    slots: upload(src),
    k: kb,
    v: vb,
    tmp: empty(2 * src.length * kvDim),
    count: src.length,
    kvDim,
    dstBase: 10,
  });
  await ctx.rec.submit();
  const wk = k.slice(), wv = v.slice();
  src.forEach((s, i) => {
    wk.set(k.subarray(s * kvDim, (s + 1) * kvDim), (10 + i) * kvDim);
    wv.set(v.subarray(s * kvDim, (s + 1) * kvDim), (10 + i) * kvDim);
  });
  assertClose(await readF32(kb, k.length), wk, 0, "k");
  assertClose(await readF32(vb, v.length), wv, 0, "v");
});

Deno.test("gpu: kv copy of an f16 cache moves whole rows of packed halves", async () => {
  const kvDim = 22, slots = 30; // 11 words per row: an odd word count
  const k = packF16(rand(slots * kvDim, 16)), v = packF16(rand(slots * kvDim, 17));
  const kb = upload(k), vb = upload(v);
  const src = Uint32Array.of(5, 9, 10, 12, 20); // -> rows 4 .. 8 (5 is read and written)
  await ops.kvCopy(ctx, {
    slots: upload(src),
    k: kb,
    v: vb,
    tmp: empty(src.length * kvDim), // 2 * count * kvDim halves
    count: src.length,
    kvDim,
    dstBase: 4,
    kvDtype: "f16",
  });
  await ctx.rec.submit();
  const wk = k.slice(), wv = v.slice(), row = kvDim / 2;
  src.forEach((s, i) => {
    wk.set(k.subarray(s * row, (s + 1) * row), (4 + i) * row);
    wv.set(v.subarray(s * row, (s + 1) * row), (4 + i) * row);
  });
  assert.deepEqual(await readU32(kb, k.length), wk, "k");
  assert.deepEqual(await readU32(vb, v.length), wv, "v");
});

Deno.test("gpu: a WGSL error throws with the shader named", async () => {
  const bad = new PipelineCache(gpu);
  await assert.rejects(
    () =>
      gpu.scoped("shader broken", () =>
        gpu.device.createComputePipeline({
          layout: "auto",
          compute: { module: gpu.device.createShaderModule({ code: "fn main( {" }), entryPoint: "main" },
        })),
    /shader broken/,
  );
  await assert.rejects(
    () => bad.get("matmul", { DTYPE: 1, VEC: true, TN: 4 }),
    /ACC is not defined|shader matmul/,
  );
});

Deno.test("gpu: stream_read sums every word exactly once", async () => {
  const count = 10_007, groups = 3; // vec4 words; 768 threads
  const data = new Uint32Array(count * 4);
  const r = new Rng(16);
  for (let i = 0; i < data.length; i++) data[i] = r.nextU32();
  const out = empty(groups * 256);
  await ops.streamRead(ctx, { data: upload(data), count, out, groups });
  await ctx.rec.submit();
  const partial = await readU32(out, groups * 256);
  let got = 0, want = 0;
  for (const x of partial) got = (got + x) >>> 0;
  for (const x of data) want = (want + x) >>> 0;
  assert.equal(got, want);
});

Deno.test("gpu: tree_draw greedy picks the top-b by logit into the planned slots", async () => {
  const rows = 3, vocab = 301;
  const logits = rand(rows * vocab, 17, 3);
  const plan = Uint32Array.of(1, 4, 0, 5, 1, 0, 6, 7, 0); // (child_start, count, q_index)
  const tokens = empty(13);
  await ops.treeDraw(ctx, {
    logits: upload(logits),
    plan: upload(plan),
    tokens,
    q: empty(vocab),
    rows,
    vocab,
    temperature: 0,
    topK: 0,
    topP: 1,
    seed: 1,
  });
  await ctx.rec.submit();
  const got = await readU32(tokens, 13);
  for (let r = 0; r < rows; r++) {
    const want = topIndices(logits.subarray(r * vocab, (r + 1) * vocab), plan[r * 3 + 1]);
    assert.deepEqual([...got.subarray(plan[r * 3], plan[r * 3] + plan[r * 3 + 1])], want, `row ${r}`);
  }
});

Deno.test("gpu: tree_draw samples distinct children from q (statistical) and writes q", async () => {
  const vocab = 10, rows = 200, b = 3;
  const row = rand(vocab, 18, 2);
  const logits = new Float32Array(rows * vocab);
  for (let r = 0; r < rows; r++) logits.set(row, r * vocab);
  const params = { temperature: 0.8, topK: 8, topP: 1 };
  const qWant = probabilities(row, params);
  const plan = new Uint32Array(rows * 3);
  for (let r = 0; r < rows; r++) plan.set([r * b, b, r], r * 3);
  const counts = new Array(vocab).fill(0);
  const lb = upload(logits), pb = upload(plan), tokens = empty(rows * b), q = empty(rows * vocab);
  for (let seed = 0; seed < 25; seed++) {
    await ops.treeDraw(ctx, { logits: lb, plan: pb, tokens, q, rows, vocab, ...params, seed });
    await ctx.rec.submit();
    const t = await readU32(tokens, rows * b);
    for (let r = 0; r < rows; r++) {
      const kids = [...t.subarray(r * b, (r + 1) * b)];
      assert.equal(new Set(kids).size, b, `row ${r} children ${kids} are distinct`);
      for (const k of kids) assert.ok(qWant[k] > 0, `child ${k} outside top-k`);
      counts[kids[0]]++;
    }
  }
  const qGot = await readF32(q, vocab);
  assertClose(qGot, Array.from(qWant), 1e-5, "q row");
  const n = counts.reduce((a, x) => a + x, 0);
  let chi = 0;
  for (let i = 0; i < vocab; i++) if (qWant[i] > 0) chi += (counts[i] - n * qWant[i]) ** 2 / (n * qWant[i]);
  // 7 degrees of freedom: P(chi-square > 40) < 1e-6.
  assert.ok(chi < 40, `first child vs q: chi-square ${chi.toFixed(1)}, counts ${counts}`);
});

Deno.test("gpu: tree_draw i.i.d. mode draws every child from q (statistical), repeats allowed", async () => {
  const vocab = 9, rows = 150, b = 4;
  const row = rand(vocab, 19, 1.5);
  const logits = new Float32Array(rows * vocab);
  for (let r = 0; r < rows; r++) logits.set(row, r * vocab);
  const params = { temperature: 1.1, topK: 0, topP: 0.9 };
  const qWant = probabilities(row, params);
  const plan = new Uint32Array(rows * 3);
  for (let r = 0; r < rows; r++) plan.set([r * b, b, r], r * 3);
  const counts = new Array(vocab).fill(0);
  let repeats = 0;
  const lb = upload(logits), pb = upload(plan), tokens = empty(rows * b), q = empty(rows * vocab);
  for (let seed = 0; seed < 20; seed++) {
    await ops.treeDraw(ctx, { logits: lb, plan: pb, tokens, q, rows, vocab, ...params, seed, iid: true });
    await ctx.rec.submit();
    const t = await readU32(tokens, rows * b);
    for (let r = 0; r < rows; r++) {
      const kids = [...t.subarray(r * b, (r + 1) * b)];
      if (new Set(kids).size < b) repeats++;
      for (const k of kids) {
        assert.ok(qWant[k] > 0, `child ${k} outside top-p`);
        counts[k]++;
      }
    }
  }
  assert.ok(repeats > 0, "i.i.d. draws repeat sometimes");
  const n = counts.reduce((a, x) => a + x, 0);
  let chi = 0, df = -1;
  for (let i = 0; i < vocab; i++) {
    if (qWant[i] > 0) {
      chi += (counts[i] - n * qWant[i]) ** 2 / (n * qWant[i]);
      df++;
    }
  }
  // df <= 8: P(chi-square(8) > 43) < 1e-6.
  assert.ok(chi < 43, `children vs q: chi-square ${chi.toFixed(1)} (df ${df}), counts ${counts}`);
});
