/**
 * A llama GGUF file as a {@link TensorStore}: tensors under their Hugging Face names, dequantized and
 * with llama.cpp's q/k row permutation undone on read, so every backend loads it like a safetensors
 * folder.
 *
 * Names (N = layer):
 *   model.embed_tokens.weight  token_embd.weight     model.norm.weight  output_norm.weight
 *   lm_head.weight             output.weight (absent when tied)
 *   model.layers.N.input_layernorm.weight           blk.N.attn_norm.weight
 *   model.layers.N.self_attn.{q,k,v,o}_proj.weight  blk.N.attn_{q,k,v,output}.weight
 *   model.layers.N.post_attention_layernorm.weight  blk.N.ffn_norm.weight
 *   model.layers.N.mlp.{gate,up,down}_proj.weight   blk.N.ffn_{gate,up,down}.weight
 * Any other tensor is refused by name (e.g. rope_freqs.weight, Llama 3.1's per-frequency RoPE factors,
 * or biases): silently ignoring it would run a different model.
 *
 * Element types: F32, F16 and BF16 tensors pass through unchanged. Quantized tensors (Q8_0, Q4_1, ...)
 * are dequantized on read: {@link GgufCheckpoint.readF32} gives the exact f32 values ggml computes (the
 * CPU reference), {@link GgufCheckpoint.readRaw} those values rounded to F16, which the GPU uploads and
 * pages. F16 because its 11-bit significand holds a 4- or 8-bit quant times an f16 scale (plus an f16
 * min) to within 2^-11 relative, far below the quantization step itself, at half the bytes of F32;
 * BF16's 8-bit significand would add error comparable to a Q8 step. The rounding is the only difference
 * between the GPU's weights and the reference's.
 *
 * @module
 */

import type { ModelConfig } from "./config.ts";
import { type DType, DTYPE_BYTES, f32ToF16Bits } from "./dtype.ts";
import { dequantize, type GgmlType } from "./ggml_quants.ts";
import type { GgufFile, GgufTensorInfo } from "./gguf.ts";
import { CheckpointError } from "./safetensors.ts";
import type { StoredTensor, TensorStore } from "./tensor_store.ts";

/** HF -> GGUF names of a decoder layer's tensors (after `model.layers.N.` / `blk.N.`). */
export const GGUF_LAYER_NAMES: Readonly<Record<string, string>> = {
  "input_layernorm.weight": "attn_norm.weight",
  "self_attn.q_proj.weight": "attn_q.weight",
  "self_attn.k_proj.weight": "attn_k.weight",
  "self_attn.v_proj.weight": "attn_v.weight",
  "self_attn.o_proj.weight": "attn_output.weight",
  "post_attention_layernorm.weight": "ffn_norm.weight",
  "mlp.gate_proj.weight": "ffn_gate.weight",
  "mlp.up_proj.weight": "ffn_up.weight",
  "mlp.down_proj.weight": "ffn_down.weight",
};

/** HF -> GGUF names of the tensors outside the layers. */
export const GGUF_GLOBAL_NAMES: Readonly<Record<string, string>> = {
  "model.embed_tokens.weight": "token_embd.weight",
  "model.norm.weight": "output_norm.weight",
  "lm_head.weight": "output.weight",
};

const GLOBAL_TO_HF = new Map(Object.entries(GGUF_GLOBAL_NAMES).map(([hf, g]) => [g, hf]));
const LAYER_TO_HF = new Map(Object.entries(GGUF_LAYER_NAMES).map(([hf, g]) => [g, hf]));

/** The HF name of GGUF tensor `name`, or undefined when it is not part of a llama model. */
export function hfTensorName(name: string): string | undefined {
  const global = GLOBAL_TO_HF.get(name);
  if (global) return global;
  const m = /^blk\.(\d+)\.(.+)$/.exec(name);
  const rest = m && LAYER_TO_HF.get(m[2]);
  return rest ? `model.layers.${Number(m[1])}.${rest}` : undefined;
}

/**
 * The GGUF row a Hugging Face q/k row comes from. llama.cpp's converter regroups each head's rows for
 * its interleaved RoPE (`w.reshape(n_head, 2, head_dim // 2, cols).swapaxes(1, 2)`): HF row
 * `h*hd + s*hd/2 + i` (half s of head h, i < hd/2) becomes GGUF row `h*hd + 2*i + s`. Undoing it, HF row
 * r = h*hd + j of a head takes GGUF row `h*hd + 2*(j mod hd/2) + (j >= hd/2 ? 1 : 0)`, i.e. within a
 * head HF's rows are GGUF's rows [0, 2, 4, ..., hd-2, 1, 3, 5, ..., hd-1].
 *
 * @param r HF row index
 * @param headDim rows per head (even)
 */
export function ropeSourceRow(r: number, headDim: number): number {
  const half = headDim / 2;
  const j = r % headDim;
  return r - j + 2 * (j % half) + (j >= half ? 1 : 0);
}

/**
 * Undo llama.cpp's q/k permutation on a tensor's stored bytes: `rows` rows of equal byte length (a
 * quantized row is whole blocks, so rows can move before dequantizing), `heads` heads of rows/heads rows.
 */
export function unpermuteRopeRows(bytes: Uint8Array, rows: number, heads: number): Uint8Array {
  const headDim = rows / heads, rowBytes = bytes.byteLength / rows;
  const out = new Uint8Array(bytes.byteLength);
  for (let r = 0; r < rows; r++) {
    const src = ropeSourceRow(r, headDim) * rowBytes;
    out.set(bytes.subarray(src, src + rowBytes), r * rowBytes);
  }
  return out;
}

/** One mapped tensor: what the store hands out, where it comes from, and the heads to un-permute by. */
interface Mapped {
  info: StoredTensor;
  gguf: GgufTensorInfo;
  /** q/k projections: the head count of llama.cpp's row permutation. */
  ropeHeads?: number;
}

const PASS_THROUGH = new Set<string>(["F32", "F16", "BF16"]);

/** A llama GGUF file's tensors under HF names (see the module doc). Owns the file: close() closes it. */
export class GgufCheckpoint implements TensorStore {
  /** The config comes from the file's own metadata (which {@link identity} covers). */
  readonly format = "gguf";

  private constructor(
    /** The open GGUF file. */
    readonly file: GgufFile,
    private readonly tensors: ReadonlyMap<string, Mapped>,
  ) {}

  /**
   * Map every tensor of `file` to its HF name for `config` (from gguf_config.ts); throws a
   * {@link CheckpointError} naming a tensor this engine has no role for, or q/k rows that do not split
   * into the config's heads.
   */
  static fromFile(file: GgufFile, config: ModelConfig): GgufCheckpoint {
    const tensors = new Map<string, Mapped>();
    for (const g of file.tensors.values()) {
      const name = hfTensorName(g.name);
      if (!name) {
        throw new CheckpointError(
          `${file.path}: tensor "${g.name}" (${g.type}, shape [${g.shape}]) has no place in a llama model ` +
            `this engine runs${
              g.name === "rope_freqs.weight" ? " (per-frequency RoPE factors are not supported)" : ""
            }`,
        );
      }
      const dtype: DType = PASS_THROUGH.has(g.type) ? g.type as DType : "F16";
      const ropeHeads = name.endsWith("self_attn.q_proj.weight")
        ? config.nHeads
        : name.endsWith("self_attn.k_proj.weight")
        ? config.nKvHeads
        : undefined;
      if (ropeHeads !== undefined && (g.shape.length !== 2 || g.shape[0] !== ropeHeads * config.headDim)) {
        throw new CheckpointError(
          `${file.path}: tensor "${g.name}" has shape [${g.shape}], expected ${ropeHeads} heads x ` +
            `${config.headDim} rows by ${config.hiddenSize} columns`,
        );
      }
      tensors.set(name, {
        info: {
          name,
          dtype,
          shape: g.shape,
          byteLength: g.count * DTYPE_BYTES[dtype],
          file: file.path,
          ...(PASS_THROUGH.has(g.type) ? {} : { ggml: g.type }),
        },
        gguf: g,
        ropeHeads,
      });
    }
    return new GgufCheckpoint(file, tensors);
  }

  /** Info of tensor `name` (HF name) as readRaw returns it, or undefined. */
  get(name: string): StoredTensor | undefined {
    return this.tensors.get(name)?.info;
  }

  /** Every tensor's HF name. */
  names(): string[] {
    return [...this.tensors.keys()];
  }

  /** The GGUF bytes of `name` with q/k rows in HF order (still in the file's ggml type). */
  private async stored(name: string): Promise<Mapped & { bytes: Uint8Array }> {
    const t = this.tensors.get(name);
    if (!t) throw new CheckpointError(`${this.file.path}: no tensor "${name}" (HF name)`);
    const raw = await this.file.readRaw(t.gguf.name);
    const bytes = t.ropeHeads ? unpermuteRopeRows(raw, t.gguf.shape[0], t.ropeHeads) : raw;
    return { ...t, bytes };
  }

  /**
   * `name` as {@link StoredTensor.dtype} bytes: passed through, or dequantized and rounded to F16 (into
   * `into` when given, exactly `byteLength` bytes).
   */
  async readRaw(name: string, into?: Uint8Array): Promise<Uint8Array> {
    const t = await this.stored(name);
    const bytes = PASS_THROUGH.has(t.gguf.type)
      ? t.bytes
      : new Uint8Array(f32ToF16Bits(dequantize(t.gguf.type, t.bytes, t.gguf.count)).buffer);
    if (!into) return bytes;
    if (into.byteLength !== bytes.byteLength) {
      throw new RangeError(
        `${this.file.path}: destination of ${into.byteLength} bytes for tensor "${name}" of ${bytes.byteLength}`,
      );
    }
    into.set(bytes);
    return into;
  }

  /** `name` in its stored ggml type (quantized blocks as they are), q/k rows in HF order. */
  async readGgml(name: string): Promise<{ type: GgmlType; bytes: Uint8Array }> {
    const t = await this.stored(name);
    return { type: t.gguf.type, bytes: t.bytes };
  }

  /** `name` as f32: exactly the values ggml dequantizes to (q/k rows in HF order). */
  async readF32(name: string): Promise<Float32Array> {
    const t = await this.stored(name);
    return dequantize(t.gguf.type, t.bytes, t.gguf.count);
  }

  /**
   * The file's name and size, its whole metadata table (the config and the tokenizer live there) and its
   * tensor infos (GGUF names, ggml types, shapes, offsets): the weights themselves are not hashed.
   */
  identity(): string[] {
    const f = this.file;
    const json = (v: unknown) => JSON.stringify(v, (_k, x) => typeof x === "bigint" ? `${x}n` : x);
    return [
      f.path.split("/").pop()!,
      String(f.size),
      json([...f.metadata].map(([k, e]) => [k, e.type, e.value])),
      json([...f.tensors.values()].map((t) => [t.name, t.type, t.shape, t.offset])),
    ];
  }

  /** Close the file. */
  close(): void {
    this.file.close();
  }
}
