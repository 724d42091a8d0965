/**
 * The GPU kernels on ggml block weights (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K, dequantized in registers by
 * shaders/wload.wgsl) against the CPU twin: `dequantize` of the same blocks, then the f32 reference ops.
 * Awkward sizes: rows not a multiple of any tile, several blocks per row, matrices split into row chunks
 * (each chunk has its own body / scale regions), several token rows.
 */
import assert from "node:assert/strict";
import { ropeInputs } from "./fixtures/rope.ts";
import { Gpu } from "../src/gpu/device.ts";
import { PipelineCache } from "../src/gpu/pipelines.ts";
import { Recorder, UniformArena } from "../src/gpu/recorder.ts";
import * as ops from "../src/gpu/ops.ts";
import { uploadMatrix } from "../src/gpu/tensor.ts";
import { type GpuWeightType, toDeviceLayout } from "../src/gpu/weight_layout.ts";
import { matVec, rope, swiGlu } from "../src/cpu/ops.ts";
import { matmulTiled } from "../src/gpu/matmul_tiled.ts";
import { dequantize, GGML_TYPES, ggmlRowBytes as rowBytes } from "../src/model/ggml_quants.ts";
import { Rng } from "../src/util/rng.ts";
import { randomBlocks } from "./fixtures/quant.ts";

const gpu = await Gpu.acquire();
const ctx: ops.OpContext = {
  rec: new Recorder(gpu, new UniformArena(gpu)),
  pipelines: new PipelineCache(gpu),
};
const TYPES: GpuWeightType[] = ["Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"];

function rand(n: number, seed: number, scale = 1): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => (r.next() * 2 - 1) * scale);
}
const upload = (a: Float32Array | Uint32Array) => gpu.createBufferWith("test", a);
const empty = (n: number) => gpu.createBuffer("test out", n * 4);
const readF32 = async (b: GPUBuffer, n: number) => new Float32Array(await gpu.read(b, n * 4));

function assertClose(got: Float32Array, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    assert.ok(err <= tol * (1 + Math.abs(want[i])), `${what}: index ${i}: gpu ${got[i]} vs cpu ${want[i]}`);
  }
}

/** Columns for type t: three blocks, and one block (K-quants: 256-element super-blocks). */
const blockSize = (t: GpuWeightType) => GGML_TYPES[t].blockSize;
const colsOf = (t: GpuWeightType) => [blockSize(t) * 3, blockSize(t)];

Deno.test("weight layout: block bytes are kept, scales moved after the bodies, padded to 16", () => {
  const b = randomBlocks("Q8_0", 3, 64, 1); // 6 blocks of 34 bytes
  const d = toDeviceLayout("Q8_0", b, 3, 64);
  assert.equal(d.length, Math.ceil((6 * 34) / 16) * 16);
  for (let k = 0; k < 6; k++) {
    assert.deepEqual(d.subarray(k * 32, k * 32 + 32), b.subarray(k * 34 + 2, k * 34 + 34), `body ${k}`);
    assert.deepEqual(d.subarray(192 + k * 2, 194 + k * 2), b.subarray(k * 34, k * 34 + 2), `scale ${k}`);
  }
  assert.throws(
    () => rowBytes("Q4_K", 300, "wq"),
    /wq: 300 columns is not a whole number of 256-element Q4_K/,
  );
});

Deno.test("gpu: matmul on block weights equals dequantize + f32 matmul (tiles, acc, row chunks)", async () => {
  const tiles: (ops.MatmulTile | undefined)[] = [undefined, { tn: 2, rpt: 3, split: false, wg: 16 }];
  for (const t of TYPES) {
    for (const inDim of colsOf(t)) {
      for (const [out, n] of [[37, 1], [21, 5]]) {
        for (const tile of tiles) {
          const bytes = randomBlocks(t, out, inDim, out * 7 + inDim + n);
          // Chunks of ~9 rows: several parts, each with its own scale region.
          const m = uploadMatrix(gpu, "w", bytes, [out, inDim], t, 9 * rowBytes(t, inDim) + 16);
          assert.ok(m.parts.length >= 3);
          const x = rand(n * inDim, 3 + n), y0 = rand(n * out, 4 + n);
          const y = upload(y0);
          await ops.matmul(ctx, { w: m, x: upload(x), y, n, acc: true, tile });
          await ctx.rec.submit();
          const W = dequantize(t, bytes, out * inDim), want = y0.slice(), row = new Float32Array(out);
          for (let r = 0; r < n; r++) {
            matVec(W, x.subarray(r * inDim, (r + 1) * inDim), out, inDim, row);
            for (let o = 0; o < out; o++) want[r * out + o] += row[o];
          }
          const what = `matmul ${t} ${out}x${inDim} n=${n} tile ${JSON.stringify(tile)}`;
          assertClose(await readF32(y, n * out), want, 2e-5, what);
        }
      }
    }
  }
});

Deno.test("gpu: gate_up and qk_rope on block weights equal the unfused kernels and the CPU", async () => {
  const hd = 16, nHeads = 3, nKv = 1, cap = 20;
  const { inv, table } = ropeInputs(hd, cap);
  const positions = Uint32Array.of(5, 0, 19, 7);
  const pb = upload(positions), tb = upload(table);
  for (const t of TYPES) {
    const inDim = blockSize(t) * 2, n = 3, rows = 19;
    const xs = rand(n * inDim, 9, 2), x = upload(xs);
    // gate_up
    const G = randomBlocks(t, rows, inDim, 11), U = randomBlocks(t, rows, inDim, 12);
    const wGate = uploadMatrix(gpu, "g", G, [rows, inDim], t),
      wUp = uploadMatrix(gpu, "u", U, [rows, inDim], t);
    assert.ok(ops.gateUpFusable(wGate, wUp));
    const out = empty(n * rows), g = empty(n * rows), u = empty(n * rows);
    await ops.gateUp(ctx, { wGate, wUp, x, out, n });
    const tile = ops.matmulTile(n, rows);
    await ops.matmul(ctx, { w: wGate, x, y: g, n, tile });
    await ops.matmul(ctx, { w: wUp, x, y: u, n, tile });
    await ops.swiGlu(ctx, { gate: g, up: u, count: n * rows });
    // qk_rope
    const qDim = nHeads * hd, kvDim = nKv * hd;
    const Q = randomBlocks(t, qDim, inDim, 13), K = randomBlocks(t, kvDim, inDim, 14);
    const wq = uploadMatrix(gpu, "q", Q, [qDim, inDim], t), wk = uploadMatrix(gpu, "k", K, [kvDim, inDim], t);
    assert.ok(ops.qkRopeFusable(wq, wk, hd));
    const q = empty(n * qDim), k = empty(n * kvDim), q2 = empty(n * qDim), k2 = empty(n * kvDim);
    const r = { n, headDim: hd, positions: pb, posOffset: 1, table: tb };
    await ops.qkRope(ctx, { ...r, wq, wk, x, q, k, kOffset: 0 });
    const tq = ops.matmulTile(n, qDim);
    await ops.matmul(ctx, { w: wq, x, y: q2, n, tile: tq });
    await ops.matmul(ctx, { w: wk, x, y: k2, n, tile: tq });
    await ops.rope(ctx, { ...r, x: q2, offset: 0, stride: qDim, nHeads });
    await ops.rope(ctx, { ...r, x: k2, offset: 0, stride: kvDim, nHeads: nKv });
    await ctx.rec.submit();
    const got = await readF32(out, n * rows);
    assertClose(got, await readF32(g, n * rows), 0, `gate_up ${t} vs unfused`);
    const gq = await readF32(q, n * qDim), gk = await readF32(k, n * kvDim);
    assertClose(gq, await readF32(q2, n * qDim), 0, `qk_rope ${t}: q vs unfused`);
    assertClose(gk, await readF32(k2, n * kvDim), 0, `qk_rope ${t}: k vs unfused`);
    const Gf = dequantize(t, G, rows * inDim), Uf = dequantize(t, U, rows * inDim);
    const Qf = dequantize(t, Q, qDim * inDim), Kf = dequantize(t, K, kvDim * inDim);
    const want = new Float32Array(n * rows), gr = new Float32Array(rows), ur = new Float32Array(rows);
    const wantQ = new Float32Array(n * qDim), wantK = new Float32Array(n * kvDim);
    for (let i = 0; i < n; i++) {
      const xi = xs.subarray(i * inDim, (i + 1) * inDim);
      matVec(Gf, xi, rows, inDim, gr);
      matVec(Uf, xi, rows, inDim, ur);
      swiGlu(gr, ur, want.subarray(i * rows, (i + 1) * rows));
      const qi = wantQ.subarray(i * qDim, (i + 1) * qDim), ki = wantK.subarray(i * kvDim, (i + 1) * kvDim);
      matVec(Qf, xi, qDim, inDim, qi);
      matVec(Kf, xi, kvDim, inDim, ki);
      rope(qi, nHeads, hd, positions[1 + i], inv);
      rope(ki, nKv, hd, positions[1 + i], inv);
    }
    assertClose(got, want, 1e-4, `gate_up ${t} vs cpu`);
    assertClose(gq, wantQ, 1e-4, `qk_rope ${t}: q vs cpu`);
    assertClose(gk, wantK, 1e-4, `qk_rope ${t}: k vs cpu`);
  }
});

Deno.test("gpu: embedding gather from block weights, table split into row chunks", async () => {
  const toks = Uint32Array.of(3, 0, 22, 17, 3);
  for (const t of TYPES) {
    const vocab = 23, d = blockSize(t) * 2;
    const bytes = randomBlocks(t, vocab, d, 21);
    const m = uploadMatrix(gpu, "embed", bytes, [vocab, d], t, 5 * rowBytes(t, d) + 16);
    assert.ok(m.parts.length >= 4);
    const out = empty(toks.length * d);
    await ops.embedding(ctx, { table: m, tokens: upload(toks), tokOffset: 0, out, n: toks.length });
    await ctx.rec.submit();
    const W = dequantize(t, bytes, vocab * d), want = new Float32Array(toks.length * d);
    toks.forEach((tok, i) => want.set(W.subarray(tok * d, (tok + 1) * d), i * d));
    assertClose(await readF32(out, toks.length * d), want, 0, `embedding ${t}`);
  }
});

Deno.test("gpu: block weights never take the tiled GEMM, whatever the kernel choice says", async () => {
  const tile = { bm: 16, bn: 64, bk: 16, tm: 2, tr: 4 };
  const choice = { version: 1, shaders: "test", buckets: [{ n: 256, tile }] };
  const kctx: ops.OpContext = { ...ctx, kernels: { matmul: choice } };
  const out = 21, inDim = 64, n = 5;
  const bytes = randomBlocks("Q8_0", out, inDim, 77);
  const m = uploadMatrix(gpu, "w", bytes, [out, inDim], "Q8_0");
  const x = rand(n * inDim, 78), y = empty(n * out);
  await ops.matmul(kctx, { w: m, x: upload(x), y, n });
  await kctx.rec.submit();
  const W = dequantize("Q8_0", bytes, out * inDim), want = new Float32Array(n * out);
  for (let r = 0; r < n; r++) {
    matVec(W, x.subarray(r * inDim, (r + 1) * inDim), out, inDim, want.subarray(r * out, (r + 1) * out));
  }
  assertClose(await readF32(y, n * out), want, 2e-5, "Q8_0 under a tiled choice");
  await assert.rejects(
    () => matmulTiled(ctx, { w: m, x: upload(x), y, n, tile }),
    /matmulTiled: Q8_0 weights are not read by the tiled GEMM/,
  );
});
