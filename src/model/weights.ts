/**
 * The tensors a Llama checkpoint must hold, their expected shapes, and loading them as f32 for the CPU
 * reference. The GPU engine uses the same {@link llamaTensorSpec} and reads raw 16-bit bytes instead.
 *
 * @module
 */

import type { ModelConfig } from "./config.ts";
import { CheckpointError, SafetensorsModel } from "./safetensors.ts";

/** One expected tensor: HF name and shape. */
export interface TensorSpec {
  name: string;
  shape: number[];
}

/** Expected tensor names and shapes of a Llama checkpoint for config `c` (HF Linear weights are [out, in]). */
export function llamaTensorSpec(c: ModelConfig): { global: TensorSpec[]; layers: TensorSpec[][] } {
  const d = c.hiddenSize;
  const global: TensorSpec[] = [
    { name: "model.embed_tokens.weight", shape: [c.vocabSize, d] },
    { name: "model.norm.weight", shape: [d] },
  ];
  if (!c.tieWordEmbeddings) global.push({ name: "lm_head.weight", shape: [c.vocabSize, d] });
  const layers: TensorSpec[][] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const p = `model.layers.${l}.`;
    layers.push([
      { name: p + "input_layernorm.weight", shape: [d] },
      { name: p + "self_attn.q_proj.weight", shape: [c.qDim, d] },
      { name: p + "self_attn.k_proj.weight", shape: [c.kvDim, d] },
      { name: p + "self_attn.v_proj.weight", shape: [c.kvDim, d] },
      { name: p + "self_attn.o_proj.weight", shape: [d, c.qDim] },
      { name: p + "post_attention_layernorm.weight", shape: [d] },
      { name: p + "mlp.gate_proj.weight", shape: [c.intermediateSize, d] },
      { name: p + "mlp.up_proj.weight", shape: [c.intermediateSize, d] },
      { name: p + "mlp.down_proj.weight", shape: [d, c.intermediateSize] },
    ]);
  }
  return { global, layers };
}

/**
 * Check that every expected tensor is present with the expected shape. Some exporters write an
 * lm_head even for tied models; that is accepted (and ignored) when tie_word_embeddings is true.
 */
export function validateCheckpoint(st: SafetensorsModel, c: ModelConfig, dir: string): void {
  const spec = llamaTensorSpec(c);
  for (const t of [...spec.global, ...spec.layers.flat()]) {
    const info = st.get(t.name);
    if (!info) throw new CheckpointError(`${dir}: tensor "${t.name}" is missing from the checkpoint`);
    if (info.shape.length !== t.shape.length || info.shape.some((s, i) => s !== t.shape[i])) {
      throw new CheckpointError(
        `${info.file}: tensor "${t.name}" has shape [${info.shape}], expected [${t.shape}] from config.json`,
      );
    }
  }
}

/** One decoder layer's f32 weights (HF [out, in] row-major). */
export interface LayerWeightsF32 {
  /** (d) */
  attnNorm: Float32Array;
  /** (qDim, d) */
  wq: Float32Array;
  /** (kvDim, d) */
  wk: Float32Array;
  /** (kvDim, d) */
  wv: Float32Array;
  /** (d, qDim) */
  wo: Float32Array;
  /** (d) */
  mlpNorm: Float32Array;
  /** (hidden, d) */
  wGate: Float32Array;
  /** (hidden, d) */
  wUp: Float32Array;
  /** (d, hidden) */
  wDown: Float32Array;
}

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
export async function loadWeightsF32(st: SafetensorsModel, c: ModelConfig): Promise<LlamaWeightsF32> {
  const layers: LayerWeightsF32[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const p = `model.layers.${l}.`;
    const r = (n: string) => st.readF32(p + n + ".weight");
    layers.push({
      attnNorm: await r("input_layernorm"),
      wq: await r("self_attn.q_proj"),
      wk: await r("self_attn.k_proj"),
      wv: await r("self_attn.v_proj"),
      wo: await r("self_attn.o_proj"),
      mlpNorm: await r("post_attention_layernorm"),
      wGate: await r("mlp.gate_proj"),
      wUp: await r("mlp.up_proj"),
      wDown: await r("mlp.down_proj"),
    });
  }
  const embed = await st.readF32("model.embed_tokens.weight");
  return {
    embed,
    layers,
    finalNorm: await st.readF32("model.norm.weight"),
    lmHead: c.tieWordEmbeddings ? embed : await st.readF32("lm_head.weight"),
  };
}
