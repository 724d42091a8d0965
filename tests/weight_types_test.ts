/**
 * `--weights-dtype`: which type each matrix loads as (model/weight_types.ts), the Q4_0 quantizer, and the
 * loaded models: an F16 folder loaded as q8_0 on the GPU is the very model the Q8_0 GGUF of its weights
 * is (logits bit-identical), and a q8_0 / q4_0 load follows the CPU reference that computes in f32 with
 * the same quantized values (greedy tokens identical, logits close). Rows that are not whole 32-element
 * blocks stay as stored.
 */
import assert from "node:assert/strict";
import { convert } from "../scripts/convert_gguf.ts";
import { parseConfig } from "../src/model/config.ts";
import { openModelFolder } from "../src/model/folder.ts";
import { dequantize, quantizeQ4_0, quantizeQ8_0 } from "../src/model/ggml_quants.ts";
import { KERNEL_MATRIX_TYPES, TypedStore, withLoadedValues } from "../src/model/weight_types.ts";
import { GPU_WEIGHT_TYPES, gpuMatrices } from "../src/gpu/weight_layout.ts";
import { minPagedBudget } from "../src/gpu/paging/plan.ts";
import { type Backend, loadModel } from "../src/runtime/backend.ts";
import type { WeightsDtype } from "../src/model/weight_types.ts";
import { argmax } from "../src/model/sampling.ts";
import { BLOCKS_CONFIG, randomTensors, writeModelFolder } from "./fixtures/random_model.ts";

// Matrices of whole 32-element blocks except the 70-wide MLP of `odd`.
const RAW = BLOCKS_CONFIG;

const dir = await Deno.makeTempDir({ prefix: "weight_types_" });
const tensors = randomTensors(parseConfig(RAW), 7, "F16");
await writeModelFolder(`${dir}/f16`, RAW, tensors, { withTokenizer: true });
await writeModelFolder(
  `${dir}/odd`,
  { ...RAW, intermediate_size: 70 },
  randomTensors(
    parseConfig({ ...RAW, intermediate_size: 70 }),
    8,
    "F16",
  ),
  { withTokenizer: true },
);
await convert({ input: `${dir}/f16`, output: `${dir}/q8.gguf`, type: "Q8_0", warn: () => {} });
const TOKENS = [5, 900, 17, 2047, 3, 64, 1000];

/** `paged`: streamed from disk at every forward ("disk") or from the host-RAM layer cache ("ram"). */
async function run(
  path: string,
  backend: Backend,
  weightsDtype: WeightsDtype,
  steps = 0,
  paged?: "disk" | "ram",
) {
  const f = await openModelFolder(path);
  const gpuMemoryBudget = paged ? minPagedBudget(f.checkpoint, f.config, weightsDtype) : undefined;
  const hostMemoryBudget = paged === "disk" ? 0 : undefined;
  const m = await loadModel(f, backend, { weightsDtype, threads: 1, gpuMemoryBudget, hostMemoryBudget });
  try {
    const n = TOKENS.length;
    const logits = await m.model.forward({
      tokens: Int32Array.from(TOKENS),
      positions: Int32Array.from(TOKENS, (_, i) => i),
    });
    // Greedy continuation from the last row.
    const V = f.config.vocabSize, out: number[] = [];
    let next = argmax(logits.subarray((n - 1) * V, n * V));
    for (let s = 0; s < steps; s++) {
      out.push(next);
      const l = await m.model.forward({ tokens: Int32Array.of(next), positions: Int32Array.of(n + s) });
      next = argmax(l);
    }
    return { logits, tokens: out, weightBytes: m.weightBytes };
  } finally {
    m.close();
    f.checkpoint.close();
  }
}

Deno.test("weight types: auto keeps the stored type, f16 / q8_0 / q4_0 convert whole-block rows only", async () => {
  const f = await openModelFolder(`${dir}/odd`), g = await openModelFolder(`${dir}/q8.gguf`);
  try {
    const q = "model.layers.0.self_attn.q_proj.weight", down = "model.layers.0.mlp.down_proj.weight";
    const gate = "model.layers.0.mlp.gate_proj.weight";
    const st = f.checkpoint;
    assert.equal(gpuMatrices(st).get(q).type, "F16");
    assert.equal(gpuMatrices(st, "f16").get(q).type, "F16");
    for (
      const [want, type, quant] of [["q8_0", "Q8_0", quantizeQ8_0], ["q4_0", "Q4_0", quantizeQ4_0]] as const
    ) {
      const t = gpuMatrices(st, want);
      assert.equal(t.get(q).type, type);
      assert.equal(t.get(gate).type, type, "gate (70, 64): rows of 64 are whole blocks");
      assert.equal(t.get(down).type, "F16", "down (64, 70): rows of 70 stay as stored");
      const bytes = await t.read(q);
      assert.equal(bytes.byteLength, t.get(q).byteLength);
      assert.deepEqual(bytes, quant(await st.readF32(q)), `${want} = ggml's quantizer on the stored values`);
    }
    // A GGUF's blocks pass through as stored (not via an F16 copy); f16 dequantizes them.
    const gt = gpuMatrices(g.checkpoint);
    assert.equal(gt.get(q).type, "Q8_0");
    assert.deepEqual(await gt.read(q), (await g.checkpoint.readGgml!(q)).bytes);
    assert.equal(gpuMatrices(g.checkpoint, "f16").get(q).type, "F16");
    // A backend that does not read a type gets the store's float bytes.
    assert.equal(new TypedStore(g.checkpoint, "auto", new Set(["F16"])).get(q).type, "F16");
    // The reference's view: matrices in the loaded values, norms untouched, identity naming the option.
    const v = withLoadedValues(st, "q4_0");
    assert.deepEqual(await v.readF32(q), dequantize("Q4_0", quantizeQ4_0(await st.readF32(q)), 64 * 64));
    const norm = "model.layers.0.input_layernorm.weight";
    assert.deepEqual(await v.readF32(norm), await st.readF32(norm));
    assert.deepEqual(v.identity(), [...st.identity(), "weights q4_0"]);
  } finally {
    f.checkpoint.close();
    g.checkpoint.close();
  }
});

Deno.test("weight types: the GPU reads exactly the types the CPU reference's view (and wasm) assumes", () => {
  assert.deepEqual(new Set(GPU_WEIGHT_TYPES), KERNEL_MATRIX_TYPES);
});

Deno.test("Q4_0 quantizer: ggml's reference rounding on a hand-made block", () => {
  // max |x| = 2 at a negative value: d = -2 / -8 = 0.25 (exact in f16), q = min(15, trunc(x / d + 8.5)).
  const x = Float32Array.from({ length: 32 }, (_, i) => i === 3 ? -2 : (i - 16) / 10);
  const b = quantizeQ4_0(x);
  assert.equal(b.length, 18);
  assert.equal(b[0] | (b[1] << 8), 0x3400, "d = 0.25 as f16");
  const q = (i: number) => i < 16 ? b[2 + i] & 15 : b[2 + i - 16] >> 4;
  for (let i = 0; i < 32; i++) {
    const want = Math.min(15, Math.trunc(Math.fround(Math.fround(x[i] * 4) + 8.5)));
    assert.equal(q(i), want, `element ${i}`);
  }
  const back = dequantize("Q4_0", b, 32);
  for (let i = 0; i < 32; i++) assert.ok(Math.abs(back[i] - x[i]) <= 0.125 + 1e-7, `element ${i} round trip`);
  assert.throws(() => quantizeQ4_0(new Float32Array(31)), /Q4_0: 31 elements/);
});

Deno.test("gpu --weights-dtype q8_0 of an F16 folder = its Q8_0 GGUF; q8_0 / q4_0 follow the f32 reference", async () => {
  const asQ8 = await run(`${dir}/f16`, "gpu", "q8_0");
  const gguf = await run(`${dir}/q8.gguf`, "gpu", "auto");
  assert.deepEqual(asQ8.logits, gguf.logits, "the same blocks, the same kernels");
  const f16 = await run(`${dir}/f16`, "gpu", "auto");
  assert.notDeepEqual(f16.logits, asQ8.logits, "auto keeps the F16 weights");
  const asQ4 = await run(`${dir}/f16`, "gpu", "q4_0", 4);
  // Paged (the ring slots hold the blocks, refilled per forward, from disk or the host cache of device
  // layouts): the same model.
  assert.deepEqual(
    (await run(`${dir}/f16`, "gpu", "q4_0", 0, "disk")).logits,
    asQ4.logits,
    "q4_0 paged, disk",
  );
  const ram = await run(`${dir}/f16`, "gpu", "q4_0", 4, "ram");
  assert.deepEqual(ram.logits, asQ4.logits, "q4_0 paged, RAM");
  assert.deepEqual(ram.tokens, asQ4.tokens, "q4_0 paged, RAM: the decode steps refill from the cache");
  // GPU bytes (f32 norms included): Q8_0 is 34 and Q4_0 18 bytes per 32 weights against F16's 64.
  assert.ok(
    asQ4.weightBytes < asQ8.weightBytes && asQ8.weightBytes < 0.6 * f16.weightBytes,
    JSON.stringify([
      f16.weightBytes,
      asQ8.weightBytes,
      asQ4.weightBytes,
    ]),
  );
  for (const want of ["q8_0", "q4_0"] as const) {
    const gpu = await run(`${dir}/f16`, "gpu", want, 12), cpu = await run(`${dir}/f16`, "cpu", want, 12);
    assert.deepEqual(gpu.tokens, cpu.tokens, `${want}: greedy tokens`);
    let maxErr = 0;
    for (let i = 0; i < cpu.logits.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(gpu.logits[i] - cpu.logits[i]));
    }
    assert.ok(maxErr < 1e-3, `${want}: max |gpu - cpu| logit ${maxErr}`);
    // ... and the quantization is really there: the f32 reference of the stored F16 values differs.
    const exact = await run(`${dir}/f16`, "cpu", "auto");
    assert.notDeepEqual(exact.logits, cpu.logits);
  }
});

Deno.test("wasm --weights-dtype q4_0 loads Q4_0 blocks and follows the f32 reference closely", async () => {
  const wasm = await run(`${dir}/f16`, "wasm", "q4_0"), cpu = await run(`${dir}/f16`, "cpu", "q4_0");
  const f16 = await run(`${dir}/f16`, "wasm", "auto");
  assert.ok(wasm.weightBytes < 0.6 * f16.weightBytes, `${wasm.weightBytes} vs ${f16.weightBytes}`);
  let maxErr = 0;
  for (let i = 0; i < cpu.logits.length; i++) {
    maxErr = Math.max(maxErr, Math.abs(wasm.logits[i] - cpu.logits[i]));
  }
  // wasm quantizes activations to int16 per block for block weights (kernels/llama.c): close, not equal.
  assert.ok(maxErr < 2e-2, `max |wasm - cpu| logit ${maxErr}`);
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
