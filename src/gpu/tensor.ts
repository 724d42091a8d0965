/**
 * Weight matrices on the GPU. 16-bit weights stay 16-bit (two per u32 word, unpacked in the kernels, so
 * no shader-f16 is needed); a matrix larger than one storage binding is split into row chunks, each its
 * own buffer, and kernels run once per chunk (a 7B model's 250 MiB embedding loads on adapters whose
 * bindings stop at 128 MiB).
 *
 * @module
 */

import { type DType, DTYPE_BYTES } from "../model/dtype.ts";
import type { Gpu } from "./device.ts";

/** One row chunk of a matrix. */
export interface MatrixPart {
  buffer: GPUBuffer;
  rowStart: number;
  rows: number;
}

/** An (rows, cols) weight matrix in its checkpoint dtype, row-major, possibly split by rows. */
export interface GpuMatrix {
  name: string;
  rows: number;
  cols: number;
  dtype: DType;
  parts: MatrixPart[];
  /** Total bytes on the GPU. */
  bytes: number;
}

/** Numeric code of a dtype in the shaders' DTYPE define. */
export const DTYPE_CODE: Readonly<Record<DType, number>> = { F32: 0, F16: 1, BF16: 2 };

/**
 * Upload `bytes` (rows x cols of `dtype`, little-endian) as a GpuMatrix, split so each part fits
 * `maxPartBytes` (default: the adapter's max storage binding). Parts hold whole rows; with an odd
 * column count of a 16-bit dtype, parts hold an even number of rows so each starts on a u32 word.
 */
export function uploadMatrix(
  gpu: Gpu,
  name: string,
  bytes: Uint8Array,
  shape: [number, number],
  dtype: DType,
  maxPartBytes = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize),
): GpuMatrix {
  const [rows, cols] = shape;
  const rowBytes = cols * DTYPE_BYTES[dtype];
  if (bytes.byteLength !== rows * rowBytes) {
    throw new RangeError(
      `${name}: ${bytes.byteLength} bytes, expected ${rows} x ${cols} x ${DTYPE_BYTES[dtype]}`,
    );
  }
  let rowsPerPart = Math.floor(maxPartBytes / rowBytes);
  if (dtype !== "F32" && cols % 2 === 1) rowsPerPart -= rowsPerPart % 2;
  if (rowsPerPart < 1) {
    throw new RangeError(
      `${name}: one row is ${rowBytes} bytes, more than the ${maxPartBytes}-byte binding limit`,
    );
  }
  const parts: MatrixPart[] = [];
  for (let r = 0; r < rows; r += rowsPerPart) {
    const n = Math.min(rowsPerPart, rows - r);
    const buffer = gpu.createBufferWith(
      `${name}[${r}..${r + n})`,
      bytes.subarray(r * rowBytes, (r + n) * rowBytes),
    );
    parts.push({ buffer, rowStart: r, rows: n });
  }
  return { name, rows, cols, dtype, parts, bytes: bytes.byteLength };
}

/** Free a matrix's buffers. */
export function destroyMatrix(m: GpuMatrix): void {
  for (const p of m.parts) p.buffer.destroy();
}
