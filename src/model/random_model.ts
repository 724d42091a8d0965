/**
 * Hugging Face Llama folders of any shape with seeded random weights: for timing paging and kernels at
 * real sizes without a model hub (scripts/make_random_model.ts, the offload probe of `deno task bench`).
 * NEVER for quality: the text such a model writes is noise.
 *
 * Writes config.json, model.safetensors (or shards of at most `shardBytes` plus
 * model.safetensors.index.json), and the bundled tiny tokenizer (its 2,048 ids are all < vocab).
 * Tensor data is generated and written in chunks, so a 7B-shaped model never sits in memory.
 *
 * @module
 */

import { type DType, DTYPE_BYTES, f32ToBf16Bits, f32ToF16Bits } from "./dtype.ts";
import { parseConfig } from "./config.ts";
import { llamaTensorSpec, specTensors } from "./weights.ts";
import { safetensorsHeader, type TensorLayout } from "./safetensors_write.ts";
import { formatBytes } from "../util/bytes.ts";

/** Token ids of the bundled tiny tokenizer copied into every folder: vocab_size must be at least this. */
export const BUNDLED_TOKENIZER_IDS = 2048;

/** Llama-family shapes (dims of published models; weights random). */
export const PRESETS: Record<string, Record<string, number | boolean>> = {
  // TinyLlama-1.1B's shape.
  "1b": {
    hidden_size: 2048,
    num_hidden_layers: 22,
    num_attention_heads: 32,
    num_key_value_heads: 4,
    intermediate_size: 5632,
    vocab_size: 32000,
    max_position_embeddings: 2048,
    tie_word_embeddings: false,
  },
  // Llama-2-7B's shape.
  "7b": {
    hidden_size: 4096,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    intermediate_size: 11008,
    vocab_size: 32000,
    max_position_embeddings: 4096,
    tie_word_embeddings: false,
  },
  // A few MB: for tests of the script itself.
  "test": {
    hidden_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    intermediate_size: 176,
    vocab_size: 2048,
    max_position_embeddings: 256,
    tie_word_embeddings: true,
  },
};

/**
 * A complete HF Llama config.json object from `dims` (any field given wins): the defaults every Llama
 * folder carries (architecture, norm eps, rope theta, BOS/EOS ids, MHA unless kv heads are given).
 */
export function llamaConfig(dims: Record<string, unknown>, dtype: DType = "F16"): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    num_key_value_heads: dims.num_attention_heads,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: dtype === "F32" ? "float32" : dtype === "F16" ? "float16" : "bfloat16",
    ...dims,
  };
}

/** xorshift32 uniform in [-1, 1): fast enough for billions of values. */
function fillUniform(out: Float32Array, state: { s: number }, scale: number, offset: number): void {
  let s = state.s;
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = offset + ((s >>> 0) / 2 ** 31 - 1) * scale;
  }
  state.s = s;
}

function encode(x: Float32Array, dtype: DType): Uint8Array {
  if (dtype === "F32") return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  const bits = dtype === "F16" ? f32ToF16Bits(x) : f32ToBf16Bits(x);
  return new Uint8Array(bits.buffer);
}

/** Write the folder; returns the bytes of weights written. */
export async function makeRandomModel(
  out: string,
  raw: Record<string, unknown>,
  opts: { dtype: DType; seed: number; shardBytes: number; log?: (l: string) => void },
): Promise<number> {
  const config = parseConfig(raw, `${out}/config.json`);
  if (config.vocabSize < BUNDLED_TOKENIZER_IDS) {
    throw new RangeError(
      `--vocab ${config.vocabSize} (vocab_size) is below the bundled tokenizer's ${
        BUNDLED_TOKENIZER_IDS.toLocaleString("en-US")
      } ids: the folder would not load (token ids >= vocab); give --vocab ${BUNDLED_TOKENIZER_IDS} or more`,
    );
  }
  const tensors: TensorLayout[] = specTensors(llamaTensorSpec(config)).map((t) => ({
    name: t.name,
    shape: t.shape,
    dtype: t.shape.length === 1 ? "F32" : opts.dtype, // norms in f32, like many checkpoints
  }));
  const bytesOf = (t: TensorLayout) => t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
  // Greedy sharding in spec order (embeddings, head, then layer by layer).
  const shards: TensorLayout[][] = [[]];
  let cur = 0;
  for (const t of tensors) {
    if (cur > 0 && cur + bytesOf(t) > opts.shardBytes) {
      shards.push([]);
      cur = 0;
    }
    shards[shards.length - 1].push(t);
    cur += bytesOf(t);
  }
  await Deno.mkdir(out, { recursive: true });
  for await (const _ of Deno.readDir(out)) throw new Error(`${out} is not empty; refusing to overwrite`);
  await Deno.writeTextFile(`${out}/config.json`, JSON.stringify(raw, null, 2) + "\n");
  const tokDir = new URL("../../weights/tiny/target/", import.meta.url);
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
    await Deno.copyFile(new URL(f, tokDir), `${out}/${f}`);
  }
  const names = shards.length === 1
    ? ["model.safetensors"]
    : shards.map((_, i) =>
      `model-${String(i + 1).padStart(5, "0")}-of-${String(shards.length).padStart(5, "0")}.safetensors`
    );
  const state = { s: (opts.seed * 2654435761 + 1) >>> 0 || 1 };
  const chunk = new Float32Array(1 << 22);
  let written = 0;
  const t0 = performance.now();
  const weightMap: Record<string, string> = {};
  for (let si = 0; si < shards.length; si++) {
    const { header } = safetensorsHeader(shards[si], {
      format: "pt",
      generator: "specdec scripts/make_random_model.ts (random weights, not a trained model)",
      seed: String(opts.seed),
    });
    const f = await Deno.open(`${out}/${names[si]}`, { write: true, create: true, truncate: true });
    try {
      await writeAll(f, header);
      for (const t of shards[si]) {
        weightMap[t.name] = names[si];
        const count = t.shape.reduce((a, b) => a * b, 1);
        const norm = t.shape.length === 1;
        // Uniform with the variance of N(0, 1/cols): activations keep their scale through the layers.
        const scale = norm ? 0.1 : Math.sqrt(3 / t.shape[1]);
        for (let i = 0; i < count; i += chunk.length) {
          const part = chunk.subarray(0, Math.min(chunk.length, count - i));
          fillUniform(part, state, scale, norm ? 1 : 0);
          await writeAll(f, encode(part, t.dtype));
        }
        written += bytesOf(t);
      }
    } finally {
      f.close();
    }
    opts.log?.(
      `  ${names[si]}: ${formatBytes(written)} written, ${
        (written / 1e6 / ((performance.now() - t0) / 1000)).toFixed(0)
      } MB/s`,
    );
  }
  if (shards.length > 1) {
    await Deno.writeTextFile(
      `${out}/model.safetensors.index.json`,
      JSON.stringify({ metadata: { total_size: written }, weight_map: weightMap }, null, 2) + "\n",
    );
  }
  return written;
}

async function writeAll(f: Deno.FsFile, b: Uint8Array): Promise<void> {
  let off = 0;
  while (off < b.length) off += await f.write(b.subarray(off));
}
