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
 * Allocate an empty (rows, cols) GpuMatrix of `dtype`, split so each part fits `maxPartBytes` (default:
 * the adapter's max storage binding). Parts hold whole rows; with an odd column count of a 16-bit dtype,
 * parts hold an even number of rows so each starts on a u32 word. Fill it with {@link writeMatrix}.
 */
export function allocMatrix(
  gpu: Gpu,
  name: string,
  shape: [number, number],
  dtype: DType,
  maxPartBytes = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize),
): GpuMatrix {
  const [rows, cols] = shape;
  const rowBytes = cols * DTYPE_BYTES[dtype];
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
    // Buffer sizes must be multiples of 4 (an odd count of 16-bit values is padded).
    const buffer = gpu.createBuffer(`${name}[${r}..${r + n})`, Math.ceil((n * rowBytes) / 4) * 4);
    parts.push({ buffer, rowStart: r, rows: n });
  }
  return { name, rows, cols, dtype, parts, bytes: rows * rowBytes };
}

/**
 * Queue a write of `bytes` (the whole matrix, row-major, little-endian) into `m`'s parts. Queue order
 * makes it take effect after every command submitted before this call and before every one after it,
 * which is what lets the layer pager refill a slot right after submitting the layer that used it.
 */
export function writeMatrix(gpu: Gpu, m: GpuMatrix, bytes: Uint8Array): void {
  if (bytes.byteLength !== m.bytes) {
    throw new RangeError(
      `${m.name}: ${bytes.byteLength} bytes, expected ${m.rows} x ${m.cols} x ${DTYPE_BYTES[m.dtype]}`,
    );
  }
  const rowBytes = m.cols * DTYPE_BYTES[m.dtype];
  for (const p of m.parts) {
    const src = bytes.subarray(p.rowStart * rowBytes, (p.rowStart + p.rows) * rowBytes);
    if (src.byteLength % 4 === 0) {
      gpu.device.queue.writeBuffer(p.buffer, 0, src as Uint8Array<ArrayBuffer>);
    } else {
      const padded = new Uint8Array(Math.ceil(src.byteLength / 4) * 4);
      padded.set(src);
      gpu.device.queue.writeBuffer(p.buffer, 0, padded);
    }
  }
}

/** Upload `bytes` (rows x cols of `dtype`) as a new GpuMatrix: {@link allocMatrix} + {@link writeMatrix}. */
export function uploadMatrix(
  gpu: Gpu,
  name: string,
  bytes: Uint8Array,
  shape: [number, number],
  dtype: DType,
  maxPartBytes?: number,
): GpuMatrix {
  const [rows, cols] = shape;
  if (bytes.byteLength !== rows * cols * DTYPE_BYTES[dtype]) {
    throw new RangeError(
      `${name}: ${bytes.byteLength} bytes, expected ${rows} x ${cols} x ${DTYPE_BYTES[dtype]}`,
    );
  }
  const m = allocMatrix(gpu, name, shape, dtype, maxPartBytes);
  writeMatrix(gpu, m, bytes);
  return m;
}

/** Free a matrix's buffers. */
export function destroyMatrix(m: GpuMatrix): void {
  for (const p of m.parts) p.buffer.destroy();
}
