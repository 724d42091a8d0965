/**
 * Random weights for the kernel benchmarks (bench --kernels, the GPU check): fast to make at any size
 * (a 1B model's LM head) and free of NaN / Inf, values that only have to be timed, never checked.
 *
 * @module
 */

import { isDType } from "../model/dtype.ts";
import { GGML_TYPES } from "../model/ggml_quants.ts";
import { encodeTensor } from "../model/safetensors_write.ts";

/**
 * `count` f32 values uniform in [-0.05, 0.05): one seeded 1 Mi-value block repeated (a 128256 x 2048 LM
 * head in F32 is 263 M values; drawing each would take longer than timing the matvec).
 */
export function tiledRandom(count: number, seed: number): Float32Array {
  const block = new Float32Array(Math.min(count, 1 << 20));
  let s = (seed * 2654435761 + 1) >>> 0 || 1;
  for (let i = 0; i < block.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    block[i] = ((s >>> 0) / 2 ** 32 - 0.5) * 0.1;
  }
  const out = new Float32Array(count);
  for (let o = 0; o < count; o += block.length) {
    out.set(block.subarray(0, Math.min(block.length, count - o)), o);
  }
  return out;
}

/**
 * Random bytes of a (rows, cols) matrix in `dtype`: F32/F16/BF16 encoded from {@link tiledRandom}; a ggml
 * block type (Q8_0, Q4_K, ...) sized from GGML_TYPES, random bits with bit 14 of every 16-bit word
 * cleared, so every f16 scale field (they all sit at even offsets) is finite and below 2 (the timing
 * must not meet NaN or Inf). Throws a RangeError for a dtype neither knows.
 */
export function randomMatrixBytes(dtype: string, rows: number, cols: number, seed: number): Uint8Array {
  if (isDType(dtype)) return encodeTensor(tiledRandom(rows * cols, seed), dtype);
  const t = (GGML_TYPES as Record<string, { blockSize: number; typeSize: number }>)[dtype];
  if (!t) throw new RangeError(`no random data for dtype ${dtype}: neither a float dtype nor a ggml type`);
  if (cols % t.blockSize !== 0) {
    throw new RangeError(`${dtype}: ${cols} columns is not whole ${t.blockSize}-element blocks`);
  }
  const bytes = (rows * cols / t.blockSize) * t.typeSize;
  const words = new Uint16Array(Math.ceil(bytes / 2));
  const block = tiledRandom(Math.min(words.length, 1 << 20), seed);
  const bits = new Uint32Array(block.buffer);
  for (let i = 0; i < words.length; i++) words[i] = bits[i % bits.length] & 0xbfff;
  return new Uint8Array(words.buffer, 0, bytes);
}
