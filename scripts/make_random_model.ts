/**
 * Write a Hugging Face Llama folder of any shape with seeded random weights: for timing paging and
 * kernels at real sizes without a model hub. NEVER for quality: the text such a model writes is noise.
 *
 *   deno run -A scripts/make_random_model.ts --preset 1b --out /tmp/random-1b
 *   deno run -A scripts/make_random_model.ts --hidden 512 --layers 4 --heads 8 --kv-heads 2 \
 *     --intermediate 1408 --vocab 2048 --out /tmp/random-small
 *
 * Writes config.json, model.safetensors (or shards of at most --shard-bytes plus
 * model.safetensors.index.json), and the bundled tiny tokenizer (its 2,048 ids are all < vocab).
 * Tensor data is generated and written in chunks, so a 7B-shaped model never sits in memory.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type DType, isDType } from "../src/model/dtype.ts";
import { llamaConfig, makeRandomModel, PRESETS } from "../src/model/random_model.ts";
import { formatBytes, parseBytes } from "../src/util/bytes.ts";

const USAGE = `Usage: deno run -A scripts/make_random_model.ts (--preset ${
  Object.keys(PRESETS).join("|")
} | dims) --out DIR [options]

  --preset P            start from a preset shape (dims below override it)
  --hidden N --layers N --heads N --kv-heads N --intermediate N --vocab N --ctx N
  --tied                tie the LM head to the embeddings
  --dtype D             F16 (default), BF16 or F32
  --seed S              weight seed (default 1)
  --shard-bytes B       largest shard (default 2GB; larger models get model-0000x-of-0000n files + index)
  --out DIR             output folder (must not exist or be empty)
`;

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      preset: { type: "string" },
      hidden: { type: "string" },
      layers: { type: "string" },
      heads: { type: "string" },
      "kv-heads": { type: "string" },
      intermediate: { type: "string" },
      vocab: { type: "string" },
      ctx: { type: "string" },
      tied: { type: "boolean" },
      dtype: { type: "string", default: "F16" },
      seed: { type: "string", default: "1" },
      "shard-bytes": { type: "string", default: "2GB" },
      out: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  const fail = (m: string): never => {
    console.error(`${m}\n\n${USAGE}`);
    Deno.exit(2);
  };
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  if (!values.out) fail("--out is required");
  if (values.preset !== undefined && !PRESETS[values.preset]) fail(`unknown --preset ${values.preset}`);
  const dtype = values.dtype.toUpperCase();
  if (!isDType(dtype)) fail(`--dtype must be F16, BF16 or F32, got ${values.dtype}`);
  const int = (flag: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) fail(`--${flag} must be a positive integer, got ${v}`);
    return n;
  };
  const dims: Record<string, number | boolean | undefined> = {
    hidden_size: int("hidden", values.hidden),
    num_hidden_layers: int("layers", values.layers),
    num_attention_heads: int("heads", values.heads),
    num_key_value_heads: int("kv-heads", values["kv-heads"]),
    intermediate_size: int("intermediate", values.intermediate),
    vocab_size: int("vocab", values.vocab),
    max_position_embeddings: int("ctx", values.ctx),
    tie_word_embeddings: values.tied,
  };
  const base = values.preset ? PRESETS[values.preset] : {};
  const merged = { ...base, ...Object.fromEntries(Object.entries(dims).filter(([, v]) => v !== undefined)) };
  for (
    const k of ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"]
  ) {
    if (merged[k] === undefined) fail(`no ${k}: give --preset or every dimension`);
  }
  const raw = llamaConfig(merged, dtype as DType);
  try {
    const bytes = await makeRandomModel(values.out!, raw, {
      dtype: dtype as DType,
      seed: int("seed", values.seed)!,
      shardBytes: parseBytes("--shard-bytes", values["shard-bytes"]),
      log: (l) => console.error(l),
    });
    console.error(`wrote ${values.out}: ${formatBytes(bytes)} of random weights (not a trained model)`);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
