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

/** A tensor's place in a file being written piece by piece. */
export interface TensorLayout {
  name: string;
  dtype: DType;
  shape: number[];
}

/**
 * The header block (8-byte length + JSON padded to 8 bytes) for tensors written in `layout` order
 * right after it, and each tensor's byte offset from the start of the file: for writers that stream
 * tensor data (multi-GB files never held in memory).
 */
export function safetensorsHeader(
  layout: TensorLayout[],
  metadata: Record<string, string> = { format: "pt" },
): { header: Uint8Array; offsets: number[]; fileBytes: number } {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const rel: number[] = [];
  let off = 0;
  for (const t of layout) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + bytes] };
    rel.push(off);
    off += bytes;
  }
  let h = JSON.stringify(header);
  h += " ".repeat((8 - (new TextEncoder().encode(h).length % 8)) % 8);
  const hb = new TextEncoder().encode(h);
  const out = new Uint8Array(8 + hb.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  return { header: out, offsets: rel.map((r) => r + out.length), fileBytes: out.length + off };
}
