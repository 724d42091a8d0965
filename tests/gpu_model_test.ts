/**
 * The whole GPU forward pass against the CPU reference: prefill, tree mask, commit, chunked prefill,
 * GPU-side greedy decoding; and on the bundled tiny pair, token identity with golden.json.
 */
import assert from "node:assert/strict";
import { Gpu } from "../src/gpu/device.ts";
import { GpuLlama, type GpuLlamaOptions } from "../src/gpu/llama/model.ts";
import * as ops from "../src/gpu/ops.ts";
import { PipelineCache } from "../src/gpu/pipelines.ts";
import { Recorder, UniformArena } from "../src/gpu/recorder.ts";
import { destroyMatrix, uploadMatrix } from "../src/gpu/tensor.ts";
import { type DType, toF32 } from "../src/model/dtype.ts";
import {
  DEFAULT_DRAFT_DIR,
  DEFAULT_TARGET_DIR,
  openCheckpoint,
  openModelFolder,
} from "../src/model/folder.ts";
import { loadCpuModel } from "../src/cpu/load.ts";
import { argmax } from "../src/model/sampling.ts";
import type { CausalLM, ForwardInput } from "../src/model/causal_lm.ts";
import { randomTensors, SMALL_CONFIG, smallConfig, writeModelFolder } from "./fixtures/random_model.ts";
import { TREE, treeInput } from "./fixtures/tree_input.ts";
import { maxRelErr } from "./fixtures/numeric.ts";

const gpu = await Gpu.acquire();

/** Tolerance for GPU vs CPU logits: f32 with different summation order, relative to the row maximum. */
const TOL_F32 = 2e-4;

async function both(input: ForwardInput, cpu: CausalLM, g: CausalLM): Promise<[Float32Array, Float32Array]> {
  return [await cpu.forward(input), await g.forward(input)];
}

/** Logit tolerance with an f16 KV cache: keys and values rounded once to 11 significant bits. */
const TOL_F16_KV = 3e-3;

const PREFIX = [1, 17, 40, 5, 63, 22, 9, 70, 3];
// [weights, load options, config overrides, label]: flash attention (the default), the classic kernel
// forced, an f16 KV cache, and head_dim 10 (classic by default; f16 k through the unfused rope pack path:
// hidden 60 is no multiple of 8).
const VARIANTS: [DType, GpuLlamaOptions, Record<string, unknown>, string][] = [
  ["F16", {}, {}, ""],
  ["BF16", {}, {}, ""],
  ["F32", {}, {}, ""],
  ["F16", { attention: "classic" }, {}, ", classic attention"],
  ["F16", { kvDtype: "f16" }, {}, ", f16 KV"],
  ["F32", { kvDtype: "f16" }, { hidden_size: 60 }, ", f16 KV, head_dim 10, unfused"],
];
for (const [dtype, opts, over, label] of VARIANTS) {
  Deno.test(`gpu model (${dtype}, GQA, odd sizes${label}): prefill, tree mask and commit match the CPU`, async () => {
    const TOL = opts.kvDtype === "f16" ? TOL_F16_KV : TOL_F32;
    const dir = Deno.makeTempDirSync({ prefix: "gpu_model_" });
    await writeModelFolder(dir, { ...SMALL_CONFIG, ...over }, randomTensors(smallConfig(over), 5, dtype));
    const f = await openCheckpoint(dir);
    const cpu = await loadCpuModel(f);
    const g = await GpuLlama.load(gpu, f, { ...opts, maxBatch: 8 }); // 8 < prompt: exercises chunked prefill
    const prompt = {
      tokens: Int32Array.from(PREFIX),
      positions: Int32Array.from(PREFIX, (_, i) => i),
      logitRows: [PREFIX.length - 2, PREFIX.length - 1],
    };
    const [c1, g1] = await both(prompt, cpu, g);
    assert.ok(maxRelErr(g1, c1) < TOL, `prefill logits err ${maxRelErr(g1, c1)}`);
    const [c2, g2] = await both(treeInput(PREFIX.length), cpu, g);
    assert.ok(maxRelErr(g2, c2) < TOL, `tree logits err ${maxRelErr(g2, c2)}`);
    const V = cpu.config.vocabSize;
    for (let i = 0; i < TREE.length; i++) {
      assert.equal(
        argmax(g2.subarray(i * V, (i + 1) * V)),
        argmax(c2.subarray(i * V, (i + 1) * V)),
        `node ${i}`,
      );
    }
    // Keep path n0 -> n2 -> n4 (slots past+0, past+2, past+4), then decode one more token.
    const past = PREFIX.length, accepted = [past, past + 2, past + 4];
    cpu.kv.commit(past, accepted);
    await g.kv.commit(past, accepted);
    assert.equal(g.kv.length, past + 3);
    const next = { tokens: Int32Array.of(50), positions: Int32Array.of(past + 3) };
    const [c3, g3] = await both(next, cpu, g);
    assert.ok(maxRelErr(g3, c3) < TOL, `after-commit logits err ${maxRelErr(g3, c3)}`);
    // ... and against recomputing the accepted sequence from scratch on the GPU.
    const fresh = await GpuLlama.load(gpu, f, opts);
    const seq = [...PREFIX, TREE[0], TREE[2], TREE[4], 50];
    const all = await fresh.forward({
      tokens: Int32Array.from(seq),
      positions: Int32Array.from(seq, (_, i) => i),
      logitRows: [seq.length - 1],
    });
    assert.ok(maxRelErr(g3, all) < TOL, `commit vs recompute err ${maxRelErr(g3, all)}`);
    g.dispose();
    fresh.dispose();
    f.checkpoint.close();
  });
}

Deno.test("gpu model: bad inputs are refused with the limit named", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "gpu_model_" });
  await writeModelFolder(dir, SMALL_CONFIG, randomTensors(smallConfig(), 5, "F16"));
  const f = await openCheckpoint(dir);
  const g = await GpuLlama.load(gpu, f, { capacity: 16, maxBatch: 4 });
  await assert.rejects(
    g.forward({ tokens: new Int32Array(17), positions: new Int32Array(17) }),
    /exceed the KV capacity 16/,
  );
  await assert.rejects(
    g.forward({ tokens: Int32Array.of(77), positions: Int32Array.of(0) }),
    /outside vocabulary/,
  );
  await assert.rejects(
    g.forward({
      tokens: new Int32Array(5),
      positions: Int32Array.of(0, 1, 2, 3, 4),
      mask: new Uint8Array(25).fill(1),
    }),
    /masked forward of 5 tokens exceeds maxBatch 4/,
  );
  g.dispose();
  f.checkpoint.close();
});

interface Golden {
  max_tokens: number;
  cases: { prompt_ids: number[]; target: number[]; draft: number[] }[];
}
const readGolden = async (): Promise<Golden> =>
  JSON.parse(await Deno.readTextFile(new URL("../weights/tiny/golden.json", import.meta.url)));

for (const [name, dir] of [["target", DEFAULT_TARGET_DIR], ["draft", DEFAULT_DRAFT_DIR]] as const) {
  Deno.test(`gpu model: tiny ${name} greedy decoding on the GPU equals golden.json`, async () => {
    const golden = await readGolden();
    const folder = await openModelFolder(dir);
    const g = await GpuLlama.load(gpu, folder);
    for (const c of golden.cases) {
      g.kv.truncate(0);
      const ids = await g.forwardIds({
        tokens: Int32Array.from(c.prompt_ids),
        positions: Int32Array.from(c.prompt_ids, (_, i) => i),
        logitRows: [c.prompt_ids.length - 1],
      }, { kind: "argmax" });
      const out = [ids[0]];
      // The rest in chunks of 16 tokens per submission, argmax on the GPU.
      while (out.length < golden.max_tokens) {
        const steps = Math.min(16, golden.max_tokens - out.length);
        out.push(...await g.decodeSteps(out[out.length - 1], steps, { kind: "argmax" }));
      }
      assert.deepEqual(out, c[name]);
    }
    // One submission and one readback per 16 tokens (plus the prefill's).
    assert.equal(g.counters.readbacks, golden.cases.length * (1 + Math.ceil((golden.max_tokens - 1) / 16)));
    g.dispose();
    folder.checkpoint.close();
  });
}

Deno.test("gpu model: tiny target with an f16 KV cache decodes greedily as with f32, in half the cache bytes", async () => {
  const golden = await readGolden();
  const folder = await openModelFolder(DEFAULT_TARGET_DIR);
  const greedy = async (g: GpuLlama, prompt: number[], steps: number) => {
    g.kv.truncate(0);
    const ids = await g.forwardIds({
      tokens: Int32Array.from(prompt),
      positions: Int32Array.from(prompt, (_, i) => i),
      logitRows: [prompt.length - 1],
    }, { kind: "argmax" });
    return [ids[0], ...await g.decodeSteps(ids[0], steps - 1, { kind: "argmax" })];
  };
  const g32 = await GpuLlama.load(gpu, folder), g16 = await GpuLlama.load(gpu, folder, { kvDtype: "f16" });
  assert.equal(g16.kv.bytes * 2, g32.kv.bytes);
  assert.equal(g16.kv.dtype, "f16");
  for (const c of golden.cases) {
    const a = await greedy(g32, c.prompt_ids, 24), b = await greedy(g16, c.prompt_ids, 24);
    assert.deepEqual(a, c.target.slice(0, 24), "f32 KV equals golden");
    assert.deepEqual(b, a, `f16 KV greedy for prompt ${c.prompt_ids.slice(0, 4)}...`);
  }
  g32.dispose();
  g16.dispose();
  folder.checkpoint.close();
});

Deno.test("gpu model: a 7B-sized embedding (32000 x 4096 F16, 250 MiB) loads split across bindings", async () => {
  const rows = 32000, cols = 4096;
  const bits = new Uint16Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) bits[base + c] = (r * 7 + c) & 0x3bff;
  }
  const table = uploadMatrix(gpu, "embed_7b", new Uint8Array(bits.buffer), [rows, cols], "F16");
  const limit = gpu.limits.maxStorageBufferBindingSize;
  assert.ok(table.parts.length >= Math.ceil((rows * cols * 2) / limit), `${table.parts.length} parts`);
  for (const p of table.parts) assert.ok(p.rows * cols * 2 <= limit);
  const toks = Uint32Array.of(0, 16383, 16384, 31999, 20000);
  const ctx = { rec: new Recorder(gpu, new UniformArena(gpu)), pipelines: new PipelineCache(gpu) };
  const out = gpu.createBuffer("out", toks.length * cols * 4);
  await ops.embedding(ctx, {
    table,
    tokens: gpu.createBufferWith("toks", toks),
    tokOffset: 0,
    out,
    n: toks.length,
  });
  await ctx.rec.submit();
  const got = new Float32Array(await gpu.read(out, toks.length * cols * 4));
  toks.forEach((t, i) => {
    const want = toF32(new Uint8Array(bits.buffer, t * cols * 2, cols * 2), "F16");
    for (let c = 0; c < cols; c += 97) assert.equal(got[i * cols + c], want[c], `token ${t} column ${c}`);
  });
  destroyMatrix(table);
  out.destroy();
});

Deno.test("gpu model: tiny target, tree-masked forward logits equal the CPU reference", async () => {
  const folder = await openModelFolder(DEFAULT_TARGET_DIR);
  const cpu = await loadCpuModel(folder);
  const g = await GpuLlama.load(gpu, folder);
  const prompt = folder.tokenizer.encode("And it came to pass, when the king heard");
  const input = {
    tokens: Int32Array.from(prompt),
    positions: Int32Array.from(prompt, (_, i) => i),
    logitRows: [prompt.length - 1],
  };
  const [c1, g1] = await both(input, cpu, g);
  assert.ok(maxRelErr(g1, c1) < TOL_F32, `prefill err ${maxRelErr(g1, c1)}`);
  const [c2, g2] = await both(treeInput(prompt.length), cpu, g);
  assert.ok(maxRelErr(g2, c2) < TOL_F32, `tree err ${maxRelErr(g2, c2)}`);
  g.dispose();
  folder.checkpoint.close();
});
