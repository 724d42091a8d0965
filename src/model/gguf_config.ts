/**
 * A GGUF file's metadata as a {@link ModelConfig}: the `llama.*` hyper-parameters become the HF-style
 * config.json object that {@link parseConfig} validates, so a GGUF model is checked by the same rules as
 * a Hugging Face folder, and every refusal names the GGUF key (parseConfig's field names are mapped back).
 *
 * Mapping (prefix `llama.`):
 *   block_count -> num_hidden_layers        embedding_length -> hidden_size
 *   feed_forward_length -> intermediate_size  attention.head_count -> num_attention_heads
 *   attention.head_count_kv -> num_key_value_heads (default: head_count)
 *   attention.key_length -> head_dim (optional; value_length must agree)
 *   rope.freq_base -> rope_theta (default 10000)
 *   attention.layer_norm_rms_epsilon -> rms_norm_eps        context_length -> max_position_embeddings
 *   vocab_size (else the length of tokenizer.ggml.tokens) -> vocab_size
 *   rope.scaling.type / rope.scaling.factor (or the legacy rope.scale_linear) -> rope_scaling (linear only)
 *   no `output.weight` tensor -> tie_word_embeddings
 *   tokenizer.ggml.bos_token_id -> bos_token_id
 *   tokenizer.ggml.eos_token_id (+ eot_token_id, eom_token_id: both end a turn) -> eos_token_id
 * rope.dimension_count, when given, must equal the head dim: this engine rotates the whole head.
 *
 * @module
 */

import { ConfigError, type ModelConfig, parseConfig } from "./config.ts";
import type { GgufFile } from "./gguf.ts";

/** The only `general.architecture` this engine runs. */
export const GGUF_ARCHITECTURE = "llama";

/** RoPE scaling types of `llama.rope.scaling.type` this engine implements. */
const ROPE_SCALING_TYPES = ["none", "linear"];

/**
 * The model config of GGUF file `f` (see the module doc for the key mapping). Throws a
 * {@link ConfigError} naming the file and the GGUF key (CheckpointError for a key of the wrong type).
 */
export function ggufConfig(f: GgufFile): ModelConfig {
  const where = f.path;
  const arch = f.value("general.architecture");
  if (arch !== GGUF_ARCHITECTURE) {
    throw new ConfigError(
      `${where}: metadata "general.architecture" is ${
        arch === undefined ? "missing" : JSON.stringify(arch)
      }; only "${GGUF_ARCHITECTURE}" is supported`,
    );
  }
  const k = (s: string) => `${GGUF_ARCHITECTURE}.${s}`;
  const has = (key: string) => f.metadata.has(key);
  // HF field -> the GGUF key it came from, to name the key in parseConfig's refusals.
  const keys: Record<string, string> = {};
  const raw: Record<string, unknown> = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
  };
  const set = (field: string, key: string, value: unknown) => {
    raw[field] = value;
    keys[field] = key;
  };
  set("num_hidden_layers", k("block_count"), f.uint(k("block_count")));
  set("hidden_size", k("embedding_length"), f.uint(k("embedding_length")));
  set("intermediate_size", k("feed_forward_length"), f.uint(k("feed_forward_length")));
  set("num_attention_heads", k("attention.head_count"), f.uint(k("attention.head_count")));
  keys.num_key_value_heads = k("attention.head_count_kv");
  if (has(k("attention.head_count_kv"))) {
    raw.num_key_value_heads = f.uint(k("attention.head_count_kv"));
  }
  if (has(k("attention.key_length"))) {
    const kl = f.uint(k("attention.key_length"));
    if (has(k("attention.value_length")) && f.uint(k("attention.value_length")) !== kl) {
      throw new ConfigError(
        `${where}: metadata "${k("attention.value_length")}" is ${f.uint(k("attention.value_length"))} but "${
          k("attention.key_length")
        }" is ${kl}; different key and value head sizes are not supported`,
      );
    }
    set("head_dim", k("attention.key_length"), kl);
  } else {
    // parseConfig derives hidden_size / num_attention_heads and refuses an odd or fractional result.
    keys.head_dim = `${k("embedding_length")}" / "${k("attention.head_count")}`;
  }
  set("max_position_embeddings", k("context_length"), f.uint(k("context_length")));
  set("rms_norm_eps", k("attention.layer_norm_rms_epsilon"), f.number(k("attention.layer_norm_rms_epsilon")));
  keys.rope_theta = k("rope.freq_base");
  if (has(k("rope.freq_base"))) raw.rope_theta = f.number(k("rope.freq_base"));
  if (has(k("vocab_size"))) set("vocab_size", k("vocab_size"), f.uint(k("vocab_size")));
  else if (has("tokenizer.ggml.tokens")) {
    set("vocab_size", "tokenizer.ggml.tokens", f.strings("tokenizer.ggml.tokens").length);
  } else {
    throw new ConfigError(
      `${where}: neither metadata "${k("vocab_size")}" nor "tokenizer.ggml.tokens" gives the vocabulary size`,
    );
  }
  const scaling = ropeScaling(f);
  if (scaling) set("rope_scaling", scaling.key, scaling.value);
  raw.tie_word_embeddings = f.get("output.weight") === undefined;
  if (has("tokenizer.ggml.bos_token_id")) {
    set("bos_token_id", "tokenizer.ggml.bos_token_id", f.uint("tokenizer.ggml.bos_token_id"));
  }
  const eos: number[] = [];
  for (const key of ["eos_token_id", "eot_token_id", "eom_token_id"].map((s) => `tokenizer.ggml.${s}`)) {
    if (!has(key)) continue;
    const id = f.uint(key);
    if (!eos.includes(id)) eos.push(id);
    keys.eos_token_id ??= key;
  }
  if (eos.length) raw.eos_token_id = eos;

  let config: ModelConfig;
  try {
    config = parseConfig(raw, where);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    // `<where>: field "a.b": message` -> `<where>: metadata "<gguf key>" (config field a.b): message`.
    throw new ConfigError(e.message.replace(/^(.*?): field "([^"]*)":/, (all, src, field: string) => {
      const key = keys[field.split(".")[0]];
      return key ? `${src}: metadata "${key}" (config field ${field}):` : all;
    }));
  }
  if (has(k("rope.dimension_count"))) {
    const rd = f.uint(k("rope.dimension_count"));
    if (rd !== config.headDim) {
      throw new ConfigError(
        `${where}: metadata "${k("rope.dimension_count")}" is ${rd} but the head dim is ${config.headDim}; ` +
          `partial rotary embeddings are not supported`,
      );
    }
  }
  return config;
}

/** `rope_scaling` for the raw config from `llama.rope.scaling.*` (or legacy `rope.scale_linear`). */
function ropeScaling(f: GgufFile): { key: string; value: unknown } | undefined {
  const typeKey = `${GGUF_ARCHITECTURE}.rope.scaling.type`;
  const factorKey = `${GGUF_ARCHITECTURE}.rope.scaling.factor`;
  const legacyKey = `${GGUF_ARCHITECTURE}.rope.scale_linear`;
  if (f.metadata.has(typeKey)) {
    const type = f.string(typeKey);
    if (!ROPE_SCALING_TYPES.includes(type)) {
      throw new ConfigError(
        `${f.path}: metadata "${typeKey}" is ${JSON.stringify(type)}, which is not supported (supported: ${
          ROPE_SCALING_TYPES.map((t) => `"${t}"`).join(", ")
        })`,
      );
    }
    if (type === "none") return undefined;
    const factor = f.number(factorKey);
    // llama.cpp treats a factor of 0 (or 1) as no scaling.
    if (factor === 0 || factor === 1) return undefined;
    return { key: factorKey, value: { rope_type: "linear", factor } };
  }
  if (f.metadata.has(legacyKey)) {
    const factor = f.number(legacyKey);
    if (factor === 0 || factor === 1) return undefined;
    return { key: legacyKey, value: { rope_type: "linear", factor } };
  }
  return undefined;
}
