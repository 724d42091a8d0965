/**
 * Tensor element types found in safetensors checkpoints, and their conversion to f32.
 *
 * @module
 */

/** The element types this engine reads. Others (I8, F8_E4M3, ...) are refused with a named error. */
export type DType = "F32" | "F16" | "BF16";

/** Bytes per element of each supported dtype. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = { F32: 4, F16: 2, BF16: 2 };

/** True when `s` names a supported dtype. */
export function isDType(s: string): s is DType {
  return s === "F32" || s === "F16" || s === "BF16";
}

// f16 -> f32 through a 64 Ki-entry table: one lookup per element instead of bit fiddling (256 KiB, built once).
let f16Table: Float32Array | undefined;
/** The 65,536-entry f16 bit pattern -> f32 value table (built on first use). */
export function f16ToF32Table(): Float32Array {
  if (f16Table) return f16Table;
  f16Table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) f16Table[h] = sign * frac * 2 ** -24; // subnormal
    else if (exp === 31) f16Table[h] = frac ? NaN : sign * Infinity;
    else f16Table[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return f16Table;
}

/**
 * Decode little-endian raw tensor bytes into a new Float32Array.
 *
 * @param bytes raw bytes, length = count * DTYPE_BYTES[dtype]
 * @param dtype element type of `bytes`
 */
export function toF32(bytes: Uint8Array, dtype: DType): Float32Array {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  const out = new Float32Array(n);
  // Copy to an aligned buffer first: the source may start at an odd offset inside a larger read.
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  if (dtype === "F32") {
    out.set(new Float32Array(aligned.buffer, aligned.byteOffset, n));
  } else if (dtype === "F16") {
    const t = f16ToF32Table();
    const h = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
    for (let i = 0; i < n; i++) out[i] = t[h[i]];
  } else {
    // bf16 is the top half of an f32: shift it into place.
    const h = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u[i] = h[i] << 16;
  }
  return out;
}

/** Round f32 values to f16 bit patterns (round-to-nearest-even); used by tests and the random-model maker. */
export function f32ToF16Bits(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < x.length; i++) {
    f[0] = x[i];
    const b = u[0];
    const sign = (b >>> 16) & 0x8000;
    const exp = (b >>> 23) & 0xff;
    let mant = b & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    let e = exp - 127 + 15;
    if (e >= 31) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && (h & 1))) h++;
      out[i] = sign | h;
      continue;
    }
    let h = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
    e = h >>> 10;
    out[i] = sign | (e >= 31 ? 0x7c00 : h);
  }
  return out;
}

/** Round f32 values to bf16 bit patterns (round-to-nearest-even). */
export function f32ToBf16Bits(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const b = u[i];
    if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff)) out[i] = (b >>> 16) | 0x40;
    else out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}
