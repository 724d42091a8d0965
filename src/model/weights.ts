/**
 * The tensors a Llama checkpoint must hold, by role, with their expected shapes, and loading them as f32
 * for the CPU reference. The GPU engine uses the same {@link llamaTensorSpec} and reads raw bytes instead.
 * Every user names tensors by role (`spec.layers[l].wq`); only this file knows the HF names.
 *
 * @module
 */

import type { ModelConfig } from "./config.ts";
import { CheckpointError } from "./safetensors.ts";
import type { TensorStore } from "./tensor_store.ts";

/** One expected tensor: HF name and shape. */
export interface TensorSpec {
  name: string;
  shape: number[];
}

/** Every tensor of a decoder layer, in checkpoint order (norms and matrices interleaved as HF writes them). */
export const LAYER_ROLES = ["attnNorm", "wq", "wk", "wv", "wo", "mlpNorm", "wGate", "wUp", "wDown"] as const;
/** A decoder layer tensor's role. */
export type LayerRole = typeof LAYER_ROLES[number];
/** The seven matrices of a decoder layer (what a paging slot holds), in checkpoint order. */
export const LAYER_MATRIX_ROLES = ["wq", "wk", "wv", "wo", "wGate", "wUp", "wDown"] as const;
/** A decoder layer matrix's role. */
export type LayerMatrixRole = typeof LAYER_MATRIX_ROLES[number];
/** The two norm vectors of a decoder layer. */
export const LAYER_NORM_ROLES = ["attnNorm", "mlpNorm"] as const;
/** A decoder layer norm's role. */
export type LayerNormRole = typeof LAYER_NORM_ROLES[number];

/** The expected tensors of a Llama checkpoint by role. */
export interface LlamaTensorSpec {
  global: {
    /** (vocab, d) token embeddings. */
    embed: TensorSpec;
    /** (d) final RMSNorm. */
    finalNorm: TensorSpec;
    /** (vocab, d) LM head; absent when tied to the embeddings. */
    lmHead?: TensorSpec;
  };
  /** Per decoder layer, every tensor by role. */
  layers: Record<LayerRole, TensorSpec>[];
}

/** Expected tensor names and shapes of a Llama checkpoint for config `c` (HF Linear weights are [out, in]). */
export function llamaTensorSpec(c: ModelConfig): LlamaTensorSpec {
  const d = c.hiddenSize;
  const global: LlamaTensorSpec["global"] = {
    embed: { name: "model.embed_tokens.weight", shape: [c.vocabSize, d] },
    finalNorm: { name: "model.norm.weight", shape: [d] },
  };
  if (!c.tieWordEmbeddings) global.lmHead = { name: "lm_head.weight", shape: [c.vocabSize, d] };
  const layers: Record<LayerRole, TensorSpec>[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const p = `model.layers.${l}.`;
    layers.push({
      attnNorm: { name: p + "input_layernorm.weight", shape: [d] },
      wq: { name: p + "self_attn.q_proj.weight", shape: [c.qDim, d] },
      wk: { name: p + "self_attn.k_proj.weight", shape: [c.kvDim, d] },
      wv: { name: p + "self_attn.v_proj.weight", shape: [c.kvDim, d] },
      wo: { name: p + "self_attn.o_proj.weight", shape: [d, c.qDim] },
      mlpNorm: { name: p + "post_attention_layernorm.weight", shape: [d] },
      wGate: { name: p + "mlp.gate_proj.weight", shape: [c.intermediateSize, d] },
      wUp: { name: p + "mlp.up_proj.weight", shape: [c.intermediateSize, d] },
      wDown: { name: p + "mlp.down_proj.weight", shape: [d, c.intermediateSize] },
    });
  }
  return { global, layers };
}

/**
 * Every expected tensor of `spec` in checkpoint order: embeddings, final norm, an untied LM head, then
 * layer by layer in {@link LAYER_ROLES} order (writers shard and seed in this order).
 */
export function specTensors(spec: LlamaTensorSpec): TensorSpec[] {
  const { embed, finalNorm, lmHead } = spec.global;
  return [
    embed,
    finalNorm,
    ...(lmHead ? [lmHead] : []),
    ...spec.layers.flatMap((l) => LAYER_ROLES.map((r) => l[r])),
  ];
}

/**
 * Check that every expected tensor is present with the expected shape. Some exporters write an
 * lm_head even for tied models; that is accepted (and ignored) when tie_word_embeddings is true.
 */
export function validateCheckpoint(st: TensorStore, c: ModelConfig, dir: string): void {
  for (const t of specTensors(llamaTensorSpec(c))) {
    const info = st.get(t.name);
    if (!info) throw new CheckpointError(`${dir}: tensor "${t.name}" is missing from the checkpoint`);
    if (info.shape.length !== t.shape.length || info.shape.some((s, i) => s !== t.shape[i])) {
      throw new CheckpointError(
        `${info.file}: tensor "${t.name}" has shape [${info.shape}], expected [${t.shape}] from ${
          st.format === "gguf" ? "the metadata" : "config.json"
        }`,
      );
    }
  }
}

/**
 * One decoder layer's f32 weights by role: norms (d); wq (qDim, d); wk, wv (kvDim, d); wo (d, qDim);
 * wGate, wUp (hidden, d); wDown (d, hidden) — HF [out, in] row-major.
 */
export type LayerWeightsF32 = Record<LayerRole, Float32Array>;

/** All weights of a Llama model as f32 (CPU reference). */
export interface LlamaWeightsF32 {
  /** (vocab, d) */
  embed: Float32Array;
  layers: LayerWeightsF32[];
  /** (d) */
  finalNorm: Float32Array;
  /** (vocab, d); the embedding itself when tied. */
  lmHead: Float32Array;
}

/** Load and convert all weights to f32. */
export async function loadWeightsF32(st: TensorStore, c: ModelConfig): Promise<LlamaWeightsF32> {
  const spec = llamaTensorSpec(c);
  const layers: LayerWeightsF32[] = [];
  for (const s of spec.layers) {
    const w: Partial<LayerWeightsF32> = {};
    for (const r of LAYER_ROLES) w[r] = await st.readF32(s[r].name);
    layers.push(w as LayerWeightsF32);
  }
  const embed = await st.readF32(spec.global.embed.name);
  return {
    embed,
    layers,
    finalNorm: await st.readF32(spec.global.finalNorm.name),
    lmHead: spec.global.lmHead ? await st.readF32(spec.global.lmHead.name) : embed,
  };
}
