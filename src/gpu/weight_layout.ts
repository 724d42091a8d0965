/**
 * How each weight type lies in a GPU buffer. Plain types (F32, F16, BF16) lie as stored, row-major.
 * ggml's block types keep their exact bytes but are split per buffer (one row chunk of a matrix) into
 * two aligned regions, because most blocks are not a multiple of 4 bytes (Q8_0 is 34) and WGSL reads
 * whole u32 words:
 *
 *   body  the blocks with their f16 scale fields cut out, block after block (row-major): Q8_0 32 B of
 *         int8, Q4_0 / Q4_1 16 B of nibbles, Q6_K ql + qh + scales (208 B); Q4_K stays whole (144 B,
 *         already word-aligned: d, dmin, 12 scale bytes, 128 nibble bytes)
 *   tail  the cut-out scale fields in block order: Q8_0 / Q4_0 / Q6_K one f16 d per block (two per word),
 *         Q4_1 one (d, m) f16 pair per block (one word); none for Q4_K
 *
 * So a GGUF keeps its bytes on the GPU (plus at most 15 bytes of padding per buffer), and the kernels
 * (shaders/wload.wgsl) find block i of a chunk of R rows at body word i * BODY_WORDS and its scale at
 * tail word R * blocksPerRow * BODY_WORDS + ... . The CPU twin of every kernel that reads these is
 * {@link dequantize} on the original blocks.
 *
 * @module
 */

import { isDType } from "../model/dtype.ts";
import { GGML_TYPES, ggmlRowBytes } from "../model/ggml_quants.ts";
import type { TensorStore } from "../model/tensor_store.ts";
import { TypedStore, type WeightsDtype } from "../model/weight_types.ts";

/** Weight types the GPU kernels read directly. */
export const GPU_WEIGHT_TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"] as const;

/** A weight type the GPU kernels read directly. */
export type GpuWeightType = typeof GPU_WEIGHT_TYPES[number];

/** `st`'s matrices in the types the GPU backend loads them as under `--weights-dtype want`. */
export function gpuMatrices(st: TensorStore, want: WeightsDtype = "auto"): TypedStore<GpuWeightType> {
  return new TypedStore(st, want, GPU_TYPE_SET);
}
const GPU_TYPE_SET: ReadonlySet<GpuWeightType> = new Set(GPU_WEIGHT_TYPES);

/** True for ggml block types (quantized). */
export function isBlockType(t: GpuWeightType): t is Exclude<GpuWeightType, "F32" | "F16" | "BF16"> {
  return !isDType(t);
}

/** Numeric code of a type in the shaders' DTYPE define (shaders/wload.wgsl). */
export const DTYPE_CODE: Readonly<Record<GpuWeightType, number>> = {
  F32: 0,
  F16: 1,
  BF16: 2,
  Q8_0: 3,
  Q4_0: 4,
  Q4_1: 5,
  Q4_K: 6,
  Q6_K: 7,
};

/** Where a block's scale fields are cut out: [start, end) bytes of the block (none for Q4_K). */
const SCALE_FIELD: Readonly<Record<string, [number, number] | undefined>> = {
  Q8_0: [0, 2],
  Q4_0: [0, 2],
  Q4_1: [0, 4],
  Q4_K: undefined,
  Q6_K: [208, 210],
};

/**
 * The device layout of `rows` rows of `t` (`bytes`: the rows as stored, row-major): plain types as they
 * are, block types split into body and tail (module doc). The result is padded to a multiple of 16 bytes
 * (kernels bind the buffer as array<vec4<u32>>).
 */
export function toDeviceLayout(t: GpuWeightType, bytes: Uint8Array, rows: number, cols: number): Uint8Array {
  const rb = ggmlRowBytes(t, cols);
  if (bytes.byteLength !== rows * rb) {
    throw new RangeError(`${t}: ${bytes.byteLength} bytes for ${rows} rows of ${rb} bytes`);
  }
  const out = new Uint8Array(Math.ceil(bytes.byteLength / 16) * 16);
  const cut = SCALE_FIELD[t];
  if (!isBlockType(t) || !cut) {
    out.set(bytes);
    return out;
  }
  const { typeSize } = GGML_TYPES[t];
  const blocks = bytes.byteLength / typeSize, [s0, s1] = cut, sw = s1 - s0, body = typeSize - sw;
  const tail = blocks * body;
  // Plain loops over 16-bit units (every block size and field bound is even), not a subarray + set per
  // field: the pager converts every layer it streams from disk, and three tiny copies per 34-byte block
  // ran at ~0.3 GB/s. A source at an odd byte offset is copied to an aligned one first.
  if (typeSize % 2 || s0 % 2 || s1 % 2) throw new Error(`${t}: the scale cut is not in 16-bit units`);
  const src = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
  const i16 = new Uint16Array(src.buffer, src.byteOffset, src.byteLength >> 1);
  const o16 = new Uint16Array(out.buffer, 0, out.byteLength >> 1);
  const ts = typeSize >> 1, a0 = s0 >> 1, a1 = s1 >> 1;
  for (let b = 0, o = 0, w = 0, t = tail >> 1; b < blocks; b++, o += ts) {
    // body = the block without [s0, s1); tail entry b = the cut bytes
    for (let i = 0; i < a0; i++) o16[w++] = i16[o + i];
    for (let i = a1; i < ts; i++) o16[w++] = i16[o + i];
    for (let i = a0; i < a1; i++) o16[t++] = i16[o + i];
  }
  return out;
}
