/**
 * ggml's tensor types as stored in GGUF files, and their CPU dequantization: the reference ("twin") for
 * any device kernel that reads the blocks directly. Layouts follow ggml's block definitions (GGUF
 * spec / ggml-common.h); every multi-byte field is little-endian, scales are f16.
 *
 * Blocks of 32 (QK = 32), x = value of element i of the block:
 *   Q8_0  d:f16, qs:i8[32]                      x = d * qs[i]                                    34 B
 *   Q4_0  d:f16, qs:u8[16]                      x = d * (nibble - 8)                             18 B
 *   Q4_1  d:f16, m:f16, qs:u8[16]               x = d * nibble + m                               20 B
 *   Q5_0  d:f16, qh:u32, qs:u8[16]              x = d * ((nibble | bit << 4) - 16)               22 B
 *   Q5_1  d:f16, m:f16, qh:u32, qs:u8[16]       x = d * (nibble | bit << 4) + m                  24 B
 * (element i < 16 is the low nibble of qs[i], element i + 16 its high nibble; bit = (qh >> i) & 1.)
 *
 * Super-blocks of 256 (QK_K), in 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes:
 *   Q4_K  d:f16, dmin:f16, scales:u8[12], qs:u8[128]                 x = d*sc * nibble - dmin*m     144 B
 *   Q5_K  d:f16, dmin:f16, scales:u8[12], qh:u8[32], qs:u8[128]      x = d*sc * (nibble | h << 4) - dmin*m  176 B
 *   Q6_K  ql:u8[128], qh:u8[64], scales:i8[16], d:f16                x = d * sc * (q6 - 32), 16 sub-blocks of 16  210 B
 *
 * @module
 */

import { f16ToF32Table, f32ToF16Bits, toF32 } from "./dtype.ts";

/** The ggml tensor types this project reads, by GGUF type id. */
export const GGML_TYPES = {
  F32: { id: 0, blockSize: 1, typeSize: 4 },
  F16: { id: 1, blockSize: 1, typeSize: 2 },
  Q4_0: { id: 2, blockSize: 32, typeSize: 18 },
  Q4_1: { id: 3, blockSize: 32, typeSize: 20 },
  Q5_0: { id: 6, blockSize: 32, typeSize: 22 },
  Q5_1: { id: 7, blockSize: 32, typeSize: 24 },
  Q8_0: { id: 8, blockSize: 32, typeSize: 34 },
  Q4_K: { id: 12, blockSize: 256, typeSize: 144 },
  Q5_K: { id: 13, blockSize: 256, typeSize: 176 },
  Q6_K: { id: 14, blockSize: 256, typeSize: 210 },
  BF16: { id: 30, blockSize: 1, typeSize: 2 },
} as const;

/** A ggml tensor type this project reads. */
export type GgmlType = keyof typeof GGML_TYPES;

/** Names of the ggml types by id, including ones this project refuses (for messages). */
const KNOWN_NAMES: Record<number, string> = {
  9: "Q8_1",
  10: "Q2_K",
  11: "Q3_K",
  15: "Q8_K",
  16: "IQ2_XXS",
  17: "IQ2_XS",
  18: "IQ3_XXS",
  19: "IQ1_S",
  20: "IQ4_NL",
  21: "IQ3_S",
  22: "IQ2_S",
  23: "IQ4_XS",
  24: "I8",
  25: "I16",
  26: "I32",
  27: "I64",
  28: "F64",
  29: "IQ1_M",
  34: "TQ1_0",
  35: "TQ2_0",
};

const BY_ID = new Map<number, GgmlType>(
  (Object.entries(GGML_TYPES) as [GgmlType, { id: number }][]).map(([name, t]) => [t.id, name]),
);

/** The type with GGUF id `id`, or undefined when this project cannot read it. */
export function ggmlTypeById(id: number): GgmlType | undefined {
  return BY_ID.get(id);
}

/** A human name for any type id (e.g. "Q3_K (11)", "type 99"), for error messages. */
export function ggmlTypeName(id: number): string {
  const n = BY_ID.get(id) ?? KNOWN_NAMES[id];
  return n ? `${n} (${id})` : `type ${id}`;
}

/** Bytes of `count` elements of `type`; throws a RangeError unless count is a whole number of blocks. */
export function ggmlByteLength(type: GgmlType, count: number): number {
  const t = GGML_TYPES[type];
  if (count % t.blockSize !== 0) {
    throw new RangeError(`${type}: ${count} elements is not a whole number of ${t.blockSize}-element blocks`);
  }
  return (count / t.blockSize) * t.typeSize;
}

/**
 * Bytes of one row of `cols` elements of `type` (a matrix's rows are whole blocks); throws a RangeError
 * naming `what` (the tensor) when a block type's row is not a whole number of blocks.
 */
export function ggmlRowBytes(type: GgmlType, cols: number, what = "matrix"): number {
  const { blockSize: bs, typeSize } = GGML_TYPES[type];
  if (cols % bs !== 0) {
    throw new RangeError(`${what}: ${cols} columns is not a whole number of ${bs}-element ${type} blocks`);
  }
  return (cols / bs) * typeSize;
}

/** Unpack the 6-bit scale and min of sub-block j (0..7) from a K-quant's 12 scale bytes at `o`. */
function scaleMinK4(j: number, b: Uint8Array, o: number): [number, number] {
  if (j < 4) return [b[o + j] & 63, b[o + j + 4] & 63];
  return [
    (b[o + j + 4] & 0xf) | ((b[o + j - 4] >> 6) << 4),
    (b[o + j + 4] >> 4) | ((b[o + j] >> 6) << 4),
  ];
}

/**
 * Dequantize `count` elements of `type` from `bytes` (exactly {@link ggmlByteLength} bytes) into a new
 * Float32Array, in storage order.
 */
export function dequantize(type: GgmlType, bytes: Uint8Array, count: number): Float32Array {
  const need = ggmlByteLength(type, count);
  if (bytes.byteLength !== need) {
    throw new RangeError(`${type}: ${count} elements need ${need} bytes, got ${bytes.byteLength}`);
  }
  // Plain element types: the same decoder as safetensors checkpoints.
  if (type === "F32" || type === "F16" || type === "BF16") return toF32(bytes, type);
  const out = new Float32Array(count);
  const h = f16ToF32Table();
  const f16 = (o: number) => h[bytes[o] | (bytes[o + 1] << 8)];
  const { blockSize, typeSize } = GGML_TYPES[type];
  const blocks = count / blockSize;
  switch (type) {
    case "Q8_0":
      for (let b = 0; b < blocks; b++) {
        const o = b * typeSize, d = f16(o), y = b * 32;
        for (let i = 0; i < 32; i++) out[y + i] = d * ((bytes[o + 2 + i] << 24) >> 24);
      }
      return out;
    case "Q4_0":
    case "Q4_1": {
      // Q4_0 centres the nibble (q - 8), Q4_1 adds a min: d * q + m.
      const hasMin = type === "Q4_1", qs = hasMin ? 4 : 2, off = hasMin ? 0 : 8;
      for (let b = 0; b < blocks; b++) {
        const o = b * typeSize, d = f16(o), m = hasMin ? f16(o + 2) : 0, y = b * 32;
        for (let i = 0; i < 16; i++) {
          const q = bytes[o + qs + i];
          out[y + i] = d * ((q & 0xf) - off) + m;
          out[y + i + 16] = d * ((q >> 4) - off) + m;
        }
      }
      return out;
    }
    case "Q5_0":
    case "Q5_1": {
      const hasMin = type === "Q5_1", qhAt = hasMin ? 4 : 2, off = hasMin ? 0 : 16;
      for (let b = 0; b < blocks; b++) {
        const o = b * typeSize, d = f16(o), m = hasMin ? f16(o + 2) : 0, y = b * 32;
        const qh = (bytes[o + qhAt] | (bytes[o + qhAt + 1] << 8) | (bytes[o + qhAt + 2] << 16) |
          (bytes[o + qhAt + 3] << 24)) >>> 0;
        for (let i = 0; i < 16; i++) {
          const q = bytes[o + qhAt + 4 + i];
          out[y + i] = d * (((q & 0xf) | (((qh >>> i) & 1) << 4)) - off) + m;
          out[y + i + 16] = d * (((q >> 4) | (((qh >>> (i + 16)) & 1) << 4)) - off) + m;
        }
      }
      return out;
    }
    case "Q4_K":
    case "Q5_K": {
      const five = type === "Q5_K";
      for (let b = 0; b < blocks; b++) {
        const o = b * typeSize, d = f16(o), dmin = f16(o + 2), sc = o + 4;
        const qh = o + 16, qs = five ? o + 48 : o + 16;
        let y = b * 256;
        // Four pairs of 32-element sub-blocks; a pair shares 32 bytes of nibbles (low, then high).
        for (let j = 0; j < 4; j++) {
          const [s1, m1] = scaleMinK4(2 * j, bytes, sc), [s2, m2] = scaleMinK4(2 * j + 1, bytes, sc);
          const d1 = d * s1, n1 = dmin * m1, d2 = d * s2, n2 = dmin * m2;
          for (let l = 0; l < 32; l++) {
            const q = bytes[qs + 32 * j + l];
            const hi1 = five ? ((bytes[qh + l] >> (2 * j)) & 1) << 4 : 0;
            const hi2 = five ? ((bytes[qh + l] >> (2 * j + 1)) & 1) << 4 : 0;
            out[y + l] = d1 * ((q & 0xf) | hi1) - n1;
            out[y + l + 32] = d2 * ((q >> 4) | hi2) - n2;
          }
          y += 64;
        }
      }
      return out;
    }
    case "Q6_K":
      for (let b = 0; b < blocks; b++) {
        const o = b * typeSize, d = f16(o + 208);
        // Two halves of 128: 64 bytes of low nibbles, 32 of high 2-bit pairs, 8 scales each.
        for (let half = 0; half < 2; half++) {
          const ql = o + 64 * half, qh = o + 128 + 32 * half, sc = o + 192 + 8 * half;
          const y = b * 256 + 128 * half;
          for (let l = 0; l < 32; l++) {
            const is = l >> 4, h = bytes[qh + l];
            const q1 = ((bytes[ql + l] & 0xf) | ((h & 3) << 4)) - 32;
            const q2 = ((bytes[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4)) - 32;
            const q3 = ((bytes[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
            const q4 = ((bytes[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
            const s = (i: number) => (bytes[sc + is + i] << 24) >> 24;
            out[y + l] = d * s(0) * q1;
            out[y + l + 32] = d * s(2) * q2;
            out[y + l + 64] = d * s(4) * q3;
            out[y + l + 96] = d * s(6) * q4;
          }
        }
      }
      return out;
  }
}

/** C's roundf: to the nearest integer, ties away from zero (x is an f32 value; x + 0.5 is exact in f64). */
function roundf(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/**
 * Quantize to Q8_0 exactly as ggml's `quantize_row_q8_0_ref`: blocks of 34 bytes, an f16 scale then 32
 * int8 values. Per block amax = max|x|, d = amax / 127, id = d ? 1/d : 0, q = roundf(x * id) in f32
 * arithmetic; d is stored as f16 (round-to-nearest-even) while q uses the f32 d. `x.length` must be a
 * multiple of 32.
 */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % 32 !== 0) throw new RangeError(`Q8_0: ${x.length} elements is not whole 32-element blocks`);
  const blocks = x.length / 32;
  const out = new Uint8Array(blocks * 34);
  const ds = new Float32Array(blocks);
  const fr = Math.fround;
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[b * 32 + i]));
    const d = fr(amax / 127);
    const id = d ? fr(1 / d) : 0;
    ds[b] = d;
    for (let i = 0; i < 32; i++) out[b * 34 + 2 + i] = roundf(fr(x[b * 32 + i] * id)) & 0xff;
  }
  const dBits = f32ToF16Bits(ds);
  for (let b = 0; b < blocks; b++) {
    out[b * 34] = dBits[b] & 0xff;
    out[b * 34 + 1] = dBits[b] >> 8;
  }
  return out;
}

/**
 * Quantize to Q4_0 exactly as ggml's `quantize_row_q4_0_ref`: blocks of 18 bytes, an f16 scale then 16
 * bytes of nibbles (element i < 16 low, i + 16 high). Per block max = the element of largest |x| (sign
 * kept), d = max / -8, id = d ? 1/d : 0, q = min(15, trunc(x * id + 8.5)) in f32 arithmetic; d is stored
 * as f16 while q uses the f32 d. `x.length` must be a multiple of 32.
 */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  if (x.length % 32 !== 0) throw new RangeError(`Q4_0: ${x.length} elements is not whole 32-element blocks`);
  const blocks = x.length / 32;
  const out = new Uint8Array(blocks * 18);
  const ds = new Float32Array(blocks);
  const fr = Math.fround;
  for (let b = 0; b < blocks; b++) {
    let amax = 0, max = 0;
    for (let i = 0; i < 32; i++) {
      const v = x[b * 32 + i];
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fr(max / -8);
    const id = d ? fr(1 / d) : 0;
    ds[b] = d;
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(15, Math.trunc(fr(fr(x[b * 32 + j] * id) + 8.5)));
      const q1 = Math.min(15, Math.trunc(fr(fr(x[b * 32 + 16 + j] * id) + 8.5)));
      out[b * 18 + 2 + j] = q0 | (q1 << 4);
    }
  }
  const dBits = f32ToF16Bits(ds);
  for (let b = 0; b < blocks; b++) {
    out[b * 18] = dBits[b] & 0xff;
    out[b * 18 + 1] = dBits[b] >> 8;
  }
  return out;
}
