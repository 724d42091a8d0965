/**
 * `deno task bench --kernels`: on the running adapter, per-kernel time and effective GB/s, the matmul
 * t(n) curve for n = 1 .. 256 token rows, the whole target forward's t(n) (what the hardware-aware
 * planner needs), the cost of one GPU->CPU sync, the best streaming read bandwidth, and AR tok/s.
 *
 * Kernel times are wall-clock: R repetitions recorded into one submission, one sync, minus the
 * measured cost of an empty sync, divided by R.
 *
 * @module
 */

import { median } from "../util/stats.ts";
import type { Gpu } from "../gpu/device.ts";
import * as ops from "../gpu/ops.ts";
import { PipelineCache } from "../gpu/pipelines.ts";
import { Recorder, UniformArena } from "../gpu/recorder.ts";
import { destroyMatrix, type GpuMatrix, uploadMatrix } from "../gpu/tensor.ts";
import { encodeTensor } from "../model/safetensors_write.ts";
import type { ModelConfig } from "../model/config.ts";
import { llamaTensorSpec } from "../model/weights.ts";
import { DEFAULT_TARGET_DIR } from "../model/folder.ts";
import { Rng } from "../util/rng.ts";
import { sharedGpu } from "../runtime/backend.ts";
import { forwardMs, syncCost } from "../runtime/hardware_profile.ts";
import { loadGpuTarget } from "./pair.ts";
import { measureMatmulChoice } from "../gpu/matmul_choice.ts";
import type { WeightsDtype } from "../model/weight_types.ts";
import { GPU_WEIGHT_TYPES, gpuMatrices, type GpuWeightType } from "../gpu/weight_layout.ts";
import { ggmlRowBytes } from "../model/ggml_quants.ts";
import { randomMatrixBytes } from "./random_weights.ts";

/** Options of the kernel benchmark. */
export interface KernelBenchOptions {
  /** Smaller buffers and fewer sizes (a smoke run). */
  quick: boolean;
  /** The model whose kernels and forward are timed (default: the bundled target). */
  targetDir?: string;
  /** Where the JSON goes (none when undefined). */
  jsonPath?: string;
  /** What type the target's matrices load as (`--weights-dtype`). */
  weightsDtype?: WeightsDtype;
}

/** One measured row. */
export interface KernelRow {
  kernel: string;
  shape: string;
  ms: number;
  /** Bytes the kernel must read at least (weights, KV), for effective bandwidth. */
  bytes: number;
  gbps: number;
}

/**
 * Time `record` (which records one repetition) as described in the module doc. `reps` undefined: as
 * many repetitions as fill about 60 ms per sample, from the timed warm-up (slow kernels such as a
 * 49k-row LM head on a CPU adapter would otherwise take seconds each), at most `maxReps` (a fast GPU
 * needs hundreds of sub-0.1 ms launches to lift a sample above the sync's jitter).
 */
export async function timeOps(
  gpu: Gpu,
  ctx: ops.OpContext,
  record: () => Promise<void>,
  sync: number,
  reps?: number,
  maxReps = 40,
): Promise<number> {
  const w0 = performance.now();
  await record();
  await ctx.rec.submit("warm-up");
  await gpu.device.queue.onSubmittedWorkDone();
  reps ??= Math.max(2, Math.min(maxReps, Math.round(60 / Math.max(0.05, performance.now() - w0 - sync))));
  const samples: number[] = [];
  for (let k = 0; k < 3; k++) {
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) await record();
    await ctx.rec.submit("bench");
    await gpu.device.queue.onSubmittedWorkDone();
    samples.push(Math.max(0, performance.now() - t0 - sync) / reps);
  }
  return median(samples);
}

function randBytes(n: number, seed: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => (r.next() - 0.5) * 0.1);
}

/** One kernel of a decode step: its time, the bytes it must move, and how often one step runs it. */
export interface StepRow extends KernelRow {
  /** Launches per decode step (0: not part of an AR step, e.g. the KV commit of a speculative step). */
  perStep: number;
}

/** The decode-step breakdown: per-kernel rows and their sum per step. */
export interface DecodeStep {
  rows: StepRow[];
  /** Sum of perStep * ms over the rows (kernel time of one step, dispatch overhead included). */
  kernelMs: number;
  /** Weight + KV bytes one step must read. */
  bytes: number;
  /** Launches per step. */
  dispatches: number;
  /** One trivial dispatch (count-1 swiglu) in a long submission: the per-dispatch floor. */
  dispatchMs: number;
}

/**
 * Every kernel of one decode step (n = 1, `past` cached slots) at config `c`'s shape, on random data in
 * the checkpoint's dtype (no weights needed, so any shape can be asked for): ms, bytes, GB/s each and
 * how many times a step launches it. Sum of the rows + one submission + one readback should come close
 * to the measured forward t(1); the gap is what per-step work outside the kernels costs.
 */
export async function decodeStep(
  gpu: Gpu,
  ctx: ops.OpContext,
  c: ModelConfig,
  dtype: GpuWeightType,
  past: number,
  submitMs: number,
): Promise<DecodeStep> {
  const L = c.nLayers, d = c.hiddenSize, wb = ggmlRowBytes(dtype, d) / d; // bytes per weight
  const rows: StepRow[] = [];
  const own: GPUBuffer[] = [];
  const buf = (name: string, floats: number, seed?: number) => {
    const b = seed === undefined
      ? gpu.createBuffer(name, floats * 4)
      : gpu.createBufferWith(name, randBytes(floats, seed));
    own.push(b);
    return b;
  };
  const add = async (
    kernel: string,
    shape: string,
    perStep: number,
    bytes: number,
    record: () => Promise<void>,
  ) => {
    const ms = await timeOps(gpu, ctx, record, submitMs);
    rows.push({ kernel, shape, ms, bytes, gbps: bytes / (ms / 1000) / 1e9, perStep });
  };
  const wide = Math.max(c.vocabSize, c.intermediateSize, c.qDim, d);
  const x = buf("x", Math.max(c.intermediateSize, c.qDim, d), 11);
  const y = buf("y", wide);
  const tokens = gpu.createBufferWith("tokens", Uint32Array.of(3));
  own.push(tokens);
  const mats: GpuMatrix[] = [];
  const matrix = (name: string, r: number, k: number, seed: number) => {
    const m = uploadMatrix(gpu, name, randomMatrixBytes(dtype, r, k, seed), [r, k], dtype);
    mats.push(m);
    return m;
  };
  const embed = matrix("embed", c.vocabSize, d, 12);
  await add(
    "embedding",
    `${c.vocabSize}x${d}`,
    1,
    d * wb,
    () => ops.embedding(ctx, { table: embed, tokens, tokOffset: 0, out: y, n: 1 }),
  );
  const norm = buf("norm", d, 13);
  await add(
    "rmsnorm",
    `d=${d}`,
    2 * L + 1,
    d * 8,
    () => ops.rmsNorm(ctx, { x, w: norm, out: y, n: 1, d, eps: 1e-5 }),
  );
  const shapes: [string, number, number, number][] = [
    ["q", c.qDim, d, L],
    ["k", c.kvDim, d, L],
    ["v", c.kvDim, d, L],
    ["o", d, c.qDim, L],
    ["gate", c.intermediateSize, d, L],
    ["up", c.intermediateSize, d, L],
    ["down", d, c.intermediateSize, L],
  ];
  for (const [name, r, k, per] of shapes) {
    const w = matrix(name, r, k, 20 + r + k);
    await add(`matmul ${name}`, `${r}x${k}`, per, r * k * wb, () => ops.matmul(ctx, { w, x, y, n: 1 }));
    destroyMatrix(w);
    mats.pop();
  }
  // The fused launches forward.ts records instead where the matrices allow (their rows replace the
  // unfused ones in the per-step count).
  const wq = matrix("q", c.qDim, d, 31), wk = matrix("k", c.kvDim, d, 32);
  const qkFused = ops.qkRopeFusable(wq, wk, c.headDim);
  const ropeTable = buf("rope table", (past + 1) * c.headDim, 14);
  const positions = gpu.createBufferWith("positions", Uint32Array.of(past));
  own.push(positions);
  const qOut = buf("q", c.qDim, 15);
  const kCache = buf("k cache", (past + 1) * c.kvDim, 16);
  if (qkFused) {
    await add(
      "qk_rope (q, k + rope)",
      `${c.qDim}+${c.kvDim}x${d}`,
      L,
      (c.qDim + c.kvDim) * d * wb,
      () =>
        ops.qkRope(ctx, {
          wq,
          wk,
          x,
          q: qOut,
          k: kCache,
          kOffset: past * c.kvDim,
          n: 1,
          headDim: c.headDim,
          positions,
          posOffset: 0,
          table: ropeTable,
        }),
    );
  }
  const wGate = matrix("gate", c.intermediateSize, d, 33), wUp = matrix("up", c.intermediateSize, d, 34);
  const guFused = ops.gateUpFusable(wGate, wUp);
  if (guFused) {
    await add(
      "gate_up (gate, up + swiglu)",
      `2x${c.intermediateSize}x${d}`,
      L,
      2 * c.intermediateSize * d * wb,
      () => ops.gateUp(ctx, { wGate, wUp, x, out: y, n: 1 }),
    );
  }
  for (const r of rows) {
    if (qkFused && (r.kernel === "matmul q" || r.kernel === "matmul k")) r.perStep = 0;
    if (guFused && (r.kernel === "matmul gate" || r.kernel === "matmul up")) r.perStep = 0;
  }
  await add(
    "matmul lm head",
    `${c.vocabSize}x${d}`,
    1,
    c.vocabSize * d * wb,
    () => ops.matmul(ctx, { w: embed, x, y, n: 1 }),
  );
  const cap = past + 1;
  const table = ropeTable, q = qOut, kc = kCache;
  const vc = buf("v cache", cap * c.kvDim, 17);
  const r = { n: 1, headDim: c.headDim, positions, posOffset: 0, table };
  await add(
    "rope q",
    `${c.nHeads} heads`,
    qkFused ? 0 : L,
    c.qDim * 8,
    () => ops.rope(ctx, { ...r, x: q, offset: 0, stride: c.qDim, nHeads: c.nHeads }),
  );
  await add(
    "rope k",
    `${c.nKvHeads} heads`,
    qkFused ? 0 : L,
    c.kvDim * 8,
    () => ops.rope(ctx, { ...r, x: kc, offset: past * c.kvDim, stride: c.kvDim, nHeads: c.nKvHeads }),
  );
  const scratch = buf("scratch", c.nHeads * cap);
  const mask = buf("mask", 1);
  await add(
    "attention",
    `past=${past}, heads ${c.nHeads}/${c.nKvHeads}`,
    L,
    2 * cap * c.kvDim * 4,
    () =>
      ops.attention(ctx, {
        q,
        k: kc,
        v: vc,
        mask,
        scratch,
        out: y,
        n: 1,
        past,
        nHeads: c.nHeads,
        nKvHeads: c.nKvHeads,
        headDim: c.headDim,
        maskWords: 1,
        causal: true,
        cap,
      }),
  );
  const up = buf("up", c.intermediateSize, 18);
  const gate = buf("gate", c.intermediateSize, 19);
  await add(
    "swiglu",
    `${c.intermediateSize}`,
    guFused ? 0 : L,
    c.intermediateSize * 12,
    () => ops.swiGlu(ctx, { gate, up, count: c.intermediateSize }),
  );
  const logits = buf("logits", c.vocabSize, 21);
  const ids = buf("ids", 4);
  await add(
    "argmax",
    `vocab=${c.vocabSize}`,
    1,
    c.vocabSize * 4,
    () => ops.argmax(ctx, { logits, out: ids, outOffset: 0, n: 1, vocab: c.vocabSize }),
  );
  const uni = gpu.createBufferWith("u", Float32Array.of(0.5));
  own.push(uni);
  await add(
    "sample (T 0.7, top-k 50, top-p 0.9)",
    `vocab=${c.vocabSize}`,
    0,
    c.vocabSize * 4,
    () =>
      ops.sample(ctx, {
        logits,
        uniforms: uni,
        uOffset: 0,
        out: ids,
        outOffset: 0,
        n: 1,
        vocab: c.vocabSize,
        temperature: 0.7,
        topK: 50,
        topP: 0.9,
      }),
  );
  const slots = gpu.createBufferWith("slots", Uint32Array.of(past));
  own.push(slots);
  const tmp = buf("kv tmp", 2 * c.kvDim);
  await add(
    "kv copy (commit, 1 row, per layer)",
    `kvDim=${c.kvDim}`,
    0,
    4 * c.kvDim * 4,
    () => ops.kvCopy(ctx, { slots, k: kc, v: vc, tmp, count: 1, kvDim: c.kvDim, dstBase: 0 }),
  );
  const dispatchMs = await timeOps(gpu, ctx, () => ops.swiGlu(ctx, { gate, up, count: 1 }), submitMs, 200);
  rows.push({
    kernel: "empty dispatch",
    shape: "swiglu count=1",
    ms: dispatchMs,
    bytes: 0,
    gbps: 0,
    perStep: 0,
  });
  for (const m of mats) destroyMatrix(m);
  for (const b of own) b.destroy();
  const kernelMs = rows.reduce((a, r) => a + r.perStep * r.ms, 0);
  const dispatches = rows.reduce((a, r) => a + r.perStep, 0);
  const bytes = rows.reduce((a, r) => a + r.perStep * r.bytes, 0);
  return { rows, kernelMs, bytes, dispatches, dispatchMs };
}

/**
 * Median ms of one pass of the adapter's streaming-read kernel over `bytes` (every byte read once, the
 * best a weight-reading kernel can do): the yardstick for bandwidth figures.
 */
export async function streamingReadMs(
  gpu: Gpu,
  ctx: ops.OpContext,
  bytes: number,
  submitMs: number,
): Promise<number> {
  const data = gpu.createBuffer("stream", bytes);
  const groups = 256;
  const partial = gpu.createBuffer("partials", groups * 256 * 4);
  try {
    return await timeOps(
      gpu,
      ctx,
      () => ops.streamRead(ctx, { data, count: bytes / 16, out: partial, groups }),
      submitMs,
      5,
    );
  } finally {
    data.destroy();
    partial.destroy();
  }
}

/** Run the kernel benchmark on the shared GPU; prints Markdown, writes the JSON, returns the data. */
export async function benchKernels(o: KernelBenchOptions): Promise<Record<string, unknown>> {
  const gpu = await sharedGpu();
  const quick = o.quick;
  const ctx: ops.OpContext = {
    rec: new Recorder(gpu, new UniformArena(gpu)),
    pipelines: new PipelineCache(gpu),
  };
  const sync = await syncCost(gpu);
  const rows: KernelRow[] = [];
  const add = (kernel: string, shape: string, ms: number, bytes: number) =>
    rows.push({ kernel, shape, ms, bytes, gbps: bytes / (ms / 1000) / 1e9 });

  // Streaming read bandwidth: the yardstick.
  const streamBytes = quick ? 16 << 20 : 64 << 20;
  const tStream = await streamingReadMs(gpu, ctx, streamBytes, sync.submitMs);
  add("stream_read", `${streamBytes >> 20} MiB`, tStream, streamBytes);
  const streamGbps = rows[0].gbps;

  // Matmul on a 2048 x 2048 F16 matrix (8 MiB): n = 1 is the matvec of AR decoding.
  const D = quick ? 1024 : 2048;
  const W = uploadMatrix(gpu, "W", encodeTensor(randBytes(D * D, 1), "F16"), [D, D], "F16");
  const x = gpu.createBufferWith("x", randBytes(256 * D, 2));
  const y = gpu.createBuffer("y", 256 * D * 4);
  const tn: { n: number; ms: number }[] = [];
  for (const n of quick ? [1, 4, 16, 64] : [1, 2, 4, 8, 16, 32, 64, 128, 256]) {
    const ms = await timeOps(
      gpu,
      ctx,
      () => ops.matmul(ctx, { w: W, x, y, n }),
      sync.submitMs,
      n > 32 ? 3 : 10,
    );
    tn.push({ n, ms });
    add("matmul f16", `${D}x${D}, n=${n}`, ms, D * D * 2);
  }
  destroyMatrix(W);

  // The n = 1 matvec per weight type, its bandwidth counted in the type's own bytes (what it must read).
  for (const type of GPU_WEIGHT_TYPES) {
    const m = uploadMatrix(gpu, type, randomMatrixBytes(type, D, D, 9), [D, D], type);
    const ms = await timeOps(gpu, ctx, () => ops.matmul(ctx, { w: m, x, y, n: 1 }), sync.submitMs, 10);
    add(`matvec ${type}`, `${D}x${D}, n=1`, ms, m.bytes);
    destroyMatrix(m);
  }

  // The target's own kernels at n = 1.
  const target = await loadGpuTarget(o.targetDir ?? DEFAULT_TARGET_DIR, o.weightsDtype);
  const { model } = target;
  const c = target.folder.config;
  const d = c.hiddenSize;
  const vec = gpu.createBufferWith("vec", randBytes(Math.max(c.intermediateSize, c.qDim, d) * 8, 3));
  const out = gpu.createBuffer("out", Math.max(c.vocabSize, c.intermediateSize) * 8 * 4);
  const norm = gpu.createBufferWith("norm", randBytes(d, 4));
  add(
    "rmsnorm",
    `d=${d}`,
    await timeOps(
      gpu,
      ctx,
      () => ops.rmsNorm(ctx, { x: vec, w: norm, out, n: 1, d, eps: 1e-5 }),
      sync.submitMs,
    ),
    d * 8,
  );
  // The hardware profile's past (runtime/hardware_profile.ts measureCosts): every forward re-prefills it.
  const past = Math.min(64, c.maxPositions - 1);
  const kc = gpu.createBufferWith("k", randBytes((past + 1) * c.kvDim, 5));
  const vc = gpu.createBufferWith("v", randBytes((past + 1) * c.kvDim, 6));
  const scratch = gpu.createBuffer("scratch", c.nHeads * (past + 1) * 4);
  const mask = gpu.createBuffer("mask", 4 * Math.ceil((past + 1) / 32));
  add(
    "attention",
    `past=${past}, heads ${c.nHeads}/${c.nKvHeads}`,
    await timeOps(gpu, ctx, () =>
      ops.attention(ctx, {
        q: vec,
        k: kc,
        v: vc,
        mask,
        scratch,
        out,
        n: 1,
        past,
        nHeads: c.nHeads,
        nKvHeads: c.nKvHeads,
        headDim: c.headDim,
        maskWords: 1,
        causal: true,
        cap: past + 1,
      }), sync.submitMs),
    2 * (past + 1) * c.kvDim * 4,
  );
  const logits = gpu.createBufferWith("logits", randBytes(c.vocabSize, 7));
  const uni = gpu.createBufferWith("u", Float32Array.of(0.5));
  add(
    "argmax",
    `vocab=${c.vocabSize}`,
    await timeOps(
      gpu,
      ctx,
      () => ops.argmax(ctx, { logits, out, outOffset: 0, n: 1, vocab: c.vocabSize }),
      sync.submitMs,
    ),
    c.vocabSize * 4,
  );
  add(
    "sample (top-k 50, top-p 0.9)",
    `vocab=${c.vocabSize}`,
    await timeOps(gpu, ctx, () =>
      ops.sample(ctx, {
        logits,
        uniforms: uni,
        uOffset: 0,
        out,
        outOffset: 0,
        n: 1,
        vocab: c.vocabSize,
        temperature: 0.7,
        topK: 50,
        topP: 0.9,
      }), sync.submitMs),
    c.vocabSize * 4,
  );

  // One decode step (n = 1) kernel by kernel at the target's shape, against the measured forward.
  const dtype =
    gpuMatrices(target.folder.checkpoint, o.weightsDtype).get(llamaTensorSpec(c).global.embed.name)
      .type;
  const step = await decodeStep(gpu, ctx, c, dtype, past, sync.submitMs);

  // Whole target forward t(n): n new tokens after `past` cached ones, one submission + one readback.
  const fwd: { n: number; ms: number }[] = [];
  const fwdSizes = quick ? [1, 8, 32] : [1, 2, 4, 8, 16, 32, 64];
  for (const n of fwdSizes) {
    fwd.push({ n, ms: sync.readbackMs + await forwardMs(model, n, past, sync.readbackMs, quick ? 2 : 3) });
  }
  // The startup profile's matmul kernel choice (gpu/matmul_choice.ts) and the forward again with it.
  const uses = await model.matmulUses();
  const choiceStart = performance.now();
  const choice = uses ? await measureMatmulChoice(gpu, uses) : undefined;
  const choiceMs = performance.now() - choiceStart;
  const fwdChosen: { n: number; ms: number }[] = [];
  if (choice) {
    model.useMatmulChoice(choice);
    for (const n of fwdSizes) {
      const ms = sync.readbackMs + await forwardMs(model, n, past, sync.readbackMs, quick ? 2 : 3);
      fwdChosen.push({ n, ms });
    }
    model.useMatmulChoice(undefined);
  }
  target.close();

  console.log(`\n## Kernels on ${gpu.adapter.description || gpu.adapter.vendor}\n`);
  console.log(
    `sync cost: empty submit + onSubmittedWorkDone ${sync.submitMs.toFixed(2)} ms, 4-byte readback ${
      sync.readbackMs.toFixed(2)
    } ms\n`,
  );
  console.log("| kernel | shape | ms | GB/s | % of stream |");
  console.log("|---|---|---:|---:|---:|");
  for (const r of rows) {
    console.log(
      `| ${r.kernel} | ${r.shape} | ${r.ms.toFixed(3)} | ${r.gbps.toFixed(2)} | ${
        (100 * r.gbps / streamGbps).toFixed(0)
      }% |`,
    );
  }
  console.log(`\n## Target forward t(n) (${c.nLayers} layers, d=${d}, past=${past}, incl. one readback)\n`);
  console.log("| n | ms | ms per token |");
  console.log("|---:|---:|---:|");
  for (const f of fwd) console.log(`| ${f.n} | ${f.ms.toFixed(2)} | ${(f.ms / f.n).toFixed(3)} |`);
  if (choice) {
    const picks = choice.buckets.map((b) => `n<=${b.n}: ${b.tile ? JSON.stringify(b.tile) : "row-walking"}`);
    console.log(`\n## Matmul kernel choice (measured in ${choiceMs.toFixed(0)} ms)\n\n${picks.join("; ")}\n`);
    console.log("| n | row-walking ms | with the choice ms |");
    console.log("|---:|---:|---:|");
    fwd.forEach((f, i) => console.log(`| ${f.n} | ${f.ms.toFixed(2)} | ${fwdChosen[i].ms.toFixed(2)} |`));
  }
  const t1 = fwd[0].ms;
  console.log(
    `\n## One decode step (n = 1, past=${past}) kernel by kernel at the target's shape (${dtype})\n`,
  );
  console.log("| kernel | shape | ms | bytes | GB/s | % of stream | per step | ms per step |");
  console.log("|---|---|---:|---:|---:|---:|---:|---:|");
  for (const r of step.rows) {
    console.log(
      `| ${r.kernel} | ${r.shape} | ${r.ms.toFixed(3)} | ${r.bytes} | ${r.gbps.toFixed(2)} | ${
        (100 * r.gbps / streamGbps).toFixed(0)
      }% | ${r.perStep} | ${(r.perStep * r.ms).toFixed(2)} |`,
    );
  }
  const sum = step.kernelMs + sync.submitMs + sync.readbackMs;
  console.log(
    `\n${step.dispatches} dispatches per step; kernels ${step.kernelMs.toFixed(2)} ms + one submission ${
      sync.submitMs.toFixed(2)
    } ms + one readback ${sync.readbackMs.toFixed(2)} ms = ${sum.toFixed(2)} ms vs measured t(1) ${
      t1.toFixed(2)
    } ms (${(100 * sum / t1).toFixed(0)}%). ${(step.bytes / 1e6).toFixed(1)} MB per token: ${
      (step.bytes / (t1 / 1000) / 1e9).toFixed(2)
    } GB/s at t(1) = ${(100 * step.bytes / (t1 / 1000) / 1e9 / streamGbps).toFixed(0)}% of streaming read ${
      streamGbps.toFixed(2)
    } GB/s (AR ${(1000 / t1).toFixed(2)} tok/s).`,
  );
  for (const b of [x, y, vec, out, norm, kc, vc, scratch, mask, logits, uni]) b.destroy();
  for (const p of W.parts) p.buffer.destroy();
  const result = {
    adapter: gpu.adapter,
    sync,
    streamGbps,
    kernels: rows,
    matmulTn: tn,
    targetForwardTn: fwd,
    matmulChoice: choice ? { ...choice, measuredMs: choiceMs, targetForwardTn: fwdChosen } : undefined,
    decodeStep: step,
  };
  if (o.jsonPath) {
    await Deno.writeTextFile(
      o.jsonPath,
      JSON.stringify({ deno: Deno.version.deno, kernels: result }, null, 2),
    );
  }
  return result;
}
