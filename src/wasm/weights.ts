/**
 * A checkpoint's weights in a wasm runtime's memory, in the types the kernels compute on directly:
 * F32, F16, BF16 and the GGUF blocks Q8_0, Q4_0, Q4_1, Q4_K and Q6_K as they are stored (a Q8_0 file
 * keeps its 8.5 bits per weight). Other GGUF types (Q5_0, Q5_1, Q5_K) come as F16 through the store's
 * readRaw (dequantized on read, the GPU backend's path). Norm gains are f32. The token embeddings stay
 * on the JS heap (a forward reads n rows of them) unless the LM head is tied to them.
 *
 * @module
 */

import type { ModelConfig } from "../model/config.ts";
import { dequantize, GGML_TYPES, ggmlRowBytes, type GgmlType } from "../model/ggml_quants.ts";
import { KERNEL_MATRIX_TYPES, TypedStore, type WeightsDtype } from "../model/weight_types.ts";
import type { TensorStore } from "../model/tensor_store.ts";
import {
  LAYER_MATRIX_ROLES,
  LAYER_NORM_ROLES,
  type LayerMatrixRole,
  llamaTensorSpec,
} from "../model/weights.ts";
import type { WasmRuntime } from "./runtime.ts";

/** The ggml types the kernels read in place. */
export const WASM_MATRIX_TYPES: ReadonlySet<GgmlType> = KERNEL_MATRIX_TYPES;

/** A (rows, cols) matrix in the runtime's memory. */
export interface WasmMatrix {
  type: GgmlType;
  /** GGUF type id (what the kernels switch on). */
  typeId: number;
  /** Address of row 0. */
  ptr: number;
  rows: number;
  cols: number;
  /** Bytes of one row. */
  rowBytes: number;
}

/** One decoder layer: matrices by role, norm gains (f32 addresses). */
export interface WasmLayer {
  matrices: Record<LayerMatrixRole, WasmMatrix>;
  attnNorm: number;
  mlpNorm: number;
}

/** Token embeddings: (vocab, d) in a ggml type, read a row at a time. */
export interface Embeddings {
  type: GgmlType;
  bytes: Uint8Array;
  rowBytes: number;
}

/** Every weight of a model. */
export interface WasmWeights {
  embed: Embeddings;
  layers: WasmLayer[];
  finalNorm: number;
  lmHead: WasmMatrix;
  /** True when some matrix is quantized (activations are then quantized to int16 as well). */
  quantized: boolean;
  /** Bytes of weights read per forward (matrices and norms) plus the embedding table. */
  bytes: number;
}

/** Element types a model's config may ask its float matrices to be quantized to at load (`load_as`). */
export type LoadAsType = "Q8_0";

/**
 * `name` in a type the kernels read (model/weight_types.ts): stored blocks when native, else the store's
 * raw F32/F16/BF16, or what `want` asks for (a small draft shipped as F16 with `load_as: Q8_0` runs at
 * Q8_0's 8.5 bits per weight: half the bytes and the kernels' int8 dot products).
 */
async function readMatrixBytes(
  st: TypedStore,
  name: string,
): Promise<{ type: GgmlType; bytes: Uint8Array }> {
  if (!st.st.get(name)) throw new RangeError(`wasm backend: no tensor "${name}"`);
  return { type: st.get(name).type, bytes: await st.read(name) };
}

/** What `--weights-dtype` means on wasm when not given: the config's `load_as`, else as stored. */
export function wasmWeightsDtype(loadAs: LoadAsType | undefined, want?: WeightsDtype): WeightsDtype {
  return want ?? (loadAs === "Q8_0" ? "q8_0" : "auto");
}

function place(
  rt: WasmRuntime,
  name: string,
  t: { type: GgmlType; bytes: Uint8Array },
  rows: number,
  cols: number,
) {
  const rb = ggmlRowBytes(t.type, cols, name);
  if (rb * rows !== t.bytes.byteLength) {
    throw new RangeError(
      `${name}: ${t.bytes.byteLength} bytes for a (${rows}, ${cols}) ${t.type} matrix of ${rb * rows}`,
    );
  }
  return { type: t.type, typeId: GGML_TYPES[t.type].id, ptr: rt.upload(t.bytes), rows, cols, rowBytes: rb };
}

/** Read every weight of `st` (validated for `c`) into `rt`'s memory. */
export async function loadWasmWeights(
  rt: WasmRuntime,
  store: TensorStore,
  c: ModelConfig,
  want: WeightsDtype = "auto",
): Promise<WasmWeights> {
  const spec = llamaTensorSpec(c);
  const st = new TypedStore(store, want, WASM_MATRIX_TYPES);
  let bytes = 0, quantized = false;
  const matrix = async (s: { name: string; shape: number[] }): Promise<WasmMatrix> => {
    const m = place(rt, s.name, await readMatrixBytes(st, s.name), s.shape[0], s.shape[1]);
    bytes += m.rowBytes * m.rows;
    quantized ||= GGML_TYPES[m.type].blockSize > 1;
    return m;
  };
  const norm = async (name: string): Promise<number> => {
    const v = await store.readF32(name);
    bytes += v.byteLength;
    return rt.upload(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  };
  const layers: WasmLayer[] = [];
  for (const s of spec.layers) {
    const matrices = {} as Record<LayerMatrixRole, WasmMatrix>;
    for (const r of LAYER_MATRIX_ROLES) matrices[r] = await matrix(s[r]);
    const [attnNorm, mlpNorm] = [
      await norm(s[LAYER_NORM_ROLES[0]].name),
      await norm(s[LAYER_NORM_ROLES[1]].name),
    ];
    layers.push({ matrices, attnNorm, mlpNorm });
  }
  const finalNorm = await norm(spec.global.finalNorm.name);
  const e = spec.global.embed;
  let embed: Embeddings, lmHead: WasmMatrix;
  if (spec.global.lmHead) {
    lmHead = await matrix(spec.global.lmHead);
    const t = await readMatrixBytes(st, e.name);
    embed = { type: t.type, bytes: t.bytes, rowBytes: ggmlRowBytes(t.type, e.shape[1], e.name) };
  } else {
    // Tied: the LM head is the embedding table, in wasm memory once, rows read from there.
    lmHead = await matrix(e);
    embed = {
      type: lmHead.type,
      bytes: rt.u8(lmHead.ptr, lmHead.rowBytes * lmHead.rows),
      rowBytes: lmHead.rowBytes,
    };
  }
  if (spec.global.lmHead) bytes += embed.bytes.byteLength;
  return { embed, layers, finalNorm, lmHead, quantized, bytes };
}

/** Token `id`'s embedding row as f32 (exactly ggml's dequantized values) into `out` (d). */
export function embeddingRow(e: Embeddings, id: number, d: number, out: Float32Array): void {
  const row = e.bytes.subarray(id * e.rowBytes, (id + 1) * e.rowBytes);
  out.set(dequantize(e.type, row.byteOffset % 4 === 0 ? row : row.slice(), d));
}
