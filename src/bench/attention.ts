/**
 * A/B timing of the two attention kernels (shaders/attention.wgsl: three passes through a scores
 * scratch; shaders/flash_attention.wgsl: one pass, online softmax, GQA-shared K/V tiles) on the running
 * adapter, for n query rows at a total context of `ctx` slots (past = ctx - n, causal) and a model's
 * attention shapes (default SmolLM2-135M: 9 heads / 3 KV heads, head_dim 64). Old and new are measured
 * alternately within each round (noisy shared machines: compare only inside one run); the median of the
 * rounds is reported. Also times the flash kernel with an f16 KV cache.
 *
 *   deno run -A src/bench/attention.ts [--quick] [--heads 9 --kv-heads 3 --head-dim 64]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Gpu } from "../gpu/device.ts";
import * as ops from "../gpu/ops.ts";
import { PipelineCache } from "../gpu/pipelines.ts";
import { Recorder, UniformArena } from "../gpu/recorder.ts";
import { Rng } from "../util/rng.ts";
import { median } from "../util/stats.ts";

/** One (n, ctx) cell: ms per call of each kernel. */
export interface AttentionAb {
  n: number;
  ctx: number;
  oldMs: number;
  flashMs: number;
  flashF16Ms: number;
}

/** Attention shapes of one model. */
export interface AttentionShape {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
}

/** Time old vs flash attention over `ns` x `ctxs` (cells with n > ctx are skipped). */
export async function attentionAb(
  gpu: Gpu,
  shape: AttentionShape,
  ns: number[],
  ctxs: number[],
  rounds = 3,
): Promise<AttentionAb[]> {
  const ctx: ops.OpContext = {
    rec: new Recorder(gpu, new UniformArena(gpu)),
    pipelines: new PipelineCache(gpu),
  };
  const { nHeads, nKvHeads, headDim } = shape;
  const kvDim = nKvHeads * headDim, qDim = nHeads * headDim;
  const cap = Math.max(...ctxs), maxN = Math.max(...ns);
  const r = new Rng(1);
  const rand = (len: number) => Float32Array.from({ length: len }, () => r.next() * 2 - 1);
  const q = gpu.createBufferWith("q", rand(maxN * qDim));
  const k = gpu.createBufferWith("k", rand(cap * kvDim)), v = gpu.createBufferWith("v", rand(cap * kvDim));
  const k16 = gpu.createBufferWith("k16", rand(cap * kvDim / 2)),
    v16 = gpu.createBufferWith("v16", rand(cap * kvDim / 2));
  const scratch = gpu.createBuffer("scratch", maxN * nHeads * cap * 4);
  const mask = gpu.createBuffer("mask", 4);
  const out = gpu.createBuffer("out", maxN * qDim * 4);
  const sync = async () => {
    await ctx.rec.submit("bench");
    await gpu.device.queue.onSubmittedWorkDone();
  };
  const t0 = performance.now();
  for (let i = 0; i < 5; i++) await sync();
  const syncMs = (performance.now() - t0) / 5;
  const rows: AttentionAb[] = [];
  for (const c of ctxs) {
    for (const n of ns) {
      if (n > c) continue;
      const a = { q, mask, out, n, past: c - n, nHeads, nKvHeads, headDim, maskWords: 1, causal: true };
      const runs = {
        old: () => ops.attention(ctx, { ...a, k, v, scratch, cap }),
        flash: () => ops.flashAttention(ctx, { ...a, k, v }),
        f16: () => ops.flashAttention(ctx, { ...a, k: k16, v: v16, kvDtype: "f16" }),
      };
      const samples: Record<keyof typeof runs, number[]> = { old: [], flash: [], f16: [] };
      // Warm-up (compiles) and a repetition count filling ~40 ms per sample.
      const w0 = performance.now();
      await runs.old();
      await sync();
      const reps = Math.max(
        2,
        Math.min(50, Math.round(40 / Math.max(0.05, performance.now() - w0 - syncMs))),
      );
      await runs.flash();
      await runs.f16();
      await sync();
      for (let round = 0; round < rounds; round++) {
        for (const key of Object.keys(runs) as (keyof typeof runs)[]) {
          const s0 = performance.now();
          for (let i = 0; i < reps; i++) await runs[key]();
          await sync();
          samples[key].push(Math.max(0, performance.now() - s0 - syncMs) / reps);
        }
      }
      rows.push({
        n,
        ctx: c,
        oldMs: median(samples.old),
        flashMs: median(samples.flash),
        flashF16Ms: median(samples.f16),
      });
    }
  }
  for (const b of [q, k, v, k16, v16, scratch, mask, out]) b.destroy();
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      heads: { type: "string", default: "9" },
      "kv-heads": { type: "string", default: "3" },
      "head-dim": { type: "string", default: "64" },
      ns: { type: "string" },
      ctxs: { type: "string" },
    },
  });
  const list = (s: string | undefined, d: number[]) => s ? s.split(",").map(Number) : d;
  const gpu = await Gpu.acquire();
  const shape = {
    nHeads: Number(values.heads),
    nKvHeads: Number(values["kv-heads"]),
    headDim: Number(values["head-dim"]),
  };
  const rows = await attentionAb(
    gpu,
    shape,
    list(values.ns, values.quick ? [1, 16] : [1, 4, 16, 64, 256]),
    list(values.ctxs, values.quick ? [64, 512] : [64, 512, 2048]),
  );
  console.log(`attention ms per call, heads ${shape.nHeads}/${shape.nKvHeads}, head_dim ${shape.headDim}`);
  console.log("    n    ctx     old   flash  flash-f16  old/flash");
  for (const x of rows) {
    console.log(
      `${String(x.n).padStart(5)} ${String(x.ctx).padStart(6)} ${x.oldMs.toFixed(3).padStart(7)} ${
        x.flashMs.toFixed(3).padStart(7)
      } ${x.flashF16Ms.toFixed(3).padStart(10)} ${(x.oldMs / x.flashMs).toFixed(2).padStart(10)}`,
    );
  }
}
