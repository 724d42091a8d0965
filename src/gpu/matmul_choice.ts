/**
 * Measuring, on the running adapter, which matmul kernel is fastest per n bucket for one model's
 * matrices: the row-walking matmul.wgsl (ops.matmul's tuned tiles) or the tiled GEMM with one of a few
 * tiles ({@link tiledCandidates}). The result is a {@link MatmulChoice} for `OpContext.kernels`.
 *
 * Cost: per bucket and kernel two warm-up submissions (compile, estimate) and two timed
 * ones of up to 32 repetitions (~8 ms of work each, an empty submission's cost taken off), each
 * repetition one layer's matmuls plus 1/L of the LM head (a row window of it: its share of a forward), so
 * the score is a forward's matmul time / L. The tiled kernel must beat the row-walking one by 10% (the
 * latter timed twice when it might lose, best kept). A time budget (default 3 s) caps it: buckets past it
 * keep the row-walking kernel (on a GPU all buckets take well under it; on llvmpipe, where the row-walking
 * kernel wins everywhere measured, the larger buckets run out of it).
 *
 * @module
 */

import type { Gpu } from "./device.ts";
import * as ops from "./ops.ts";
import { PipelineCache, shaderSource } from "./pipelines.ts";
import { Recorder, UniformArena } from "./recorder.ts";
import type { GpuMatrix } from "./tensor.ts";
import {
  checkTiledTile,
  MATMUL_BUCKETS,
  MATMUL_CHOICE_VERSION,
  type MatmulChoice,
  matmulTiled,
  type TiledTile,
} from "./matmul_tiled.ts";

/** Hash (FNV-1a, hex) of the matmul shaders and the choice version: what a stored choice is valid for. */
export function matmulShaderHash(): string {
  const text = `${MATMUL_CHOICE_VERSION}|${shaderSource("matmul")}|${shaderSource("matmul_tiled")}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}

/**
 * The tiles tried at n token rows: workgroups no taller than ~2n token rows (a taller one computes
 * mostly padding), 8-32 accumulators per thread, 128-256 threads (GPU-sized; a CPU adapter such as
 * llvmpipe keeps the row-walking kernel), and the f16 variants where the device and weights allow.
 */
export function tiledCandidates(n: number, f16: boolean): TiledTile[] {
  const all: TiledTile[] = [
    { bm: 16, bn: 64, bk: 16, tm: 2, tr: 4 }, // 128 threads, 8 accumulators
    { bm: 32, bn: 64, bk: 16, tm: 4, tr: 4 }, // 128 threads, 16
    { bm: 64, bn: 64, bk: 16, tm: 4, tr: 4 }, // 256 threads, 16
    { bm: 64, bn: 128, bk: 8, tm: 8, tr: 4 }, // 256 threads, 32
  ];
  const fit = all.filter((t) => t.bm <= Math.max(16, 2 * n));
  return f16 ? [...fit, ...fit.filter((t) => t.bm >= 32).map((t) => ({ ...t, f16: true }))] : fit;
}

/** A matrix a forward multiplies by, and how many times per forward (e.g. once per layer). */
export interface MatmulUse {
  w: GpuMatrix;
  count: number;
}

/**
 * Time the row-walking kernel and {@link tiledCandidates} per bucket over `uses` (all of one dtype
 * family; f16 tiles only for F16 weights on a device with shader-f16) and keep the fastest.
 */
export async function measureMatmulChoice(
  gpu: Gpu,
  uses: MatmulUse[],
  opts: { budgetMs?: number; buckets?: readonly number[]; log?: (l: string) => void } = {},
): Promise<MatmulChoice> {
  const buckets = opts.buckets ?? MATMUL_BUCKETS;
  const start = performance.now(), budget = opts.budgetMs ?? 3000;
  const layers = Math.max(...uses.map((u) => u.count));
  // Row windows: a matrix used c times per forward counts c / layers of its rows (first part only).
  const mats = uses.map(({ w, count }) => {
    const rows = Math.min(w.parts[0].rows, Math.max(1, Math.ceil((w.rows * count) / layers / 64) * 64));
    if (rows === w.rows) return w;
    return { ...w, rows, parts: [{ ...w.parts[0], rows }], bytes: 0 };
  });
  const maxN = buckets[buckets.length - 1];
  const cols = Math.max(...mats.map((m) => m.cols)), rows = Math.max(...mats.map((m) => m.rows));
  const x = gpu.createBuffer("matmul choice x", maxN * cols * 4);
  const y = gpu.createBuffer("matmul choice y", maxN * rows * 4);
  const ctx: ops.OpContext = {
    rec: new Recorder(gpu, new UniformArena(gpu)),
    pipelines: new PipelineCache(gpu),
  };
  const f16 = gpu.hasF16 && mats.every((m) => m.dtype === "F16");
  const submit = async () => {
    const t0 = performance.now();
    await ctx.rec.submit("matmul choice");
    await gpu.device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  // An empty submission's cost (llvmpipe: several ms), taken off every sample.
  const empty: number[] = [];
  for (let k = 0; k < 3; k++) empty.push(await submit());
  const sub = empty.sort((a, b) => a - b)[1];
  // `cutoff`: a kernel whose first run already takes longer is not timed further (it loses).
  const time = async (n: number, tile?: TiledTile, cutoff = Infinity) => {
    const record = async () => {
      for (const w of mats) {
        if (tile) await matmulTiled(ctx, { w, x, y, n, tile });
        else await ops.matmul(ctx, { w, x, y, n });
      }
    };
    // First run compiles (some drivers only at the first dispatch), the second estimates; then
    // repetitions filling ~8 ms.
    await record();
    await submit();
    await record();
    const est = Math.max(0.02, (await submit()) - sub);
    if (est > cutoff) return est;
    const reps = Math.max(1, Math.min(32, Math.round(8 / est)));
    let best = Infinity;
    for (let k = 0; k < 2; k++) {
      for (let r = 0; r < reps; r++) await record();
      best = Math.min(best, Math.max(0.001, (await submit()) - sub) / reps);
    }
    return best;
  };
  const out: MatmulChoice["buckets"] = [];
  try {
    for (const n of buckets) {
      if (performance.now() - start > budget) {
        out.push({ n, tile: null }); // unmeasured: today's kernel
        continue;
      }
      let rowsMs = await time(n);
      let tile: TiledTile | null = null, tiledMs: number | undefined;
      for (const t of tiledCandidates(n, f16)) {
        if (performance.now() - start > budget) break;
        checkTiledTile(t, mats[0].dtype);
        const ms = await time(n, t, 2 * rowsMs);
        if (tiledMs === undefined || ms < tiledMs) [tiledMs, tile] = [ms, t];
      }
      // A/B again (a loaded machine's noise must not switch kernels): the row-walking kernel's best of
      // both runs, and the tiled one must win by 10%.
      if (tiledMs !== undefined && tiledMs < rowsMs) rowsMs = Math.min(rowsMs, await time(n));
      if (tiledMs === undefined || tiledMs > 0.9 * rowsMs) tile = null;
      out.push({ n, tile, ms: { rows: rowsMs, ...(tiledMs === undefined ? {} : { tiled: tiledMs }) } });
      opts.log?.(
        `  matmul n=${n}: row-walking ${rowsMs.toFixed(2)} ms, best tiled ${
          tiledMs?.toFixed(2) ?? "-"
        } ms -> ${tile ? JSON.stringify(tile) : "row-walking"}`,
      );
    }
  } finally {
    x.destroy();
    y.destroy();
  }
  return { version: MATMUL_CHOICE_VERSION, shaders: matmulShaderHash(), buckets: out };
}

/** True when `c` was measured with these kernels (same version and shader hash). */
export function isCurrentChoice(c: MatmulChoice | undefined): c is MatmulChoice {
  return !!c && c.version === MATMUL_CHOICE_VERSION && c.shaders === matmulShaderHash() &&
    Array.isArray(c.buckets);
}
