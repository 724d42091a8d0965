/**
 * Hugging Face `config.json` for Llama-family models, validated with zod, plus the derived sizes every
 * other module uses (computed once here, never re-derived elsewhere).
 *
 * @module
 */

import { z } from "zod";

const posInt = z.number().int().positive();

/** The `rope_scaling` types we implement, and the fields each needs. */
const ROPE_SCALING_SCHEMAS = {
  llama3: z.object({
    factor: z.number().positive(),
    low_freq_factor: z.number().positive(),
    high_freq_factor: z.number().positive(),
    original_max_position_embeddings: posInt,
  }),
  linear: z.object({ factor: z.number().positive() }),
};
const ROPE_SCALING_TYPES = Object.keys(ROPE_SCALING_SCHEMAS) as (keyof typeof ROPE_SCALING_SCHEMAS)[];

/**
 * `rope_scaling`: null, or an object whose `rope_type` (or legacy `type`) is one we implement; an
 * unsupported type is refused by name, with the supported ones listed.
 */
const ropeScalingSchema = z.union([
  z.null(),
  z.looseObject({ rope_type: z.unknown().optional(), type: z.unknown().optional() }),
]).transform((r, ctx): RopeScaling => {
  if (r === null) return { kind: "none" };
  const supported = `supported: ${ROPE_SCALING_TYPES.map((t) => `"${t}"`).join(", ")}`;
  const given = r.rope_type ?? r.type;
  if (r.rope_type !== undefined && r.type !== undefined && r.rope_type !== r.type) {
    ctx.addIssue({
      code: "custom",
      message: `rope_type ${JSON.stringify(r.rope_type)} and type ${JSON.stringify(r.type)} disagree`,
    });
    return z.NEVER;
  }
  if (given === undefined || !ROPE_SCALING_TYPES.includes(given as keyof typeof ROPE_SCALING_SCHEMAS)) {
    ctx.addIssue({
      code: "custom",
      message: given === undefined
        ? `no rope_type given (${supported})`
        : `rope_type ${JSON.stringify(given)} is not supported (${supported})`,
    });
    return z.NEVER;
  }
  const kind = given as keyof typeof ROPE_SCALING_SCHEMAS;
  const p = ROPE_SCALING_SCHEMAS[kind].safeParse(r);
  if (!p.success) {
    for (const issue of p.error.issues) {
      ctx.addIssue({ code: "custom", message: `${kind}: ${issue.message}`, path: issue.path });
    }
    return z.NEVER;
  }
  if (kind === "linear") return { kind, factor: p.data.factor };
  const l = p.data as z.infer<typeof ROPE_SCALING_SCHEMAS.llama3>;
  return {
    kind,
    factor: l.factor,
    lowFreqFactor: l.low_freq_factor,
    highFreqFactor: l.high_freq_factor,
    originalMaxPositions: l.original_max_position_embeddings,
  };
});

/** The fields of config.json we read; unknown fields are ignored, unsupported values refused. */
export const hfConfigSchema = z.object({
  architectures: z.array(z.string()).optional(),
  model_type: z.string().optional(),
  vocab_size: posInt,
  hidden_size: posInt,
  intermediate_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: posInt.optional(),
  head_dim: posInt.nullish(),
  max_position_embeddings: posInt.default(2048),
  rms_norm_eps: z.number().positive().max(1).default(1e-6),
  rope_theta: z.number().positive().optional(),
  // transformers >= 5 writes rope_theta inside rope_parameters (and may omit the top-level field).
  rope_parameters: z.looseObject({ rope_theta: z.number().positive().optional() }).nullish(),
  rope_scaling: ropeScalingSchema.optional(),
  tie_word_embeddings: z.boolean().default(false),
  hidden_act: z.literal("silu", { message: 'only hidden_act "silu" (SwiGLU) is supported' }).default("silu"),
  attention_bias: z.literal(false, { message: "attention biases are not supported" }).default(false),
  mlp_bias: z.literal(false, { message: "MLP biases are not supported" }).default(false),
  bos_token_id: z.number().int().nonnegative().nullish(),
  eos_token_id: z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())]).nullish(),
  // A draft with a pruned vocabulary (FR-Spec): row i predicts target token ids[i]; one -1, the "other"
  // row. The rules between fields are checked in parseConfig (vocabMapOf).
  vocab_map: z.object({ vocab_size: posInt, ids: z.array(z.number().int()) }).optional(),
  // Quantize the float (F32/F16/BF16) matrices to this type when the wasm backend loads them (a small
  // draft shipped as F16 runs at Q8_0 speed); other backends read them as stored.
  load_as: z.literal("Q8_0", { message: 'the only load_as type is "Q8_0"' }).optional(),
});

/** The raw, validated config.json. */
export type HfConfig = z.infer<typeof hfConfigSchema>;

const SUPPORTED_ARCHS = ["LlamaForCausalLM", "MistralForCausalLM"];
const SUPPORTED_TYPES = ["llama", "mistral"];

/** Rope frequency scaling resolved from config.json. */
export type RopeScaling =
  | { kind: "none" }
  | { kind: "linear"; factor: number }
  | {
    kind: "llama3";
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositions: number;
  };

/**
 * A pruned vocabulary (config.json `vocab_map`): the model embeds and predicts only some of an outer
 * tokenizer's ids. Wrapped by model/vocab_map.ts into a model over the outer vocabulary.
 */
export interface VocabMap {
  /** Tokens of the outer vocabulary (the target's `vocab_size`). */
  outerVocabSize: number;
  /** (vocabSize) outer token id of each embedding / LM-head row; -1 at `otherRow`. */
  ids: Int32Array;
  /** The row every unmapped outer token is embedded as; its output logit is dropped. */
  otherRow: number;
}

/** Model hyper-parameters with every derived size computed once. */
export interface ModelConfig {
  /** Embedding / LM-head rows (with a {@link VocabMap}: the pruned rows, not the outer vocabulary). */
  vocabSize: number;
  /** Model width (dim). */
  hiddenSize: number;
  /** SwiGLU hidden width. */
  intermediateSize: number;
  nLayers: number;
  /** Query heads. */
  nHeads: number;
  /** Key/value heads (GQA: nHeads is a multiple of nKvHeads). */
  nKvHeads: number;
  headDim: number;
  /** nHeads * headDim: width of q and of the attention output. */
  qDim: number;
  /** nKvHeads * headDim: width of k and v. */
  kvDim: number;
  /** nHeads / nKvHeads: query heads sharing one KV head. */
  groupSize: number;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** Present for a draft with a pruned vocabulary. */
  vocabMap?: VocabMap;
  /** config.json `load_as`: the wasm backend quantizes float matrices to this type at load. */
  loadAs?: "Q8_0";
}

/** A config.json that cannot be used; the message names the file and the field. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/**
 * Validate a parsed config.json object and derive sizes.
 *
 * @param raw the parsed JSON
 * @param source file name used in error messages
 */
export function parseConfig(raw: unknown, source = "config.json"): ModelConfig {
  const r = hfConfigSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const field = issue.path.join(".") || "(root)";
    throw new ConfigError(`${source}: field "${field}": ${issue.message}`);
  }
  const c = r.data;
  if (c.model_type !== undefined && !SUPPORTED_TYPES.includes(c.model_type)) {
    throw new ConfigError(
      `${source}: field "model_type": "${c.model_type}" is not supported (supported: ${
        SUPPORTED_TYPES.join(", ")
      })`,
    );
  }
  if (c.architectures && !c.architectures.some((a) => SUPPORTED_ARCHS.includes(a))) {
    throw new ConfigError(
      `${source}: field "architectures": ${JSON.stringify(c.architectures)} is not supported ` +
        `(supported: ${SUPPORTED_ARCHS.join(", ")})`,
    );
  }
  const rp = c.rope_parameters?.rope_theta;
  if (rp !== undefined && c.rope_theta !== undefined && rp !== c.rope_theta) {
    throw new ConfigError(
      `${source}: field "rope_parameters.rope_theta": ${rp} disagrees with rope_theta ${c.rope_theta}`,
    );
  }
  const raw2 = raw as Record<string, unknown>;
  if (typeof raw2.sliding_window === "number" && raw2.sliding_window < c.max_position_embeddings) {
    throw new ConfigError(`${source}: field "sliding_window": sliding-window attention is not supported`);
  }
  const nKvHeads = c.num_key_value_heads ?? c.num_attention_heads;
  if (c.num_attention_heads % nKvHeads !== 0) {
    throw new ConfigError(
      `${source}: field "num_key_value_heads": ${nKvHeads} does not divide num_attention_heads ${c.num_attention_heads}`,
    );
  }
  const headDim = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new ConfigError(
      `${source}: field "head_dim": ${headDim} must be an even integer (RoPE rotates pairs)`,
    );
  }
  const eos = c.eos_token_id;
  const vocabMap = c.vocab_map && vocabMapOf(c.vocab_map, c.vocab_size, source);
  return {
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    nLayers: c.num_hidden_layers,
    nHeads: c.num_attention_heads,
    nKvHeads,
    headDim,
    qDim: c.num_attention_heads * headDim,
    kvDim: nKvHeads * headDim,
    groupSize: c.num_attention_heads / nKvHeads,
    maxPositions: c.max_position_embeddings,
    rmsNormEps: c.rms_norm_eps,
    ropeTheta: c.rope_theta ?? c.rope_parameters?.rope_theta ?? 10000,
    ropeScaling: c.rope_scaling ?? { kind: "none" },
    tieWordEmbeddings: c.tie_word_embeddings,
    bosTokenId: c.bos_token_id ?? null,
    eosTokenIds: eos == null ? [] : Array.isArray(eos) ? eos : [eos],
    ...(vocabMap ? { vocabMap } : {}),
    ...(c.load_as ? { loadAs: c.load_as } : {}),
  };
}

/**
 * `vocab_map` checked against the rows it maps: one entry per row (`vocab_size` of them), each an outer id
 * in [0, vocab_map.vocab_size) or -1 (the "other" row, exactly once), no id twice, at least one mapped.
 */
function vocabMapOf(m: { vocab_size: number; ids: number[] }, rows: number, source: string): VocabMap {
  const fail = (field: string, message: string): never => {
    throw new ConfigError(`${source}: field "vocab_map.${field}": ${message}`);
  };
  if (m.ids.length !== rows) {
    fail("ids", `has ${m.ids.length} entries but vocab_size is ${rows} (one per embedding row)`);
  }
  if (rows < 2) fail("ids", "maps no token (only the other row)");
  const rowOf = new Map<number, number>(); // outer id (or -1) -> first row holding it
  for (let i = 0; i < rows; i++) {
    const t = m.ids[i];
    if (t !== -1 && (t < 0 || t >= m.vocab_size)) {
      fail(`ids[${i}]`, `${t} is outside vocab_map.vocab_size ${m.vocab_size} (-1 marks the other row)`);
    }
    const first = rowOf.get(t);
    if (first !== undefined) {
      fail(
        `ids[${i}]`,
        t === -1 ? `a second -1 (the other row is ids[${first}])` : `${t} repeats ids[${first}]`,
      );
    }
    rowOf.set(t, i);
  }
  const otherRow = rowOf.get(-1);
  if (otherRow === undefined) fail("ids", `no entry is -1 (the other row, for tokens outside the map)`);
  return { outerVocabSize: m.vocab_size, ids: Int32Array.from(m.ids), otherRow: otherRow! };
}

/** Read and validate `dir/config.json`. */
export async function loadConfig(dir: string): Promise<ModelConfig> {
  const path = `${dir}/config.json`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError(`${path}: cannot read: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON: ${(e as Error).message}`);
  }
  return parseConfig(raw, path);
}

/**
 * RoPE inverse frequencies (length headDim/2) with the config's scaling applied.
 * inv_freq[i] = theta^(-2i/headDim); llama3 scaling divides low frequencies by `factor` and blends the
 * band between, exactly as transformers' `_compute_llama3_parameters`.
 */
export function ropeInvFreq(c: ModelConfig): Float64Array {
  const half = c.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / c.ropeTheta ** ((2 * i) / c.headDim);
  const s = c.ropeScaling;
  if (s.kind === "linear") {
    for (let i = 0; i < half; i++) inv[i] /= s.factor;
  } else if (s.kind === "llama3") {
    const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositions / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen < highWavelen) continue;
      if (wavelen > lowWavelen) {
        inv[i] /= s.factor;
      } else {
        const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) /
          (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (inv[i] / s.factor) + smooth * inv[i];
      }
    }
  }
  return inv;
}
