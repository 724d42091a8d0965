/**
 * Paged decoder layers: the planner's arithmetic, paged == resident forward passes with 2- and 3-slot
 * rings (prefill, multi-token decoding in one submission, tree masks, the speculative engine), budget
 * errors that state the bytes needed, and a checkpoint truncated on disk mid-run.
 */
import assert from "node:assert/strict";
import { Gpu } from "../src/gpu/device.ts";
import { GpuLlama } from "../src/gpu/llama/model.ts";
import { planPaging } from "../src/gpu/paging/plan.ts";
import { openCheckpoint, openModelFolder } from "../src/model/folder.ts";
import { argmax } from "../src/model/sampling.ts";
import { generateSpeculative } from "../src/speculative/engine.ts";
import { makeDrafter } from "../src/speculative/methods.ts";
import { randomTensors, SMALL_CONFIG, smallConfig, writeModelFolder } from "./fixtures/random_model.ts";
import { treeInput } from "./fixtures/tree_input.ts";

Deno.test("planPaging: resident when it fits, ring of 2..3 slots, resident layers, errors with bytes", () => {
  const base = { nLayers: 6, layerBytes: 100, baseBytes: 50 };
  assert.equal(planPaging({ ...base, budget: 650 }), undefined);
  assert.deepEqual(planPaging({ ...base, budget: 250 }), {
    residentLayers: 0,
    ringSlots: 2,
    layerBytes: 100,
    baseBytes: 50,
    gpuWeightBytes: 250,
    bytesPerForward: 600,
  });
  assert.equal(planPaging({ ...base, budget: 399 })!.ringSlots, 3);
  const p = planPaging({ ...base, budget: 550 })!; // 5 layers fit: 3 slots + 2 resident
  assert.equal(p.ringSlots, 3);
  assert.equal(p.residentLayers, 2);
  assert.equal(p.bytesPerForward, 400);
  assert.equal(planPaging({ ...base, budget: 550, maxRingSlots: 2 })!.residentLayers, 3);
  assert.throws(
    () => planPaging({ ...base, budget: 200, what: "weights/x" }),
    /budget of 200 bytes is too small for weights\/x.*need 50 bytes resident.*2 layer slots of 100 bytes, 250 bytes in all/,
  );
});

const gpu = await Gpu.acquire();
const config = smallConfig({ num_hidden_layers: 5 });
const raw = { ...SMALL_CONFIG, num_hidden_layers: 5 };
const dir = await Deno.makeTempDir({ prefix: "paging_" });
await writeModelFolder(dir, raw, randomTensors(config, 11, "F16"));
const ckpt = await openCheckpoint(dir);
const resident = await GpuLlama.load(gpu, ckpt, { maxBatch: 32 });
const layerBytes = 2 * config.hiddenSize *
  (config.qDim * 2 + config.kvDim * 2 + config.intermediateSize * 3);
const baseBytes = 2 * 2 * config.vocabSize * config.hiddenSize + (2 * 5 + 1) * config.hiddenSize * 4;

const PROMPT = [1, 17, 40, 5, 63, 22, 9, 70, 3, 12, 44];

/** Prefill, 3 rounds of 4-token GPU decoding, a tree forward: logits and ids of every stage. */
async function trace(m: GpuLlama): Promise<{ logits: Float32Array[]; ids: number[] }> {
  m.kv.truncate(0);
  const logits: Float32Array[] = [];
  const ids: number[] = [];
  const n = PROMPT.length;
  const pre = await m.forward({
    tokens: Int32Array.from(PROMPT),
    positions: Int32Array.from(PROMPT, (_, i) => i),
    logitRows: [n - 1],
  });
  logits.push(pre);
  let last = argmax(pre);
  for (let r = 0; r < 3; r++) {
    const got = await m.decodeSteps(last, 4, { kind: "argmax" });
    ids.push(...got);
    last = got[3];
  }
  logits.push(await m.forward(treeInput(m.kv.length)));
  return { logits, ids };
}

const want = await trace(resident);

for (const [slots, budget] of [[2, baseBytes + 2 * layerBytes], [3, baseBytes + 3 * layerBytes + 7]]) {
  Deno.test(`paged forward (${slots}-slot ring, 5 layers, host cache off) equals resident`, async () => {
    const paged = await GpuLlama.load(gpu, ckpt, {
      maxBatch: 32,
      gpuMemoryBudget: budget,
      hostMemoryBudget: 0,
    });
    try {
      assert.equal(paged.paging?.ringSlots, slots);
      assert.equal(paged.paging?.residentLayers, 0);
      assert.equal(paged.paging?.layerBytes, layerBytes);
      assert.equal(paged.weightBytes, paged.paging?.gpuWeightBytes);
      assert.ok(paged.weightBytes <= budget, `${paged.weightBytes} <= ${budget}`);
      for (let rep = 0; rep < 2; rep++) { // twice: the second run starts from a ring the first left wrapped
        const got = await trace(paged);
        assert.deepEqual(got.ids, want.ids);
        got.logits.forEach((l, i) => {
          assert.equal(l.length, want.logits[i].length);
          for (let j = 0; j < l.length; j++) assert.ok(Math.abs(l[j] - want.logits[i][j]) <= 1e-5);
        });
      }
      const s = paged.pagingStats()!;
      // Every forward streams all 5 layers; 1 prefill + 12 decode + 1 tree = 14 forwards per trace.
      assert.ok(s.uploads >= 2 * 14 * 5, `uploads ${s.uploads}`);
      assert.equal(s.bytesUploaded, s.uploads * layerBytes);
      assert.equal(s.hostHits, 0);
      // Every refill was scheduled ahead (right after its slot's last use was submitted), none on demand.
      assert.equal(s.demandLoads, 0);
    } finally {
      paged.dispose();
    }
  });
}

Deno.test("paged: resident layers + ring, host cache serves refills from RAM", async () => {
  const paged = await GpuLlama.load(gpu, ckpt, {
    maxBatch: 32,
    gpuMemoryBudget: baseBytes + 4 * layerBytes,
    maxRingSlots: 2,
    hostMemoryBudget: 10 * layerBytes,
  });
  try {
    assert.equal(paged.paging?.residentLayers, 2);
    const got = await trace(paged);
    assert.deepEqual(got.ids, want.ids);
    const s = paged.pagingStats()!;
    assert.equal(s.hostCachedLayers, 3);
    assert.ok(s.hostHits > 0);
    assert.equal(s.bytesUploaded, s.uploads * layerBytes);
  } finally {
    paged.dispose();
  }
});

Deno.test("paged: a budget below two layer slots fails naming the bytes needed", async () => {
  await assert.rejects(
    () => GpuLlama.load(gpu, ckpt, { gpuMemoryBudget: baseBytes + layerBytes }),
    new RegExp(`too small for ${dir}.*${baseBytes + 2 * layerBytes} bytes in all`),
  );
});

Deno.test("paged speculative decoding (Sequoia) is token-identical to resident", async () => {
  const draftDir = `${dir}_draft`;
  const dcfg = smallConfig({ num_hidden_layers: 1 });
  await writeModelFolder(draftDir, { ...SMALL_CONFIG, num_hidden_layers: 1 }, randomTensors(dcfg, 12, "F16"));
  const draftCkpt = await openCheckpoint(draftDir);
  const draft = await GpuLlama.load(gpu, draftCkpt, { maxBatch: 64 });
  const paged = await GpuLlama.load(gpu, ckpt, { maxBatch: 32, gpuMemoryBudget: baseBytes + 2 * layerBytes });
  try {
    const run = async (target: GpuLlama) => {
      const out: number[] = [];
      const { drafter, verifier } = makeDrafter("sequoia", { treeSize: 8, depth: 3 }, [0.6, 0.2, 0.1, 0.05]);
      const opts = {
        drafter,
        verifier,
        maxTokens: 20,
        sampling: { temperature: 0, topK: 0, topP: 1 },
        seed: 3,
      };
      for await (const ev of generateSpeculative(target, draft, PROMPT, opts)) {
        if (ev.type === "token") out.push(ev.id);
      }
      return out;
    };
    assert.deepEqual(await run(paged), await run(resident));
  } finally {
    paged.dispose();
    draft.dispose();
    draftCkpt.checkpoint.close();
  }
});

Deno.test("paged: a checkpoint truncated on disk fails the forward with the file's name, then recovers", async () => {
  const copy = `${dir}_copy`;
  await Deno.mkdir(copy);
  for (const f of ["config.json", "model.safetensors"]) await Deno.copyFile(`${dir}/${f}`, `${copy}/${f}`);
  const c2 = await openCheckpoint(copy);
  const paged = await GpuLlama.load(gpu, c2, {
    maxBatch: 32,
    gpuMemoryBudget: baseBytes + 2 * layerBytes,
    hostMemoryBudget: 0,
  });
  const file = `${copy}/model.safetensors`;
  const good = await Deno.readFile(file);
  try {
    await trace(paged);
    await Deno.truncate(file, good.byteLength - 1000);
    await assert.rejects(() => trace(paged), /model\.safetensors.*(changed on disk|truncated)/);
    await Deno.writeFile(file, good); // restored: the next request works and matches again
    const got = await trace(paged);
    assert.deepEqual(got.ids, want.ids);
  } finally {
    paged.dispose();
    c2.checkpoint.close();
    await Deno.remove(copy, { recursive: true });
  }
});

Deno.test("paged model from a folder keeps its tokenizer-facing config", async () => {
  // The loader path users take: openModelFolder + budget (the tiny target, all 6 layers streamed).
  const folder = await openModelFolder(new URL("../weights/tiny/target", import.meta.url).pathname);
  const m = await GpuLlama.load(gpu, folder, { gpuMemoryBudget: 6 * 1024 * 1024, maxBatch: 16 });
  try {
    assert.ok(m.paging);
    const ids = folder.tokenizer.encode("And God said");
    const r = await m.forwardIds({
      tokens: Int32Array.from(ids),
      positions: Int32Array.from(ids, (_, i) => i),
      logitRows: [ids.length - 1],
    }, { kind: "argmax" });
    assert.equal(r.length, 1);
  } finally {
    m.dispose();
    folder.checkpoint.close();
  }
});

Deno.test("minPagedBudget is the smallest budget that loads paged", async () => {
  const { minPagedBudget } = await import("../src/gpu/paging/plan.ts");
  const min = minPagedBudget(ckpt.checkpoint, ckpt.config);
  assert.equal(min, baseBytes + 2 * layerBytes);
  const m = await GpuLlama.load(gpu, ckpt, { gpuMemoryBudget: min, maxBatch: 8 });
  assert.equal(m.paging?.ringSlots, 2);
  m.dispose();
  await assert.rejects(() => GpuLlama.load(gpu, ckpt, { gpuMemoryBudget: min - 1 }), /too small/);
});

Deno.test("paged chunked prefill equals resident; a read failing in a later chunk leaves the cache as it was", async () => {
  const prompt = Int32Array.from({ length: 20 }, (_, i) => (i * 7 + 3) % config.vocabSize);
  const input = { tokens: prompt, positions: Int32Array.from(prompt, (_, i) => i), logitRows: [19] };
  const small = await GpuLlama.load(gpu, ckpt, { maxBatch: 8 });
  const paged = await GpuLlama.load(gpu, ckpt, {
    maxBatch: 8,
    gpuMemoryBudget: baseBytes + 2 * layerBytes,
    hostMemoryBudget: 0,
  });
  const st = ckpt.checkpoint;
  const realRead = st.readRaw.bind(st);
  try {
    const want = await small.forward(input);
    const got = await paged.forward(input);
    for (let j = 0; j < want.length; j++) assert.ok(Math.abs(got[j] - want[j]) <= 1e-5);
    // Fail the 40th tensor read from now: the refill of layer 2 for the second of three prefill chunks
    // (7 reads per layer; chunk 1 schedules 5 refills, the last two for chunk 2's layers 0 and 1).
    let reads = 0;
    st.readRaw = (name, into) => {
      if (++reads === 40) return Promise.reject(new Error(`injected read failure (${name})`));
      return realRead(name, into);
    };
    paged.kv.truncate(0);
    await assert.rejects(() => paged.forward(input), /injected read failure/);
    assert.equal(paged.kv.length, 0, "no chunk of the failed prefill stays in the cache");
    st.readRaw = realRead;
    const again = await paged.forward(input);
    assert.equal(paged.kv.length, 20);
    for (let j = 0; j < want.length; j++) assert.ok(Math.abs(again[j] - want[j]) <= 1e-5);
    assert.ok(paged.pagingStats()!.demandLoads > 0, "the ring reloaded its slots after the failure");
  } finally {
    st.readRaw = realRead;
    small.dispose();
    paged.dispose();
  }
});
