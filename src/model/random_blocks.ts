/**
 * Random ggml blocks (kernel parity tests, kernel benchmarks): every scale a finite f16 of moderate
 * size, every other byte uniform, so each bit of each field is exercised. Their values are what
 * ggml_quants.ts `dequantize` makes of them.
 *
 * @module
 */
import { f32ToF16Bits } from "./dtype.ts";
import { GGML_TYPES, type GgmlType } from "./ggml_quants.ts";
import { Rng } from "../util/rng.ts";

/** Where each type keeps its f16 fields (byte offsets in a block). */
const F16_FIELDS: Partial<Record<GgmlType, number[]>> = {
  Q8_0: [0],
  Q4_0: [0],
  Q4_1: [0, 2],
  Q4_K: [0, 2],
  Q6_K: [208],
};

/** `rows` x `cols` of block type `t` as stored (row-major blocks), seeded. */
export function randomBlocks(t: GgmlType, rows: number, cols: number, seed: number): Uint8Array {
  const { blockSize, typeSize } = GGML_TYPES[t];
  const fields = F16_FIELDS[t];
  if (!fields) throw new RangeError(`randomBlocks: ${t} is not a block type with known scale fields`);
  const blocks = (rows * cols) / blockSize;
  const rng = new Rng(seed);
  const out = new Uint8Array(blocks * typeSize);
  for (let i = 0; i < out.length; i++) out[i] = rng.nextU32() & 0xff;
  // Scales in [0.001, 0.05) (and mins), signs mixed: typical of real weights, never inf/NaN.
  const scales = Float32Array.from(
    { length: blocks * fields.length },
    () => (0.001 + 0.049 * rng.next()) * (rng.next() < 0.5 ? -1 : 1),
  );
  const bits = f32ToF16Bits(scales);
  let k = 0;
  for (let b = 0; b < blocks; b++) {
    for (const o of fields) {
      out[b * typeSize + o] = bits[k] & 0xff;
      out[b * typeSize + o + 1] = bits[k++] >> 8;
    }
  }
  return out;
}
