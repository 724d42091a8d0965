/**
 * Writing safetensors files: used by tests (fixtures, corrupted copies) and by tools that make models.
 *
 * @module
 */

import { type DType, DTYPE_BYTES, f32ToBf16Bits, f32ToF16Bits } from "./dtype.ts";

/** A tensor to write: f32 values stored as `dtype`. */
export interface TensorToWrite {
  dtype: DType;
  shape: number[];
  data: Float32Array;
}

/** Encode f32 values as little-endian bytes of `dtype`. */
export function encodeTensor(data: Float32Array, dtype: DType): Uint8Array {
  if (dtype === "F32") return new Uint8Array(data.slice().buffer);
  const bits = dtype === "F16" ? f32ToF16Bits(data) : f32ToBf16Bits(data);
  return new Uint8Array(bits.buffer);
}

/** Serialize tensors (sorted by name) into safetensors bytes, data section 8-byte aligned. */
export function serializeSafetensors(
  tensors: Record<string, TensorToWrite>,
  metadata: Record<string, string> = { format: "pt" },
): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const blobs: Uint8Array[] = [];
  let off = 0;
  for (const name of Object.keys(tensors).sort()) {
    const t = tensors[name];
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) {
      throw new RangeError(
        `tensor "${name}": shape [${t.shape}] has ${count} elements, data has ${t.data.length}`,
      );
    }
    const b = encodeTensor(t.data, t.dtype);
    header[name] = {
      dtype: t.dtype,
      shape: t.shape,
      data_offsets: [off, off + count * DTYPE_BYTES[t.dtype]],
    };
    blobs.push(b);
    off += b.byteLength;
  }
  let h = JSON.stringify(header);
  h += " ".repeat((8 - (new TextEncoder().encode(h).length % 8)) % 8);
  const hb = new TextEncoder().encode(h);
  const out = new Uint8Array(8 + hb.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let p = 8 + hb.length;
  for (const b of blobs) {
    out.set(b, p);
    p += b.byteLength;
  }
  return out;
}
