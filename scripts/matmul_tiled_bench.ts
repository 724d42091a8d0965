/**
 * Row-walking matmul.wgsl vs the tiled GEMM (matmul_tiled.wgsl) at one model's matmul shapes, n = 1 ..
 * 256 token rows, in one run (A/B interleaved per n): t(n) of each kernel (the tiled one: the best of
 * gpu/matmul_choice.ts's candidates at that n; "~": one rough run, it lost by > 3x) and t(64)/t(1),
 * t(256)/t(1).
 *
 *   deno run -A scripts/matmul_tiled_bench.ts [--dtype F16] [--shapes 576x576,192x576,...] [--ns 1,2,4,...]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { Gpu } from "../src/gpu/device.ts";
import * as ops from "../src/gpu/ops.ts";
import { PipelineCache } from "../src/gpu/pipelines.ts";
import { Recorder, UniformArena } from "../src/gpu/recorder.ts";
import { matmulTiled, type TiledTile } from "../src/gpu/matmul_tiled.ts";
import { tiledCandidates } from "../src/gpu/matmul_choice.ts";
import { destroyMatrix, uploadMatrix } from "../src/gpu/tensor.ts";
import { encodeTensor } from "../src/model/safetensors_write.ts";
import type { DType } from "../src/model/dtype.ts";

const { values } = parseArgs({
  options: {
    dtype: { type: "string", default: "F16" },
    // SmolLM2-135M: q/o, k/v, gate/up, down, LM head (out x in).
    shapes: { type: "string", default: "576x576,192x576,1536x576,576x1536,49152x576" },
    ns: { type: "string", default: "1,2,4,8,16,32,64,128,256" },
  },
});
const dtype = values.dtype as DType;
const gpu = await Gpu.acquire();
const ctx: ops.OpContext = {
  rec: new Recorder(gpu, new UniformArena(gpu)),
  pipelines: new PipelineCache(gpu),
};
const ns = values.ns.split(",").map(Number);
const shapes = values.shapes.split(",").map((s) => s.split("x").map(Number) as [number, number]);
const maxN = Math.max(...ns);
const x = gpu.createBufferWith("x", Float32Array.from({ length: maxN * 1536 }, (_, i) => Math.sin(i)));
const y = gpu.createBuffer("y", maxN * Math.max(...shapes.map((s) => s[0])) * 4);

async function submit(): Promise<number> {
  const t = performance.now();
  await ctx.rec.submit();
  await gpu.device.queue.onSubmittedWorkDone();
  return performance.now() - t;
}
// An empty submission's cost (several ms on a loaded llvmpipe), taken off every sample.
const empties: number[] = [];
for (let k = 0; k < 5; k++) empties.push(await submit());
const sub = empties.sort((a, b) => a - b)[2];

/**
 * Median-of-3 ms of one launch (reps launches per submission, ~40 ms of work per sample, the empty
 * submission's cost taken off). A kernel whose second run already exceeds `cutoff` is reported from that
 * run alone, as "~ms" (it clearly loses; timing it further would take minutes on a CPU adapter).
 */
async function time(record: () => Promise<void>, cutoff = Infinity): Promise<{ ms: number; rough: boolean }> {
  await record();
  await submit();
  await record();
  const est = Math.max(0.01, (await submit()) - sub);
  if (est > cutoff) return { ms: est, rough: true };
  const reps = Math.max(1, Math.min(64, Math.round(40 / est)));
  const s: number[] = [];
  for (let k = 0; k < 3; k++) {
    for (let r = 0; r < reps; r++) await record();
    s.push(Math.max(0.001, (await submit()) - sub) / reps);
  }
  return { ms: s.sort((a, b) => a - b)[1], rough: false };
}

console.log(`## matmul ${dtype} on ${gpu.adapter.description || gpu.adapter.vendor}: row-walking vs tiled\n`);
console.log("| shape (out x in) | n | row-walking ms | tiled ms | best tile |");
console.log("|---|---:|---:|---:|---|");
const summary: string[] = [];
for (const [rows, cols] of shapes) {
  const data = Float32Array.from({ length: rows * cols }, (_, i) => Math.cos(i) * 0.05);
  const w = uploadMatrix(gpu, "w", encodeTensor(data, dtype), [rows, cols], dtype);
  const rw: number[] = [], tl: number[] = [];
  for (const n of ns) {
    const a = (await time(() => ops.matmul(ctx, { w, x, y, n }))).ms;
    let best = { ms: Infinity, rough: true }, bestTile: TiledTile | undefined;
    for (const tile of tiledCandidates(n, gpu.hasF16 && dtype === "F16")) {
      const t = await time(() => matmulTiled(ctx, { w, x, y, n, tile }), 3 * a);
      if (t.ms < best.ms) [best, bestTile] = [t, tile];
    }
    rw.push(a);
    tl.push(best.ms);
    const b = `${best.rough ? "~" : ""}${best.ms.toFixed(3)}`;
    console.log(`| ${rows}x${cols} | ${n} | ${a.toFixed(3)} | ${b} | ${JSON.stringify(bestTile)} |`);
  }
  const at = (v: number[], n: number) => v[ns.indexOf(n)] / v[0];
  if (ns[0] === 1 && ns.includes(64) && ns.includes(256)) {
    summary.push(
      `| ${rows}x${cols} | ${at(rw, 64).toFixed(2)} | ${at(rw, 256).toFixed(2)} | ${
        at(tl, 64).toFixed(2)
      } | ${at(tl, 256).toFixed(2)} |`,
    );
  }
  destroyMatrix(w);
}
if (summary.length) {
  console.log("\n| shape | row-walking t(64)/t(1) | t(256)/t(1) | tiled t(64)/t(1) | t(256)/t(1) |");
  console.log("|---|---:|---:|---:|---:|");
  for (const l of summary) console.log(l);
}
