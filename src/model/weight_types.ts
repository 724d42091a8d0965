/**
 * Which type each weight matrix is loaded as (`--weights-dtype`), and reading it so: a checkpoint's
 * matrices as a backend that reads `native` types directly wants them.
 *
 *   auto   as stored when the backend reads that type (a GGUF's Q8_0 / Q4_* / Q6_K blocks keep their
 *          bytes), else the store's F32 / F16 / BF16 (other block types dequantized to F16)
 *   f16    every matrix F16
 *   q8_0   every matrix whose rows are whole 32-element blocks quantized to Q8_0 (llama.cpp's
 *   q4_0   reference quantizers, ggml_quants.ts); the others as `auto`
 *
 * Quantizing starts from the exact stored values (readF32), so a Q4_1 GGUF loaded as q8_0 is
 * requantized from its own dequantized values, never from a rounded F16 copy. Norm vectors are not
 * matrices and stay f32 whatever the option.
 *
 * @module
 */

import { encodeTensor } from "./safetensors_write.ts";
import { dequantize, ggmlByteLength, type GgmlType, quantizeQ4_0, quantizeQ8_0 } from "./ggml_quants.ts";
import type { TensorStore } from "./tensor_store.ts";
import type { DType } from "./dtype.ts";

/** The values of `--weights-dtype`. */
export const WEIGHTS_DTYPES = ["auto", "f16", "q8_0", "q4_0"] as const;
/** How weight matrices are loaded. */
export type WeightsDtype = typeof WEIGHTS_DTYPES[number];

/** What cache keys append to a model's identity for `want` ("" for "auto": keys from before the option). */
export function weightsSuffix(want: WeightsDtype | undefined): string {
  return want && want !== "auto" ? ` weights ${want}` : "";
}

/**
 * The types the gpu and wasm kernels read in place (both backends' set: gpu/weight_layout.ts
 * GPU_WEIGHT_TYPES lists the same, tested; the CPU reference computes with their values).
 */
export const KERNEL_MATRIX_TYPES: ReadonlySet<GgmlType> = new Set<GgmlType>(
  ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"],
);

/**
 * `st` as the CPU reference sees a model loaded with `want`: every matrix's readF32 gives the values the
 * gpu and wasm kernels compute with (a q8_0 load's dequantized Q8_0 blocks, ...), so the f32 reference
 * is the oracle of a quantized model too; vectors (norms) and "auto" are `st` itself. The identity
 * names the option (caches keyed by it tell the two apart).
 */
export function withLoadedValues(st: TensorStore, want: WeightsDtype): TensorStore {
  if (want === "auto") return st;
  const typed = new TypedStore(st, want, KERNEL_MATRIX_TYPES);
  return {
    format: st.format,
    get: (name) => st.get(name),
    names: () => st.names(),
    readRaw: (name, into) => st.readRaw(name, into),
    ...(st.readGgml ? { readGgml: (name: string) => st.readGgml!(name) } : {}),
    readF32: async (name) => {
      const info = st.get(name);
      if (!info || info.shape.length !== 2) return await st.readF32(name);
      const t = typed.get(name);
      return dequantize(t.type, await typed.read(name), info.shape[0] * info.shape[1]);
    },
    identity: () => [...st.identity(), `weights ${want}`],
    close: () => st.close(),
  };
}

/** A matrix as it is loaded: a type the backend reads (`T`), or the store's own float type. */
export interface TypedMatrix<T extends GgmlType = GgmlType> {
  name: string;
  type: T | DType;
  /** [rows, cols] */
  shape: number[];
  /** Bytes of its rows in `type` (ggml layout). */
  byteLength: number;
}

/** A tensor store's matrices in the types a backend that reads `native` loads them as (module doc). */
export class TypedStore<T extends GgmlType = GgmlType> {
  constructor(
    readonly st: TensorStore,
    readonly want: WeightsDtype,
    private readonly native: ReadonlySet<T>,
  ) {}

  /** True when the backend reads `t` in place. */
  private reads(t: GgmlType): t is T {
    return this.native.has(t as T);
  }

  /** The type matrix `name` loads as (throws naming the tensor when the store has none). */
  get(name: string): TypedMatrix<T> {
    const info = this.st.get(name);
    if (!info) throw new RangeError(`no tensor "${name}" in ${this.st.identity()[0] ?? "the checkpoint"}`);
    const stored: GgmlType = info.ggml ?? info.dtype;
    const count = info.shape.reduce((a, b) => a * b, 1), cols = info.shape[info.shape.length - 1];
    let type: T | DType = this.reads(stored) ? stored : info.dtype;
    if (this.want === "f16") type = "F16";
    else if (this.want !== "auto") {
      const q: GgmlType = this.want === "q8_0" ? "Q8_0" : "Q4_0";
      if (cols % 32 === 0 && this.reads(q)) type = q;
    }
    return { name, type, shape: info.shape, byteLength: ggmlByteLength(type, count) };
  }

  /** Matrix `name`'s bytes in {@link get}'s type (into `into` when given: exactly byteLength bytes). */
  async read(name: string, into?: Uint8Array): Promise<Uint8Array> {
    const t = this.get(name), info = this.st.get(name)!;
    let bytes: Uint8Array;
    if (t.type === info.dtype) return await this.st.readRaw(name, into);
    if (t.type === info.ggml) bytes = (await this.st.readGgml!(name)).bytes;
    else {
      const x = await this.st.readF32(name);
      bytes = t.type === "Q8_0"
        ? quantizeQ8_0(x)
        : t.type === "Q4_0"
        ? quantizeQ4_0(x)
        : encodeTensor(x, t.type as DType);
    }
    if (!into) return bytes;
    if (into.byteLength !== bytes.byteLength) {
      throw new RangeError(`${name}: destination of ${into.byteLength} bytes for ${bytes.byteLength}`);
    }
    into.set(bytes);
    return into;
  }
}
