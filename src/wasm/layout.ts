/**
 * The structs the kernels read (src/wasm/kernels/llama.c: Ctx, Layer, Pool), as the field orders the
 * TypeScript side writes them in. Every field is 4 bytes (an int32, a float or a wasm32 address), so a
 * field's byte offset is 4 x its index; the loader checks the C sizes (ctx_size() etc.) against these.
 *
 * @module
 */

/** Ctx: one model and its next forward. */
export const CTX_FIELDS = [
  // config
  "d",
  "n_layers",
  "n_heads",
  "n_kv_heads",
  "head_dim",
  "hidden",
  "vocab",
  "capacity",
  "eps",
  "quantized",
  // weights
  "lm_head_type",
  "lm_head_data",
  "final_norm",
  "layers",
  // this forward
  "n",
  "n_seqs",
  "n_logits",
  "seqs",
  "rope_cos",
  "rope_sin",
  "logit_rows",
  "logits",
  // scratch
  "x",
  "xn",
  "q",
  "att",
  "gate",
  "up",
  "xq",
  "xd",
  "xs",
  "scores",
  "acc",
  "kv_new",
] as const;

/** Seq: one sequence's rows, cache region and mask in a forward (kernels/llama.c). */
export const SEQ_FIELDS = ["t0", "n", "base", "past", "mask"] as const;

/** Layer: a decoder layer's matrices (type, address), norm gains and KV caches. */
export const LAYER_FIELDS = [
  "wq_type",
  "wq",
  "wk_type",
  "wk",
  "wv_type",
  "wv",
  "wo_type",
  "wo",
  "gate_type",
  "gate",
  "up_type",
  "up",
  "down_type",
  "down",
  "attn_norm",
  "mlp_norm",
  "k_cache",
  "v_cache",
] as const;

/** Pool: the threads' job and barrier. */
export const POOL_FIELDS = ["n_threads", "job_gen", "job_kind", "job_ctx", "bar_count", "bar_gen"] as const;

/** Byte offset of `field` in a struct with fields `fields`. */
export function offsetOf<F extends readonly string[]>(fields: F, field: F[number]): number {
  return 4 * fields.indexOf(field);
}

/** Writes the fields of one struct at `base` in a memory. */
export class StructView<F extends readonly string[]> {
  constructor(
    private readonly memory: WebAssembly.Memory,
    readonly base: number,
    private readonly fields: F,
  ) {}

  private view(): DataView {
    return new DataView(this.memory.buffer);
  }

  /** Set an int32 or address field. */
  setInt(field: F[number], value: number): void {
    this.view().setInt32(this.base + offsetOf(this.fields, field), value, true);
  }

  /** Set a float field. */
  setFloat(field: F[number], value: number): void {
    this.view().setFloat32(this.base + offsetOf(this.fields, field), value, true);
  }

  /** Read an int32 field. */
  getInt(field: F[number]): number {
    return this.view().getInt32(this.base + offsetOf(this.fields, field), true);
  }
}
