/**
 * The tiled GEMM (shaders/matmul_tiled.wgsl) for n > 1 token rows, and the per-adapter choice between
 * it and the row-walking matmul.wgsl: {@link MatmulChoice} holds, per n bucket, the tile measured
 * fastest on this adapter (or none: row-walking), and {@link matmul} in ops.ts consults it through
 * `OpContext.kernels`. Without a choice nothing changes.
 *
 * @module
 */

import type { OpContext } from "./ops.ts";
import type { Binding } from "./recorder.ts";
import { DTYPE_CODE, type GpuMatrix } from "./tensor.ts";
import { isBlockType } from "./weight_layout.ts";

/** A tiled GEMM layout (see shaders/matmul_tiled.wgsl). */
export interface TiledTile {
  /** Token rows per workgroup. */
  bm: number;
  /** Weight rows per workgroup. */
  bn: number;
  /** `in` elements staged per step (multiple of 4). */
  bk: number;
  /** Token rows per thread (divides bm). */
  tm: number;
  /** Weight rows per thread (divides bn). */
  tr: number;
  /** f16 tiles and products, f32 accumulation (needs shader-f16 and F16 weights). */
  f16?: boolean;
}

/** Threads per workgroup of `t`. */
export function tiledThreads(t: TiledTile): number {
  return (t.bm / t.tm) * (t.bn / t.tr);
}

/** Workgroup memory bytes of `t` (x and W tiles). */
export function tiledWorkgroupBytes(t: TiledTile): number {
  return (t.bm + t.bn) * t.bk * (t.f16 ? 2 : 4);
}

/**
 * Throw a RangeError naming the tile when it is malformed or exceeds what every WebGPU adapter offers
 * (256 invocations, 16 KiB of workgroup memory), or when f16 is asked for without F16 weights.
 */
export function checkTiledTile(t: TiledTile, dtype: GpuMatrix["dtype"]): void {
  const s = JSON.stringify(t);
  const ints = [t.bm, t.bn, t.bk, t.tm, t.tr].every((v) => Number.isInteger(v) && v > 0);
  if (!ints || t.bk % 4 !== 0 || t.bm % t.tm !== 0 || t.bn % t.tr !== 0) {
    throw new RangeError(`matmulTiled: tile ${s} needs positive integers, bk % 4 == 0, tm | bm, tr | bn`);
  }
  if (tiledThreads(t) > 256 || tiledWorkgroupBytes(t) > 16384) {
    throw new RangeError(
      `matmulTiled: tile ${s} has ${tiledThreads(t)} threads and ${tiledWorkgroupBytes(t)} bytes of ` +
        "workgroup memory; the limits are 256 and 16384",
    );
  }
  if (isBlockType(dtype)) {
    throw new RangeError(`matmulTiled: ${dtype} weights are not read by the tiled GEMM (use ops.matmul)`);
  }
  if (t.f16 && dtype !== "F16") {
    throw new RangeError(`matmulTiled: f16 tile ${s} needs F16 weights, got ${dtype}`);
  }
}

/** What a matmul multiplies and where it writes (ops.matmul and {@link matmulTiled} take the same). */
export interface MatmulArgs {
  w: GpuMatrix;
  x: Binding;
  y: Binding;
  n: number;
  xOffset?: number;
  yOffset?: number;
  yStride?: number;
  acc?: boolean;
}

/**
 * y[t, yOffset-based] (+)= W x[t] for t < n with a tiled GEMM: the same arguments and semantics as
 * ops.matmul (W (out, in) in its dtype, split into row parts; x row t at xOffset + t * in; y element
 * (t, col) at yOffset + t * yStride + col; `acc` adds into y), any n, out and in.
 */
export async function matmulTiled(c: OpContext, a: MatmulArgs & { tile: TiledTile }): Promise<void> {
  const t = a.tile;
  checkTiledTile(t, a.w.dtype);
  const pl = await c.pipelines.get("matmul_tiled", {
    DTYPE: DTYPE_CODE[a.w.dtype],
    BM: t.bm,
    BN: t.bn,
    BK: t.bk,
    TM: t.tm,
    TR: t.tr,
    ACC: !!a.acc,
    ALIGNED: a.w.cols % 4 === 0,
    F16: !!t.f16,
  });
  for (const part of a.w.parts) {
    c.rec.dispatch(
      `matmul_tiled ${a.w.name}`,
      pl,
      [a.n, a.w.cols, part.rows, part.rowStart, a.xOffset ?? 0, a.yOffset ?? 0, a.yStride ?? a.w.rows],
      [part.buffer, a.x, a.y],
      [Math.ceil(part.rows / t.bn), Math.ceil(a.n / t.bm)],
    );
  }
}

/** Version of the choice format and of what it measures: a new one is measured again. */
export const MATMUL_CHOICE_VERSION = 1;

/** The n buckets a choice covers (the engine's forward sizes, rounded up to one of these). */
export const MATMUL_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256] as const;

/** Per n bucket, the kernel measured fastest on one adapter for one model's matmul shapes. */
export interface MatmulChoice {
  version: number;
  /** Hash of the matmul shaders measured (a changed kernel invalidates the choice). */
  shaders: string;
  /** One row per bucket, ascending n: `tile` null = the row-walking matmul.wgsl. */
  buckets: { n: number; tile: TiledTile | null; ms?: { rows: number; tiled?: number } }[];
}

/**
 * The tiled tile `choice` picks for n token rows (the bucket of the smallest n' >= n, else the largest),
 * or undefined for the row-walking kernel (also when there is no choice).
 */
export function tiledTileFor(choice: MatmulChoice | undefined, n: number): TiledTile | undefined {
  if (!choice || choice.buckets.length === 0) return undefined;
  const b = choice.buckets.find((r) => r.n >= n) ?? choice.buckets[choice.buckets.length - 1];
  return b.tile ?? undefined;
}
