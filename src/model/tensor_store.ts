/**
 * The tensor-store seam: what every backend, the pager and the model identity need from a checkpoint,
 * whatever its file format. Tensors are named by their Hugging Face names and described as the device
 * sees them (F32, F16 or BF16 bytes, row-major), so a GGUF file (gguf_checkpoint.ts, which dequantizes
 * and un-permutes on read) goes through the same code as a safetensors folder (safetensors.ts).
 *
 * @module
 */

import type { DType } from "./dtype.ts";
import type { GgmlType } from "./ggml_quants.ts";

/** One tensor as the store hands it out (what {@link TensorStore.readRaw} returns bytes of). */
export interface StoredTensor {
  /** Hugging Face name, e.g. `model.layers.0.self_attn.q_proj.weight`. */
  name: string;
  /** Element type of the bytes {@link TensorStore.readRaw} returns. */
  dtype: DType;
  /** Row-major dimensions, HF Linear weights as [out, in]. */
  shape: number[];
  /** Bytes {@link TensorStore.readRaw} returns: count x DTYPE_BYTES[dtype]. */
  byteLength: number;
  /** Path of the file the tensor is read from (for error messages). */
  file: string;
  /**
   * The ggml type the file stores it in, when that differs from `dtype` (a GGUF's quantized blocks, which
   * {@link TensorStore.readGgml} hands out as they are).
   */
  ggml?: GgmlType;
}

/** The file formats a store is read from. */
export type TensorStoreFormat = "safetensors" | "gguf";

/** A checkpoint's tensors by HF name, read on demand. */
export interface TensorStore {
  /**
   * Where the store came from: a safetensors folder takes its config from config.json beside it, a GGUF
   * file from its own metadata (which its {@link identity} then covers).
   */
  readonly format: TensorStoreFormat;
  /** Info of tensor `name` (HF name), or undefined. */
  get(name: string): StoredTensor | undefined;
  /** Every tensor name (HF names). */
  names(): string[];
  /**
   * The bytes of `name` as {@link StoredTensor.dtype} (into `into` when given: it must be exactly
   * `byteLength` bytes, the pager reuses one staging buffer per tensor).
   */
  readRaw(name: string, into?: Uint8Array): Promise<Uint8Array>;
  /** Tensor `name` as f32 (the CPU reference's weights: exact, never rounded through readRaw's dtype). */
  readF32(name: string): Promise<Float32Array>;
  /**
   * Tensor `name` in the type it is stored in (a GGUF file's quantized blocks, rows in HF order), for a
   * backend that computes on the blocks directly (the wasm backend). Absent: the store holds only
   * F32/F16/BF16, which {@link readRaw} gives as they are.
   */
  readGgml?(name: string): Promise<{ type: GgmlType; bytes: Uint8Array }>;
  /**
   * Strings that identify the store's content without reading the weights: file names, sizes and
   * tensor tables (and, for GGUF, the metadata). The acceptance and profile caches hash them.
   */
  identity(): string[];
  /** Close every file. */
  close(): void;
}
