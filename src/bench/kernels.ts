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
import { uploadMatrix } from "../gpu/tensor.ts";
import { encodeTensor } from "../model/safetensors_write.ts";
import { DEFAULT_TARGET_DIR } from "../model/folder.ts";
import { Rng } from "../util/rng.ts";
import { sharedGpu } from "../runtime/backend.ts";
import { forwardMs, syncCost } from "../runtime/hardware_profile.ts";
import { loadGpuTarget } from "./pair.ts";

/** Options of the kernel benchmark. */
export interface KernelBenchOptions {
  /** Smaller buffers and fewer sizes (a smoke run). */
  quick: boolean;
  /** The model whose kernels and forward are timed (default: the bundled target). */
  targetDir?: string;
  /** Where the JSON goes (none when undefined). */
  jsonPath?: string;
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

/** Time `record` (which records one repetition) as described in the module doc. */
async function timeOps(
  gpu: Gpu,
  ctx: ops.OpContext,
  record: () => Promise<void>,
  sync: number,
  reps = 20,
): Promise<number> {
  await record();
  await ctx.rec.submit("warm-up");
  await gpu.device.queue.onSubmittedWorkDone();
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
  const data = gpu.createBuffer("stream", streamBytes);
  const groups = 256;
  const partial = gpu.createBuffer("partials", groups * 256 * 4);
  const tStream = await timeOps(
    gpu,
    ctx,
    () => ops.streamRead(ctx, { data, count: streamBytes / 16, out: partial, groups }),
    sync.submitMs,
    5,
  );
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

  // The target's own kernels at n = 1.
  const target = await loadGpuTarget(o.targetDir ?? DEFAULT_TARGET_DIR);
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
  const past = Math.min(256, c.maxPositions - 1);
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

  // Whole target forward t(n): n new tokens after `past` cached ones, one submission + one readback.
  const fwd: { n: number; ms: number }[] = [];
  for (const n of quick ? [1, 8, 32] : [1, 2, 4, 8, 16, 32, 64, 128]) {
    fwd.push({ n, ms: sync.readbackMs + await forwardMs(model, n, past, sync.readbackMs, quick ? 2 : 3) });
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
  for (const b of [data, partial, x, y, vec, out, norm, kc, vc, scratch, mask, logits, uni]) b.destroy();
  for (const p of W.parts) p.buffer.destroy();
  const result = {
    adapter: gpu.adapter,
    sync,
    streamGbps,
    kernels: rows,
    matmulTn: tn,
    targetForwardTn: fwd,
  };
  if (o.jsonPath) {
    await Deno.writeTextFile(
      o.jsonPath,
      JSON.stringify({ deno: Deno.version.deno, kernels: result }, null, 2),
    );
  }
  return result;
}
