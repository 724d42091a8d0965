/**
 * One launcher per shader: checks shapes, picks defines, sizes the dispatch and records it. Launchers
 * only record; nothing runs until the {@link Recorder} submits. Buffers are f32 unless noted; sizes are
 * in elements.
 *
 * @module
 */

import type { PipelineCache } from "./pipelines.ts";
import { type Binding, f32Bits, type Recorder } from "./recorder.ts";
import { DTYPE_CODE, type GpuMatrix } from "./tensor.ts";
import { type MatmulArgs, type MatmulChoice, matmulTiled, tiledTileFor } from "./matmul_tiled.ts";

/** Element type of the KV cache: f32, or f16 with two halves per u32 word (even element low). */
export type KvDtype = "f32" | "f16";
import { isBlockType } from "./weight_layout.ts";

/** What every launcher needs. */
export interface OpContext {
  rec: Recorder;
  pipelines: PipelineCache;
  /** The adapter's measured matmul kernel per n (matmul_tiled.ts); absent: the row-walking kernel. */
  kernels?: { matmul?: MatmulChoice };
}

const ceil = (a: number, b: number) => Math.ceil(a / b);

/** out (n, d) = rows of `table` (vocab, d) at tokens[tokOffset .. tokOffset + n) (u32 buffer). */
export async function embedding(
  c: OpContext,
  a: { table: GpuMatrix; tokens: Binding; tokOffset: number; out: Binding; n: number },
): Promise<void> {
  const pl = await c.pipelines.get("embedding", { DTYPE: DTYPE_CODE[a.table.dtype] });
  for (const part of a.table.parts) {
    c.rec.dispatch(
      "embedding",
      pl,
      [a.n, a.table.cols, part.rowStart, part.rows, a.tokOffset],
      [a.tokens, part.buffer, a.out],
      [ceil(a.table.cols, 64), a.n],
    );
  }
}

/** out (n, d) = RMSNorm of x (n, d) with gain w (d). `out` may not alias `x`. */
export async function rmsNorm(
  c: OpContext,
  a: { x: Binding; w: Binding; out: Binding; n: number; d: number; eps: number },
): Promise<void> {
  const pl = await c.pipelines.get("rmsnorm");
  c.rec.dispatch("rmsnorm", pl, [a.n, a.d, f32Bits(a.eps)], [a.x, a.w, a.out], [a.n]);
}

/** How one matmul dispatch is laid out (see shaders/matmul.wgsl). */
export interface MatmulTile {
  /** Token rows per workgroup. */
  tn: number;
  /** Weight rows per thread. */
  rpt: number;
  /** 16 lanes split `in` and reduce in workgroup memory (else one thread walks a whole row). */
  split: boolean;
  /** Threads per workgroup. */
  wg: number;
}

/** Weight rows one workgroup of `t` covers. */
export function tileRows(t: MatmulTile): number {
  return (t.split ? t.wg / 16 : t.wg) * t.rpt;
}

/**
 * Tile of a matmul over n token rows and `rows` weight rows: TN token rows per workgroup (weights
 * loaded once per TN rows) and RPT weight rows per thread (x loaded once per RPT rows), every thread
 * walking whole rows (no split, no barrier) in workgroups of 8 threads.
 *
 * Measured on llvmpipe (2 cores, bench --kernels and SmolLM2-135M's shapes, F16): against the former
 * SPLIT tiles (16 lanes per row, 4 row groups of 64 threads) the n = 1 matvec runs 2-4x faster (576-wide
 * rows: 1.0-1.9 -> 4-7 GB/s; the 49,152 x 576 LM head 29 -> 7-9 ms) and n = 2..64 1.2-3x faster.
 * Workgroups of 8 threads keep >= 6 of them even for a 192-row projection, so both core threads get
 * work (llvmpipe runs one workgroup per thread, SIMD across its invocations). SPLIT stays available for
 * adapters whose memory wants coalesced lanes (tile override).
 */
export function matmulTile(n: number, rows = Infinity): MatmulTile {
  if (n <= 1) {
    return rows >= 512 ? { tn: 1, rpt: 8, split: false, wg: 8 } : { tn: 1, rpt: 4, split: false, wg: 8 };
  }
  if (n <= 2) return { tn: 2, rpt: 8, split: false, wg: 8 };
  if (n <= 16) return { tn: 4, rpt: 8, split: false, wg: 8 };
  return { tn: 8, rpt: 8, split: false, wg: 8 };
}

/**
 * y[t, yOffset-based] (+)= W x[t] for t < n: W (out, in) in its dtype; x row t at xOffset + t * in;
 * y element (t, col) at yOffset + t * yStride + col. `acc` adds into y (fused residual add). `yDtype`
 * "f16": y is an f16 KV cache (two halves per u32 word, even element low; offsets in elements).
 */
export async function matmul(
  c: OpContext,
  a: MatmulArgs & {
    yDtype?: KvDtype;
    /** Override {@link matmulTile} (benchmarks and tests). */
    tile?: MatmulTile;
  },
): Promise<void> {
  const pack = a.yDtype === "f16";
  // The profile's choice (none, or an explicit tile: matmul.wgsl as tuned below); the tiled kernel
  // writes f32 only and reads plain types only, so an f16 cache write and block weights stay on matmul.wgsl.
  const tiled = a.tile || pack || isBlockType(a.w.dtype) ? undefined : tiledTileFor(c.kernels?.matmul, a.n);
  if (tiled) return await matmulTiled(c, { ...a, tile: tiled });
  if (a.tile?.split && (a.tile.wg % 16 !== 0 || a.tile.wg * a.tile.rpt * a.tile.tn * 4 > 16384)) {
    throw new RangeError(`matmul: split tile ${JSON.stringify(a.tile)} needs wg % 16 == 0 and <= 16 KiB`);
  }
  const xOffset = a.xOffset ?? 0;
  const vec = a.w.cols % 8 === 0 && xOffset % 4 === 0;
  if (!vec && isBlockType(a.w.dtype)) {
    throw new RangeError(`matmul ${a.w.name}: ${a.w.dtype} weights need xOffset % 4 == 0 (got ${xOffset})`);
  }
  const tile = a.tile ?? matmulTile(a.n, a.w.rows);
  if (pack) {
    // A thread stores whole words: its rows come in even pairs and every row offset is even.
    const odd = [["rpt", tile.rpt], ["rows", a.w.rows], ["yOffset", a.yOffset ?? 0], [
      "yStride",
      a.yStride ?? a.w.rows,
    ]]
      .concat(a.w.parts.map((p, i) => [`part ${i} rowStart`, p.rowStart]))
      .find(([, x]) => (x as number) % 2 !== 0);
    if (odd) throw new RangeError(`matmul ${a.w.name}: f16 output needs an even ${odd[0]}, got ${odd[1]}`);
    if (a.acc) throw new RangeError(`matmul ${a.w.name}: f16 output cannot accumulate`);
  }
  const pl = await c.pipelines.get("matmul", {
    DTYPE: DTYPE_CODE[a.w.dtype],
    VEC: vec,
    TN: tile.tn,
    RPT: tile.rpt,
    ACC: !!a.acc,
    SPLIT: tile.split,
    WG: tile.wg,
    PACK: pack,
  });
  for (const part of a.w.parts) {
    c.rec.dispatch(
      `matmul ${a.w.name}`,
      pl,
      [a.n, a.w.cols, part.rows, part.rowStart, xOffset, a.yOffset ?? 0, a.yStride ?? a.w.rows],
      [part.buffer, a.x, a.y],
      [ceil(part.rows, tileRows(tile)), ceil(a.n, tile.tn)],
    );
  }
}

/**
 * out (n, rows) = silu(Wg x[t]) * (Wu x[t]) for t < n: the gate and up matmuls and swiglu in one
 * dispatch (shaders/gate_up.wgsl). Both matrices (rows, in) in one binding each, same dtype, in % 8 == 0
 * ({@link gateUpFusable}); x row t at t * in. The tile is the matmul's for (n, rows).
 */
export async function gateUp(
  c: OpContext,
  a: { wGate: GpuMatrix; wUp: GpuMatrix; x: Binding; out: Binding; n: number; tile?: MatmulTile },
): Promise<void> {
  if (!gateUpFusable(a.wGate, a.wUp)) {
    throw new RangeError(`gateUp: ${a.wGate.name} / ${a.wUp.name} cannot be fused (see gateUpFusable)`);
  }
  const t = a.tile ?? matmulTile(a.n, a.wGate.rows);
  if (t.split) throw new RangeError("gateUp: row-per-thread tiles only");
  const pl = await c.pipelines.get("gate_up", {
    DTYPE: DTYPE_CODE[a.wGate.dtype],
    TN: t.tn,
    RPT: t.rpt,
    WG: t.wg,
  });
  const rows = a.wGate.rows;
  c.rec.dispatch(
    "gate_up",
    pl,
    [a.n, a.wGate.cols, rows],
    [a.wGate.parts[0].buffer, a.wUp.parts[0].buffer, a.x, a.out],
    [ceil(rows, tileRows(t)), ceil(a.n, t.tn)],
  );
}

/** True when {@link gateUp} can run these two matrices (else: two matmuls and swiGlu). */
export function gateUpFusable(g: GpuMatrix, u: GpuMatrix): boolean {
  return g.parts.length === 1 && u.parts.length === 1 && g.rows === u.rows && g.cols === u.cols &&
    g.dtype === u.dtype && g.cols % 8 === 0;
}

/**
 * q (n, nHeads * headDim) = RoPE(Wq x[t]) and k rows kOffset / kvDim + t = RoPE(Wk x[t]) for t < n at
 * positions[posOffset + t]: both projections and both rope kernels in one dispatch
 * (shaders/qk_rope.wgsl). Needs {@link qkRopeFusable}; x row t at t * in; `table` as for {@link rope}.
 */
export async function qkRope(
  c: OpContext,
  a: {
    wq: GpuMatrix;
    wk: GpuMatrix;
    x: Binding;
    q: Binding;
    k: Binding;
    /** Element offset of row 0 in `k` (the first new cache slot times kvDim). */
    kOffset: number;
    /** "f16": k is an f16 KV cache (two halves per u32 word, even element low). */
    kDtype?: KvDtype;
    n: number;
    headDim: number;
    positions: Binding;
    posOffset: number;
    table: Binding;
    tile?: MatmulTile;
  },
): Promise<void> {
  if (!qkRopeFusable(a.wq, a.wk, a.headDim)) {
    throw new RangeError(`qkRope: ${a.wq.name} / ${a.wk.name} cannot be fused (see qkRopeFusable)`);
  }
  const t = a.tile ?? matmulTile(a.n, a.wq.rows);
  if (t.split) throw new RangeError("qkRope: row-per-thread tiles only");
  const rpt = Math.max(1, t.rpt >> 1); // rotation pairs per thread: the tile's rows, two per pair
  const kF16 = a.kDtype === "f16";
  if (kF16 && (rpt % 2 !== 0 || a.headDim % 4 !== 0)) {
    throw new RangeError(
      `qkRope: f16 k needs an even pair count per thread (${rpt}) and headDim % 4 == 0 (${a.headDim})`,
    );
  }
  const pl = await c.pipelines.get("qk_rope", {
    DTYPE: DTYPE_CODE[a.wq.dtype],
    TN: t.tn,
    RPT: rpt,
    WG: t.wg,
    KF16: kF16,
  });
  const half = a.headDim / 2, qPairs = a.wq.rows / 2, kPairs = a.wk.rows / 2, per = t.wg * rpt;
  const qGroups = ceil(qPairs, per);
  c.rec.dispatch(
    "qk_rope",
    pl,
    [a.n, a.wq.cols, qPairs, kPairs, half, a.headDim, qGroups, a.wq.rows, a.kOffset, a.wk.rows, a.posOffset],
    [a.wq.parts[0].buffer, a.wk.parts[0].buffer, a.x, a.q, a.k, a.positions, a.table],
    [qGroups + ceil(kPairs, per), ceil(a.n, t.tn)],
  );
}

/**
 * True when {@link qkRope} can run these projections (else: two matmuls and two rope launches); an f16
 * k also needs headDim % 4 == 0 (a thread's two adjacent pairs fill whole words).
 */
export function qkRopeFusable(
  wq: GpuMatrix,
  wk: GpuMatrix,
  headDim: number,
  kDtype: KvDtype = "f32",
): boolean {
  return wq.parts.length === 1 && wk.parts.length === 1 && wq.dtype === wk.dtype && wq.cols === wk.cols &&
    wq.cols % 8 === 0 && headDim % 2 === 0 && wq.rows % headDim === 0 && wk.rows % headDim === 0 &&
    (kDtype === "f32" || headDim % 4 === 0);
}

/**
 * In-place RoPE on n rows of `x` (row t at offset + t * stride), positions[posOffset + t] (u32). With
 * `f16Out`: not in place — x is a compact f32 source (n, nHeads * headDim) (offset and stride ignored for
 * it) and the rotated rows are packed into the f16 cache `f16Out` at row t = offset + t * stride (elements).
 */
export async function rope(
  c: OpContext,
  a: {
    x: Binding;
    offset: number;
    stride: number;
    n: number;
    nHeads: number;
    headDim: number;
    positions: Binding;
    posOffset: number;
    table: Binding;
    f16Out?: Binding;
  },
): Promise<void> {
  if (a.f16Out && (a.offset % 2 !== 0 || a.stride % 2 !== 0 || a.headDim % 2 !== 0)) {
    throw new RangeError(
      `rope: f16 output needs even offset, stride and headDim (${a.offset}, ${a.stride}, ${a.headDim})`,
    );
  }
  const pl = await c.pipelines.get("rope", { PACK: !!a.f16Out });
  c.rec.dispatch(
    "rope",
    pl,
    [a.n, a.nHeads, a.headDim, a.stride, a.offset, a.posOffset],
    a.f16Out ? [a.x, a.positions, a.table, a.f16Out] : [a.x, a.positions, a.table],
    [ceil((a.nHeads * a.headDim) / 2, 64), a.n],
  );
}

/** What both attention kernels read and write. */
export interface AttentionArgs {
  q: Binding;
  k: Binding;
  v: Binding;
  mask: Binding;
  out: Binding;
  n: number;
  past: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  maskWords: number;
  /** First word of row 0 in `mask` (default 0). */
  maskOffset?: number;
  causal: boolean;
  kvDtype?: KvDtype;
}

/**
 * out (n, nHeads * headDim) = masked attention of q (n, nHeads * headDim) over k/v cache slots
 * [0, past + n). `causal`: row t sees slots <= past + t; else bit j of mask row t (maskWords u32 per row).
 * `scratch` holds n * nHeads * cap floats. `kvDtype` "f16": k/v hold two halves per u32 word.
 */
export async function attention(
  c: OpContext,
  a: AttentionArgs & { scratch: Binding; cap: number },
): Promise<void> {
  if (a.past + a.n > a.cap) {
    throw new RangeError(`attention: ${a.past} + ${a.n} slots exceed capacity ${a.cap}`);
  }
  const pl = await c.pipelines.get("attention", { F16: a.kvDtype === "f16" });
  c.rec.dispatch(
    "attention",
    pl,
    [
      a.n,
      a.past,
      a.nHeads,
      a.nHeads / a.nKvHeads,
      a.headDim,
      a.nKvHeads * a.headDim,
      a.maskWords,
      a.causal ? 1 : 0,
      a.cap,
      f32Bits(1 / Math.sqrt(a.headDim)),
      a.maskOffset ?? 0,
    ],
    [a.q, a.k, a.v, a.mask, a.scratch, a.out],
    [a.nHeads, a.n],
  );
}

/** Workgroup memory one workgroup may use (WebGPU's default maxComputeWorkgroupStorageSize). */
export const WORKGROUP_BYTES = 32768;

/** How one flash-attention dispatch is laid out (see shaders/flash_attention.wgsl). */
export interface FlashTile {
  /** Query rows per workgroup (each K/V tile serves R rows times the GQA group). */
  r: number;
  /** Keys per K/V tile = threads per workgroup. */
  tk: number;
}

/** Workgroup bytes of a flash tile: qs, ks (rows padded by a vec4), vs, ps (rows padded by one), m, l, alpha. */
export function flashBytes(t: FlashTile, headDim: number, group: number): number {
  const qv = t.r * group;
  return 4 * (qv * headDim + t.tk * (headDim + 4) + t.tk * headDim + qv * (t.tk + 1) + 3 * qv);
}

/** vec4 output accumulators per thread of a flash tile. */
const flashAccs = (t: FlashTile, headDim: number, group: number) => ceil(t.r * group * headDim / 4, t.tk);

/**
 * Tile of {@link flashAttention} for n query rows: R = 1 for a single row (decode), else up to 4 rows
 * sharing each K/V tile; TK = 32 keys (and threads) for head_dim <= 64, 16 up to 128, else 8. R (then TK)
 * shrinks until the workgroup memory fits {@link WORKGROUP_BYTES} and each thread keeps at most 16 vec4
 * accumulators. On a GPU with more workgroup memory a bigger TK (64: two full warps) or R would cut
 * barriers per slot or K/V loads per row.
 */
export function flashTile(n: number, headDim: number, group: number): FlashTile {
  const t: FlashTile = { r: n <= 1 ? 1 : Math.min(4, n), tk: headDim <= 64 ? 32 : headDim <= 128 ? 16 : 8 };
  const fits = () => flashBytes(t, headDim, group) <= WORKGROUP_BYTES && flashAccs(t, headDim, group) <= 16;
  while (!fits() && t.r > 1) t.r--;
  while (!fits() && t.tk > 4) t.tk >>= 1;
  if (!fits()) {
    throw new RangeError(
      `flashAttention: head_dim ${headDim} x group ${group} needs ${
        flashBytes(t, headDim, group)
      } bytes of ` +
        `workgroup memory (limit ${WORKGROUP_BYTES}) or more than 16 accumulators per thread`,
    );
  }
  return t;
}

/**
 * out (n, nHeads * headDim) = masked attention of q (n, nHeads * headDim) over k/v cache slots
 * [0, past + n) in one pass with an online softmax (shaders/flash_attention.wgsl): one workgroup per
 * (KV head, R query rows), every query head of the GQA group sharing each K/V tile. Same masks as
 * {@link attention}; no scratch. `kvDtype` "f16": k/v hold two halves per u32 word (pack2x16float).
 */
export async function flashAttention(
  c: OpContext,
  a: AttentionArgs & {
    /** Override {@link flashTile} (benchmarks and tests). */
    tile?: FlashTile;
  },
): Promise<void> {
  if (a.nHeads % a.nKvHeads !== 0) {
    throw new RangeError(`flashAttention: nHeads ${a.nHeads} is not a multiple of nKvHeads ${a.nKvHeads}`);
  }
  if (a.headDim % 4 !== 0) {
    throw new RangeError(`flashAttention: headDim ${a.headDim} is not a multiple of 4`);
  }
  const f16 = a.kvDtype === "f16", group = a.nHeads / a.nKvHeads;
  const t = a.tile ?? flashTile(a.n, a.headDim, group);
  if (flashBytes(t, a.headDim, group) > WORKGROUP_BYTES) {
    throw new RangeError(
      `flashAttention: tile ${JSON.stringify(t)} exceeds ${WORKGROUP_BYTES} bytes of workgroup memory`,
    );
  }
  const pl = await c.pipelines.get("flash_attention", {
    HD: a.headDim,
    G: group,
    R: t.r,
    TK: t.tk,
    QV: t.r * group,
    NU: flashAccs(t, a.headDim, group),
    F16: f16,
  });
  c.rec.dispatch(
    "flash attention",
    pl,
    [
      a.n,
      a.past,
      a.nHeads * a.headDim,
      a.nKvHeads * a.headDim,
      a.maskWords,
      a.causal ? 1 : 0,
      f32Bits(1 / Math.sqrt(a.headDim)),
      a.maskOffset ?? 0,
    ],
    [a.q, a.k, a.v, a.mask, a.out],
    [a.nKvHeads, ceil(a.n, t.r)],
  );
}

/** gate[i] = silu(gate[i]) * up[i] for i < count, in place. */
export async function swiGlu(c: OpContext, a: { gate: Binding; up: Binding; count: number }): Promise<void> {
  const pl = await c.pipelines.get("swiglu");
  const groups = ceil(a.count, 256);
  c.rec.dispatch("swiglu", pl, [a.count], [a.gate, a.up], [Math.min(groups, 65535), ceil(groups, 65535)]);
}

/** out[outOffset + t] = argmax of logits row t (n, vocab). */
export async function argmax(
  c: OpContext,
  a: { logits: Binding; out: Binding; outOffset: number; n: number; vocab: number },
): Promise<void> {
  const pl = await c.pipelines.get("argmax");
  c.rec.dispatch("argmax", pl, [a.n, a.vocab, a.outOffset], [a.logits, a.out], [a.n]);
}

/**
 * out[outOffset + t] = a token drawn from logits row t under temperature / top-k / top-p using the
 * uniform uniforms[uOffset + t]. temperature must be > 0 (use {@link argmax} for greedy).
 */
export async function sample(
  c: OpContext,
  a: {
    logits: Binding;
    uniforms: Binding;
    uOffset: number;
    out: Binding;
    outOffset: number;
    n: number;
    vocab: number;
    temperature: number;
    topK: number;
    topP: number;
  },
): Promise<void> {
  if (!(a.temperature > 0)) throw new RangeError("sample: temperature must be > 0; use argmax for greedy");
  const pl = await c.pipelines.get("sample");
  c.rec.dispatch(
    "sample",
    pl,
    [a.n, a.vocab, a.topK, a.outOffset, a.uOffset, f32Bits(1 / a.temperature), f32Bits(a.topP)],
    [a.logits, a.uniforms, a.out],
    [a.n],
  );
}

/**
 * Move cache rows slots[i] (i < count) of one layer's k and v to rows dstBase + i, through `tmp`
 * (2 * count * kvDim elements of `kvDtype`): a gather dispatch, then a scatter dispatch (bits copied).
 */
export async function kvCopy(
  c: OpContext,
  a: {
    slots: Binding;
    k: Binding;
    v: Binding;
    tmp: Binding;
    count: number;
    kvDim: number;
    dstBase: number;
    kvDtype?: KvDtype;
    /**
     * The count is slots[0] (written on the GPU, at most `count`) and the sources follow: `count` is
     * then the most rows moved (the dispatch size and tmp's layout).
     */
    indirect?: boolean;
  },
): Promise<void> {
  if (a.kvDtype === "f16" && a.kvDim % 2 !== 0) {
    throw new RangeError(`kvCopy: f16 rows need an even kvDim, got ${a.kvDim}`);
  }
  if (a.count < 1) return;
  const words = a.kvDtype === "f16" ? a.kvDim / 2 : a.kvDim;
  const INDIRECT = !!a.indirect;
  const gather = await c.pipelines.get("kv_copy", { GATHER: true, INDIRECT });
  const scatter = await c.pipelines.get("kv_copy", { GATHER: false, INDIRECT });
  const groups: [number, number] = [ceil(words, 64), a.count];
  c.rec.dispatch("kv gather", gather, [a.count, words, a.dstBase], [a.slots, a.k, a.v, a.tmp], groups);
  c.rec.dispatch("kv scatter", scatter, [a.count, words, a.dstBase], [a.slots, a.k, a.v, a.tmp], groups);
}

/** out[t] = wrapping u32 sum of data's vec4 words t, t + threads, ... (threads = groups * 256). */
export async function streamRead(
  c: OpContext,
  a: { data: Binding; count: number; out: Binding; groups: number },
): Promise<void> {
  const pl = await c.pipelines.get("stream_read");
  c.rec.dispatch("stream_read", pl, [a.count, a.groups * 256], [a.data, a.out], [a.groups]);
}

/** Most children per node that {@link treeDraw} chooses (a workgroup-memory bound). */
export const MAX_CHILDREN = 32;

/**
 * For each of `rows` draft logit rows: choose children tokens (top-b at temperature 0, else without
 * replacement from q with GPU-hashed uniforms) into tokens[child_start ...] and, when sampling, write
 * q into row q_index of `q`. `plan` holds (child_start, child_count, q_index) per row (u32).
 */
export async function treeDraw(
  c: OpContext,
  a: {
    logits: Binding;
    plan: Binding;
    tokens: Binding;
    q: Binding;
    rows: number;
    vocab: number;
    temperature: number;
    topK: number;
    topP: number;
    seed: number;
    /** Children i.i.d. from q (SpecInfer) instead of without replacement. */
    iid?: boolean;
  },
): Promise<void> {
  const pl = await c.pipelines.get("tree_draw", { MAX_CHILDREN, IID: !!a.iid });
  const greedy = a.temperature === 0;
  c.rec.dispatch(
    "tree_draw",
    pl,
    [
      a.rows,
      a.vocab,
      a.topK,
      greedy ? 1 : 0,
      f32Bits(greedy ? 1 : 1 / a.temperature),
      f32Bits(a.topP),
      a.seed >>> 0,
    ],
    [a.logits, a.plan, a.tokens, a.q],
    [a.rows],
  );
}

/** Verification rules of {@link treeVerify}, by their RULE define (shaders/tree_verify.wgsl). */
export const VERIFY_RULES = { greedy: 0, match: 1, swor: 2, specinfer: 3 } as const;

/** A rule {@link treeVerify} applies. */
export type VerifyRule = keyof typeof VERIFY_RULES;

/**
 * Walk a drafted tree of n nodes against the target's logit rows (and the draft's q rows for the
 * rejection rules) with `rule`, consuming `uniforms` in the CPU verifiers' order; writes to `out` the
 * accepted count, the bonus and (token | rank << 24) per accepted node from word 0, and the two KV
 * commits' source lists (count first) at words tOffset and dOffset (see shaders/tree_verify.wgsl for
 * the `tree` layout). One workgroup: the walk is sequential, each row a 256-thread reduction.
 */
export async function treeVerify(
  c: OpContext,
  a: {
    rule: VerifyRule;
    logits: Binding;
    q: Binding;
    tree: Binding;
    tokens: Binding;
    uniforms: Binding;
    work: Binding;
    out: Binding;
    n: number;
    vocab: number;
    temperature: number;
    topK: number;
    topP: number;
    /** Target cache slot of node 0 (target sources are targetBase + node). */
    targetBase: number;
    tOffset: number;
    dOffset: number;
  },
): Promise<void> {
  const sampled = a.rule !== "greedy";
  if (sampled && !(a.temperature > 0)) {
    throw new RangeError(`treeVerify: rule ${a.rule} needs temperature > 0 (got ${a.temperature})`);
  }
  const pl = await c.pipelines.get("tree_verify", { RULE: VERIFY_RULES[a.rule] });
  c.rec.dispatch(
    "tree_verify",
    pl,
    [
      a.n,
      a.vocab,
      a.topK,
      f32Bits(sampled ? 1 / a.temperature : 1),
      f32Bits(a.topP),
      a.targetBase,
      a.tOffset,
      a.dOffset,
    ],
    [a.logits, a.q, a.tree, a.tokens, a.uniforms, a.work, a.out],
    [1],
  );
}

/** The shape of a {@link chainInputs} dispatch (its CPU twin's too: gpu/llama/step_chain.ts). */
export interface ChainInputsParams {
  rows: number;
  posOffset: number;
  shift: number;
  maskOffset: number;
  maskWords: number;
}

/**
 * A chained step's inputs finished on the device (shaders/chain_inputs.wgsl): positions[posOffset + i]
 * = state[0] + positions[posOffset + i] - shift for i < rows (relative in, absolute out), and every word
 * of the (rows, maskWords) mask rows from word maskOffset ORed with vis's word of that column range.
 */
export async function chainInputs(
  c: OpContext,
  a: ChainInputsParams & { state: Binding; vis: Binding; positions: Binding; mask: Binding },
): Promise<void> {
  const pl = await c.pipelines.get("chain_inputs");
  const threads = Math.max(a.rows, a.rows * a.maskWords);
  c.rec.dispatch(
    "chain_inputs",
    pl,
    [a.rows, a.posOffset, a.shift, a.maskOffset, a.maskWords],
    [a.state, a.vis, a.positions, a.mask],
    [ceil(threads, 64)],
  );
}

/** The parameters of a {@link chainState} dispatch (its CPU twin's too: gpu/llama/step_chain.ts). */
export interface ChainStateParams {
  n: number;
  maxDepth: number;
  targetBase: number;
  xSlot: number;
  rootSlot: number;
  dOffset: number;
  rOffset: number;
}

/**
 * The end of a chained step (shaders/chain_state.wgsl), after {@link treeVerify} wrote `out` and the KV
 * commits it feeds ran: the root and accepted rows become visible in visT (targetBase + i, i <= count)
 * and visD (xSlot, then rootSlot + i for the kept prefix but a last accepted row), tokens[0], [n], [n + 1]
 * become the next step's root and pending rows, state[0] advances by 1 + accepted, and
 * out[0, 2 + maxDepth) is copied to results[rOffset ..]. xSlot 0xffffffff: no x row (the first step).
 */
export async function chainState(
  c: OpContext,
  a: ChainStateParams & {
    out: Binding;
    state: Binding;
    visT: Binding;
    visD: Binding;
    tokens: Binding;
    results: Binding;
  },
): Promise<void> {
  const pl = await c.pipelines.get("chain_state");
  c.rec.dispatch(
    "chain_state",
    pl,
    [a.n, a.maxDepth, a.targetBase, a.xSlot >>> 0, a.rootSlot, a.dOffset, a.rOffset],
    [a.out, a.state, a.visT, a.visD, a.tokens, a.results],
    [1],
  );
}
