/**
 * A GGUF file is a model through the same code as an HF folder: a tiny random HF model converted by a
 * test-side writer that applies llama.cpp's q/k row permutation (tests/fixtures/gguf_model.ts) gives the
 * HF folder's logits on the CPU reference (F32, F16 and Q8_0 storage), and different ones without the
 * un-permutation; the config comes from the metadata with refusals naming the GGUF key; opening, model
 * identity, and (when `deno task models` fetched it) SmolLM2 end to end.
 */
import assert from "node:assert/strict";
import { loadCpuModel } from "../src/cpu/load.ts";
import { CpuLlama } from "../src/cpu/llama.ts";
import { f32ToF16Bits } from "../src/model/dtype.ts";
import { openCheckpoint, openModelFolder } from "../src/model/folder.ts";
import { GgufFile } from "../src/model/gguf.ts";
import { ropeSourceRow } from "../src/model/gguf_checkpoint.ts";
import { LAYER_ROLES, type LayerWeightsF32, llamaTensorSpec } from "../src/model/weights.ts";
import { modelId } from "../src/runtime/acceptance_store.ts";
import { sharedGpu } from "../src/runtime/backend.ts";
import { GpuLlama } from "../src/gpu/llama/model.ts";
import { minPagedBudget } from "../src/gpu/paging/plan.ts";
import { ggufFromHf, type GgufModelOptions, llamaCppPermute, T } from "./fixtures/gguf_model.ts";
import { randomTensors, SMALL_CONFIG, smallConfig, writeModelFolder } from "./fixtures/random_model.ts";
import { maxRelErr } from "./fixtures/numeric.ts";

const PROMPT = [1, 17, 40, 5, 63, 22, 9, 70, 3];
const input = {
  tokens: Int32Array.from(PROMPT),
  positions: Int32Array.from(PROMPT, (_, i) => i),
};

/** An HF folder and the GGUF of the same model (the folder holds exactly the GGUF's dequantized values). */
async function pair(raw: Record<string, unknown>, seed: number, o: GgufModelOptions = {}) {
  const dir = await Deno.makeTempDir({ prefix: "gguf_model_" });
  const { bytes, stored } = ggufFromHf(raw, randomTensors(smallConfig(raw), seed), o);
  await writeModelFolder(`${dir}/hf`, raw, stored);
  const gguf = `${dir}/model.gguf`;
  await Deno.writeFile(gguf, bytes);
  return { dir, hf: `${dir}/hf`, gguf };
}

/** Write just a GGUF of SMALL_CONFIG with `o` and return its path. */
async function ggufOnly(o: GgufModelOptions, raw: Record<string, unknown> = SMALL_CONFIG): Promise<string> {
  const path = `${await Deno.makeTempDir({ prefix: "gguf_model_" })}/m.gguf`;
  await Deno.writeFile(path, ggufFromHf(raw, randomTensors(smallConfig(raw), 3), o).bytes);
  return path;
}

async function logitsOf(path: string): Promise<Float32Array> {
  const f = await openCheckpoint(path);
  try {
    return await (await loadCpuModel(f)).forward(input);
  } finally {
    f.checkpoint.close();
  }
}

Deno.test("gguf: the q/k index map undoes llama.cpp's reshape + swapaxes, row by row", () => {
  // Within a head, HF rows come from GGUF rows [0, 2, 4, ..., 1, 3, 5, ...].
  assert.deepEqual(Array.from({ length: 8 }, (_, r) => ropeSourceRow(r, 8)), [0, 2, 4, 6, 1, 3, 5, 7]);
  assert.deepEqual(Array.from({ length: 4 }, (_, r) => ropeSourceRow(8 + r, 8)), [8, 10, 12, 14]);
  // Against the converter's own permutation: rows numbered by value, 3 heads of 6 rows, 2 columns.
  const rows = 18, cols = 2;
  const hf = Float32Array.from({ length: rows * cols }, (_, i) => Math.floor(i / cols));
  const gguf = llamaCppPermute(hf, rows, cols, 3);
  for (let r = 0; r < rows; r++) assert.equal(gguf[ropeSourceRow(r, 6) * cols], r, `HF row ${r}`);
});

// Q8_0 needs rows of whole 32-element blocks: a GQA shape whose every column count is a multiple of 32.
const Q8_CONFIG = { ...SMALL_CONFIG, hidden_size: 64, num_attention_heads: 4, intermediate_size: 96 };
for (
  const [label, raw, matrixType] of [
    ["F32", SMALL_CONFIG, "F32"],
    ["F16", SMALL_CONFIG, "F16"],
    ["Q8_0", Q8_CONFIG, "Q8_0"],
    ["Q8_0, tied", { ...Q8_CONFIG, tie_word_embeddings: true }, "Q8_0"],
  ] as const
) {
  Deno.test(`gguf (${label}): same logits as the HF folder on the CPU reference`, async () => {
    const p = await pair(raw, 11, { matrixType });
    try {
      const want = await logitsOf(p.hf);
      const got = await logitsOf(p.gguf);
      assert.ok(maxRelErr(got, want) < 1e-5, `rel err ${maxRelErr(got, want)}`);
    } finally {
      await Deno.remove(p.dir, { recursive: true });
    }
  });
}

Deno.test("gguf: without the un-permutation the logits differ", async () => {
  const p = await pair(SMALL_CONFIG, 12);
  try {
    const want = await logitsOf(p.hf);
    // The same file's tensors read straight from the GGUF reader: names mapped, rows as llama.cpp left them.
    const c = smallConfig();
    const file = await GgufFile.open(p.gguf);
    const spec = llamaTensorSpec(c);
    const read = (hf: string) => file.readF32(ggufOf(hf));
    const layers: LayerWeightsF32[] = [];
    for (const s of spec.layers) {
      const w: Partial<LayerWeightsF32> = {};
      for (const r of LAYER_ROLES) w[r] = await read(s[r].name);
      layers.push(w as LayerWeightsF32);
    }
    const cpu = new CpuLlama(c, {
      embed: await read(spec.global.embed.name),
      finalNorm: await read(spec.global.finalNorm.name),
      lmHead: await read(spec.global.lmHead!.name),
      layers,
    });
    file.close();
    const wrong = await cpu.forward(input);
    assert.ok(maxRelErr(wrong, want) > 1e-2, `rel err only ${maxRelErr(wrong, want)}`);
    // And a file written in HF row order (no permutation) is un-permuted into the wrong model too.
    const u = await pair(SMALL_CONFIG, 12, { permute: false });
    const e = maxRelErr(await logitsOf(u.gguf), await logitsOf(u.hf));
    await Deno.remove(u.dir, { recursive: true });
    assert.ok(e > 1e-2, `rel err only ${e}`);
  } finally {
    await Deno.remove(p.dir, { recursive: true });
  }
});

/** The GGUF name of an HF name, by the converter's table. */
function ggufOf(hf: string): string {
  return hf.replace(/^model\.layers\.(\d+)\./, "blk.$1.")
    .replace("model.embed_tokens.weight", "token_embd.weight")
    .replace("model.norm.weight", "output_norm.weight")
    .replace("lm_head.weight", "output.weight")
    .replace("input_layernorm", "attn_norm").replace("post_attention_layernorm", "ffn_norm")
    .replace("self_attn.q_proj", "attn_q").replace("self_attn.k_proj", "attn_k")
    .replace("self_attn.v_proj", "attn_v").replace("self_attn.o_proj", "attn_output")
    .replace("mlp.gate_proj", "ffn_gate").replace("mlp.up_proj", "ffn_up").replace(
      "mlp.down_proj",
      "ffn_down",
    );
}

Deno.test("gguf: readRaw is F16 of readF32 for quantized tensors, the file's bytes otherwise", async () => {
  const q = await openCheckpoint(await ggufOnly({ matrixType: "Q8_0" }, Q8_CONFIG));
  const st = q.checkpoint;
  try {
    const name = "model.layers.1.self_attn.k_proj.weight";
    const info = st.get(name)!;
    assert.deepEqual([info.dtype, info.shape, info.byteLength], ["F16", [32, 64], 32 * 64 * 2]);
    const f32 = await st.readF32(name);
    const raw = await st.readRaw(name);
    assert.deepEqual(new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2), f32ToF16Bits(f32));
    // Into a staging buffer of exactly byteLength (the pager's path), and a wrong size refused.
    const into = new Uint8Array(info.byteLength);
    assert.equal(await st.readRaw(name, into), into);
    assert.deepEqual(into, raw);
    await assert.rejects(st.readRaw(name, new Uint8Array(8)), /m\.gguf: destination of 8 bytes for tensor/);
    const norm = st.get("model.layers.0.input_layernorm.weight")!;
    assert.deepEqual([norm.dtype, norm.byteLength], ["F32", 64 * 4]);
    assert.deepEqual(st.get("model.embed_tokens.weight")!.shape, [77, 64]);
  } finally {
    st.close();
  }
});

Deno.test("gguf config: metadata mapped through parseConfig", async () => {
  const tokens = Array.from({ length: 77 }, (_, i) => `t${i}`);
  const g = await openCheckpoint(
    await ggufOnly({
      extraKv: [
        { key: "llama.rope.scaling.type", type: T.string, value: "linear" },
        { key: "llama.rope.scaling.factor", type: T.f32, value: 4 },
        { key: "tokenizer.ggml.eot_token_id", type: T.u32, value: 5 },
        { key: "tokenizer.ggml.tokens", type: T.array, elementType: T.string, value: tokens },
      ],
      dropKeys: ["llama.vocab_size", "llama.rope.freq_base"],
    }, { ...SMALL_CONFIG, tie_word_embeddings: true }),
  );
  try {
    const c = g.config;
    assert.equal(c.vocabSize, 77);
    assert.equal(c.ropeTheta, 10000, "rope.freq_base defaults to 10000");
    assert.deepEqual(c.ropeScaling, { kind: "linear", factor: 4 });
    assert.equal(c.tieWordEmbeddings, true, "no output.weight: tied");
    assert.equal(g.checkpoint.get("lm_head.weight"), undefined);
    assert.deepEqual([c.nLayers, c.hiddenSize, c.intermediateSize, c.nHeads, c.nKvHeads, c.headDim], [
      3,
      48,
      70,
      6,
      2,
      8,
    ]);
    assert.equal(c.maxPositions, 64);
    assert.equal(c.rmsNormEps, Math.fround(1e-5));
    assert.equal(c.bosTokenId, 1);
    assert.deepEqual(c.eosTokenIds, [2, 5]);
  } finally {
    g.checkpoint.close();
  }
  const untied = await openCheckpoint(await ggufOnly({}));
  assert.equal(untied.config.tieWordEmbeddings, false);
  assert.equal(untied.checkpoint.get("lm_head.weight")!.shape[0], 77);
  untied.checkpoint.close();
});

Deno.test("gguf config: refusals name the file and the GGUF key", async () => {
  const refuses = async (o: GgufModelOptions, ...parts: (string | RegExp)[]) => {
    const path = await ggufOnly(o);
    const e = await openCheckpoint(path).then(() => undefined, (e: Error) => e);
    assert.ok(e, `expected a refusal for ${JSON.stringify(o)}`);
    for (const p of [path, ...parts]) {
      if (typeof p === "string") assert.ok(e.message.includes(p), `"${e.message}" lacks "${p}"`);
      else assert.match(e.message, p);
    }
  };
  await refuses(
    { extraKv: [{ key: "general.architecture", type: T.string, value: "qwen2" }] },
    `metadata "general.architecture" is "qwen2"`,
    `only "llama"`,
  );
  await refuses({ dropKeys: ["llama.block_count"] }, `metadata "llama.block_count" is missing`);
  await refuses(
    { dropKeys: ["llama.vocab_size"] },
    `neither metadata "llama.vocab_size" nor "tokenizer.ggml.tokens" gives the vocabulary size`,
  );
  await refuses(
    { extraKv: [{ key: "llama.attention.head_count_kv", type: T.u32, value: 4 }] },
    `metadata "llama.attention.head_count_kv"`,
    "does not divide",
  );
  await refuses(
    { extraKv: [{ key: "llama.block_count", type: T.u32, value: 0 }] },
    `metadata "llama.block_count" (config field num_hidden_layers)`,
  );
  await refuses(
    { extraKv: [{ key: "llama.rope.dimension_count", type: T.u32, value: 4 }] },
    `metadata "llama.rope.dimension_count" is 4 but the head dim is 8`,
  );
  await refuses(
    { extraKv: [{ key: "llama.rope.scaling.type", type: T.string, value: "yarn" }] },
    `metadata "llama.rope.scaling.type" is "yarn", which is not supported`,
  );
  await refuses(
    { extraKv: [{ key: "llama.context_length", type: T.string, value: "long" }] },
    `metadata "llama.context_length" must be an unsigned integer, got string`,
  );
  await refuses(
    { extraTensors: [{ name: "rope_freqs.weight", shape: [4], data: new Float32Array(4) }] },
    `tensor "rope_freqs.weight"`,
    "per-frequency RoPE factors",
  );
  await refuses(
    { extraTensors: [{ name: "blk.0.attn_q.bias", shape: [48], data: new Float32Array(48) }] },
    `tensor "blk.0.attn_q.bias"`,
    "no place in a llama model",
  );
});

Deno.test("gguf: opening anything else names the path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gguf_model_" });
  try {
    await Deno.writeTextFile(`${dir}/weights.bin`, "not a model");
    await assert.rejects(openCheckpoint(`${dir}/weights.bin`), (e: Error) => {
      assert.match(
        e.message,
        /weights\.bin: not a model: expected a Hugging Face folder .* or a \.gguf file/,
      );
      return true;
    });
    await Deno.writeTextFile(`${dir}/fake.gguf`, "not a gguf file at all");
    await assert.rejects(openModelFolder(`${dir}/fake.gguf`), /fake\.gguf: not a GGUF file/);
    await assert.rejects(openCheckpoint(`${dir}/missing.gguf`), /missing\.gguf: cannot open/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gguf: modelId hashes the metadata and tensor infos (stable, and tells files apart)", async () => {
  const p = await pair(SMALL_CONFIG, 13);
  try {
    const id = async (path: string) => {
      const f = await openCheckpoint(path);
      try {
        return await modelId(f);
      } finally {
        f.checkpoint.close();
      }
    };
    const a = await id(p.gguf);
    assert.match(a, /^[0-9a-f]{16}$/);
    assert.equal(await id(p.gguf), a);
    assert.notEqual(await id(p.hf), a);
    const other = await ggufOnly({ extraKv: [{ key: "general.name", type: T.string, value: "x" }] });
    assert.notEqual(await id(other), a);
    const c = await openCheckpoint(p.gguf);
    assert.equal(c.path, p.gguf, "path: what was opened");
    assert.equal(c.dir, p.dir, "dir: the folder of side files (caches, heldout.txt)");
    c.checkpoint.close();
  } finally {
    await Deno.remove(p.dir, { recursive: true });
  }
});

Deno.test("gguf (Q8_0) on the GPU, resident and paged: the CPU reference's logits to F16 rounding", async () => {
  const f = await openCheckpoint(await ggufOnly({ matrixType: "Q8_0" }, Q8_CONFIG));
  try {
    const last = { ...input, logitRows: [PROMPT.length - 2, PROMPT.length - 1] };
    const want = await (await loadCpuModel(f)).forward(last);
    const gpu = await sharedGpu();
    const budget = minPagedBudget(f.checkpoint, f.config); // streams layers through readRaw(name, into)
    for (const opts of [{}, { gpuMemoryBudget: budget }]) {
      const g = await GpuLlama.load(gpu, f, { maxBatch: 4, ...opts });
      try {
        assert.equal(g.paging !== undefined, opts.gpuMemoryBudget !== undefined);
        const got = await g.forward(last);
        // Weights rounded to F16 (2^-11 relative) through 3 layers: about 1e-3 of the logits' scale here.
        assert.ok(maxRelErr(got, want) < 5e-3, `rel err ${maxRelErr(got, want)} (${JSON.stringify(opts)})`);
      } finally {
        g.dispose();
      }
    }
  } finally {
    f.checkpoint.close();
  }
});

const SMOLLM2 = new URL("../weights/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", import.meta.url).pathname;
const haveSmol = await Deno.stat(SMOLLM2).then(() => true, () => false);
Deno.test({
  name: "gguf: SmolLM2-135M-Instruct (Q4_1) opens with its tokenizer and matches transformers' first logits",
  ignore: !haveSmol,
  fn: async () => {
    const f = await openModelFolder(SMOLLM2);
    try {
      const c = f.config;
      assert.deepEqual([c.nLayers, c.hiddenSize, c.nHeads, c.nKvHeads, c.intermediateSize, c.vocabSize], [
        30,
        576,
        9,
        3,
        1536,
        49152,
      ]);
      assert.deepEqual([c.ropeTheta, c.maxPositions, c.tieWordEmbeddings], [1e5, 8192, true]);
      assert.equal(f.tokenizer.vocabSize, 49152);
      const golden = JSON.parse(
        await Deno.readTextFile(new URL("./fixtures/smollm2/golden.json", import.meta.url)),
      );
      const prompt = golden.prompts[0];
      const ids: number[] = prompt.ids;
      const m = await loadCpuModel(f, ids.length);
      const logits = await m.forward({
        tokens: Int32Array.from(ids),
        positions: Int32Array.from(ids, (_, i) => i),
        logitRows: [ids.length - 1],
      });
      for (const [id, want] of prompt.top5[0].top as [number, number][]) {
        assert.ok(Math.abs(logits[id] - want) < 1e-3, `token ${id}: ${logits[id]} vs ${want}`);
      }
    } finally {
      f.checkpoint.close();
    }
  },
});
