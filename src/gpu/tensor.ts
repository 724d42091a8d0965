/**
 * Weight matrices on the GPU. 16-bit weights stay 16-bit (two per u32 word, unpacked in the kernels, so
 * no shader-f16 is needed); a matrix larger than one storage binding is split into row chunks, each its
 * own buffer, and kernels run once per chunk (a 7B model's 250 MiB embedding loads on adapters whose
 * bindings stop at 128 MiB).
 *
 * @module
 */

import type { Gpu } from "./device.ts";
import { ggmlRowBytes as rowBytes } from "../model/ggml_quants.ts";
import { type GpuWeightType, isBlockType, toDeviceLayout } from "./weight_layout.ts";

export { DTYPE_CODE } from "./weight_layout.ts";

/** One row chunk of a matrix. */
export interface MatrixPart {
  buffer: GPUBuffer;
  rowStart: number;
  rows: number;
}

/**
 * An (rows, cols) weight matrix in a type the kernels read (its checkpoint's, or what the load option
 * converted it to), row-major, possibly split by rows; block types in the layout of weight_layout.ts.
 */
export interface GpuMatrix {
  name: string;
  rows: number;
  cols: number;
  dtype: GpuWeightType;
  parts: MatrixPart[];
  /** Total bytes on the GPU. */
  bytes: number;
}

/**
 * Allocate an empty (rows, cols) GpuMatrix of `dtype`, split so each part fits `maxPartBytes` (default:
 * the adapter's max storage binding). Parts hold whole rows; with an odd column count of a 16-bit dtype,
 * parts hold an even number of rows so each starts on a u32 word. Fill it with {@link writeMatrix}.
 */
export function allocMatrix(
  gpu: Gpu,
  name: string,
  shape: [number, number],
  dtype: GpuWeightType,
  maxPartBytes = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize),
): GpuMatrix {
  const [rows, cols] = shape;
  const rb = rowBytes(dtype, cols, name);
  // A part is padded to 16 bytes (kernels bind it as array<vec4<u32>>): keep room for that.
  let rowsPerPart = Math.floor((maxPartBytes - (maxPartBytes % 16)) / rb);
  if ((dtype === "F16" || dtype === "BF16") && cols % 2 === 1) rowsPerPart -= rowsPerPart % 2;
  if (rowsPerPart < 1) {
    throw new RangeError(
      `${name}: one row is ${rb} bytes, more than the ${maxPartBytes}-byte binding limit`,
    );
  }
  const parts: MatrixPart[] = [];
  for (let r = 0; r < rows; r += rowsPerPart) {
    const n = Math.min(rowsPerPart, rows - r);
    const buffer = gpu.createBuffer(`${name}[${r}..${r + n})`, Math.ceil((n * rb) / 16) * 16);
    parts.push({ buffer, rowStart: r, rows: n });
  }
  return { name, rows, cols, dtype, parts, bytes: rows * rb };
}

/**
 * `bytes` (the whole matrix, row-major, little-endian, as stored) as what each of `m`'s parts holds on
 * the device: a subarray where the stored rows already are that (plain types, 16-byte multiples), else
 * the part's device layout (weight_layout.ts: block types split into bodies and scales, padding). The
 * layer pager keeps these for the layers it caches, so a refill from RAM converts nothing.
 */
export function partUploads(m: GpuMatrix, bytes: Uint8Array): Uint8Array[] {
  if (bytes.byteLength !== m.bytes) {
    throw new RangeError(
      `${m.name}: ${bytes.byteLength} bytes, expected ${m.bytes} (${m.rows} rows of ${m.dtype})`,
    );
  }
  const rb = m.bytes / m.rows;
  return m.parts.map((p) => {
    const src = bytes.subarray(p.rowStart * rb, (p.rowStart + p.rows) * rb);
    return src.byteLength % 16 === 0 && !isBlockType(m.dtype)
      ? src
      : toDeviceLayout(m.dtype, src, p.rows, m.cols);
  });
}

/**
 * Queue the writes of {@link partUploads} (one per part, in order) into `m`'s parts. Queue order makes
 * them take effect after every command submitted before this call and before every one after it, which
 * is what lets the layer pager refill a slot right after submitting the layer that used it.
 */
export function writeParts(gpu: Gpu, m: GpuMatrix, uploads: Uint8Array[]): void {
  if (uploads.length !== m.parts.length) {
    throw new RangeError(`${m.name}: ${uploads.length} part uploads for ${m.parts.length} parts`);
  }
  m.parts.forEach((p, i) => gpu.device.queue.writeBuffer(p.buffer, 0, uploads[i] as Uint8Array<ArrayBuffer>));
}

/** Queue a write of `bytes` (the whole matrix as stored) into `m`'s parts: {@link partUploads} + write. */
export function writeMatrix(gpu: Gpu, m: GpuMatrix, bytes: Uint8Array): void {
  writeParts(gpu, m, partUploads(m, bytes));
}

/** Upload `bytes` (rows x cols of `dtype`) as a new GpuMatrix: {@link allocMatrix} + {@link writeMatrix}. */
export function uploadMatrix(
  gpu: Gpu,
  name: string,
  bytes: Uint8Array,
  shape: [number, number],
  dtype: GpuWeightType,
  maxPartBytes?: number,
): GpuMatrix {
  const [rows, cols] = shape;
  if (bytes.byteLength !== rows * rowBytes(dtype, cols, name)) {
    throw new RangeError(
      `${name}: ${bytes.byteLength} bytes, expected ${rows} rows of ${
        rowBytes(dtype, cols)
      } bytes (${dtype})`,
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
