/**
 * The product's promise, end to end on the bundled tiny pair: greedy speculative output is
 * token-identical to autoregressive output for every method (8 prompts x 128 tokens on the CPU
 * reference; one prompt on the WebGPU engine), and sampled output follows the target's distribution
 * (first token, against the exact target probabilities). Trees are kept small so CI stays fast; tree
 * size does not change what is being checked.
 */
import assert from "node:assert/strict";
import { sharedGpu } from "../src/runtime/backend.ts";
import { acceptanceTexts } from "../src/runtime/acceptance.ts";
import { decode } from "../src/speculative/decode.ts";
import { GpuLlama } from "../src/gpu/llama/model.ts";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, openModelFolder } from "../src/model/folder.ts";
import { loadCpuModel } from "../src/cpu/load.ts";
import type { CausalLM } from "../src/model/causal_lm.ts";
import { GREEDY, probabilities } from "../src/model/sampling.ts";
import type { Method } from "../src/speculative/methods.ts";

const gpu = await sharedGpu();
const targetFolder = await openModelFolder(DEFAULT_TARGET_DIR);
const draftFolder = await openModelFolder(DEFAULT_DRAFT_DIR);
const cpuPair = { target: await loadCpuModel(targetFolder), draft: await loadCpuModel(draftFolder) };
const gpuPair = {
  target: await GpuLlama.load(gpu, targetFolder),
  draft: await GpuLlama.load(gpu, draftFolder),
};
// A fixed acceptance vector keeps this test independent of measurement (any vector gives an exact tree).
const ACC = [0.55, 0.12, 0.06, 0.04, 0.025, 0.015, 0.01, 0.008];
const SPEC: Method[] = ["chain", "specinfer", "sequoia", "specexec"];

async function run(
  pair: { target: CausalLM; draft: CausalLM },
  method: Method,
  prompt: number[],
  maxTokens: number,
  sampling = GREEDY,
  seed = 0,
) {
  const ids: number[] = [];
  let tokensPerStep = 0;
  for await (
    const ev of decode(method, pair.target, pair.draft, prompt, {
      tree: { treeSize: 12, depth: 5, width: 2, budget: 16 },
      acceptance: ACC,
      maxTokens,
      sampling,
      seed,
      eosIds: [],
    })
  ) {
    if (ev.type === "token") ids.push(ev.id);
    if (ev.type === "done") tokensPerStep = ev.stats.tokensPerStep;
  }
  return { ids, tokensPerStep };
}

Deno.test("exactness: greedy speculative output equals AR greedy, 8 prompts x 128 tokens, every method (CPU)", async () => {
  const prompts = await acceptanceTexts(targetFolder, 8, 12);
  assert.equal(prompts.length, 8);
  for (const p of prompts) {
    const ar = (await run(cpuPair, "ar", p, 128)).ids;
    assert.equal(ar.length, 128);
    for (const m of SPEC) {
      const { ids, tokensPerStep } = await run(cpuPair, m, p, 128);
      assert.deepEqual(
        ids,
        ar,
        `${m} differs from AR for prompt ${JSON.stringify(targetFolder.tokenizer.decode(p))}`,
      );
      assert.ok(
        tokensPerStep > 1,
        `${m}: ${tokensPerStep} tokens/step (speculation never accepted anything)`,
      );
    }
  }
});

Deno.test("exactness: greedy speculative output equals AR greedy on the WebGPU engine, every method", async () => {
  const [p] = await acceptanceTexts(targetFolder, 1, 12);
  const ar = (await run(gpuPair, "ar", p, 96)).ids;
  assert.deepEqual(ar, (await run(cpuPair, "ar", p, 96)).ids, "GPU AR equals CPU AR");
  for (const m of SPEC) assert.deepEqual((await run(gpuPair, m, p, 96)).ids, ar, `${m} on the GPU`);
});

/** Exact target distribution after `ids` (CPU reference, fresh cache). */
async function targetDist(ids: number[], sampling: { temperature: number; topK: number; topP: number }) {
  cpuPair.target.kv.truncate(0);
  const logits = await cpuPair.target.forward({
    tokens: Int32Array.from(ids),
    positions: Int32Array.from(ids, (_, i) => i),
    logitRows: [ids.length - 1],
  });
  return probabilities(logits, sampling);
}

/** Categories: the `k` most likely tokens, then "everything else"; returns [tokens, probabilities]. */
function categories(p: Float64Array, k: number): [number[], number[]] {
  const top = Array.from(p.keys()).sort((a, b) => p[b] - p[a]).slice(0, k);
  return [top, [...top.map((t) => p[t]), 1 - top.reduce((a, t) => a + p[t], 0)]];
}

function chiSquare(counts: number[], probs: number[]): number {
  const n = counts.reduce((a, b) => a + b, 0);
  return counts.reduce((a, c, k) => a + (c - n * probs[k]) ** 2 / (n * probs[k]), 0);
}

Deno.test("exactness: sampled first and second tokens of every method follow the target distribution", async () => {
  const sampling = { temperature: 0.8, topK: 0, topP: 1 };
  const prompt = targetFolder.tokenizer.encode("And the LORD said unto");
  const [top1, p1] = categories(await targetDist(prompt, sampling), 5);
  // Second token, conditioned on the most likely first token.
  const [top2, p2] = categories(await targetDist([...prompt, top1[0]], sampling), 3);
  const N = 240;
  for (const m of ["ar", ...SPEC] as Method[]) {
    const c1 = new Array(p1.length).fill(0), c2 = new Array(p2.length).fill(0);
    for (let s = 0; s < N; s++) {
      const { ids } = await run(cpuPair, m, prompt, 2, sampling, 1000 + s);
      const k = top1.indexOf(ids[0]);
      c1[k < 0 ? p1.length - 1 : k]++;
      if (ids[0] === top1[0]) {
        const k2 = top2.indexOf(ids[1]);
        c2[k2 < 0 ? p2.length - 1 : k2]++;
      }
    }
    // 1e-6 upper quantiles: chi-square(5) 35.9 -> 36; chi-square(3) 30.7 -> 31.
    const x1 = chiSquare(c1, p1), x2 = chiSquare(c2, p2);
    assert.ok(
      x1 < 36,
      `${m}: first-token chi-square ${x1.toFixed(1)}, counts ${c1}, p ${p1.map((x) => x.toFixed(3))}`,
    );
    assert.ok(c2.reduce((a, b) => a + b, 0) > 40, `${m}: too few samples with the likeliest first token`);
    assert.ok(
      x2 < 31,
      `${m}: second-token chi-square ${x2.toFixed(1)}, counts ${c2}, p ${p2.map((x) => x.toFixed(3))}`,
    );
  }
});

Deno.test("exactness: a star wider than the GPU child-drawing kernel falls back and stays exact", async () => {
  const [p] = await acceptanceTexts(targetFolder, 1, 12);
  const ar = (await run(gpuPair, "ar", p, 12)).ids;
  const ids: number[] = [];
  for await (
    const ev of decode("sequoia", gpuPair.target, gpuPair.draft, p, {
      tree: { treeSize: 40, depth: 1 }, // a root with 39 children
      acceptance: ACC,
      maxTokens: 12,
      sampling: GREEDY,
      seed: 0,
      eosIds: [],
    })
  ) if (ev.type === "token") ids.push(ev.id);
  assert.deepEqual(ids, ar);
});

Deno.test("exactness: on the GPU's one-readback path, sampled first tokens follow the target (sequoia, specinfer)", async () => {
  const sampling = { temperature: 0.8, topK: 0, topP: 1 };
  const prompt = targetFolder.tokenizer.encode("And the LORD said unto");
  const [top1, p1] = categories(await targetDist(prompt, sampling), 5);
  const N = 200;
  for (const m of ["sequoia", "specinfer"] as Method[]) {
    const c1 = new Array(p1.length).fill(0);
    for (let s = 0; s < N; s++) {
      const { ids } = await run(gpuPair, m, prompt, 1, sampling, 5000 + s);
      const k = top1.indexOf(ids[0]);
      c1[k < 0 ? p1.length - 1 : k]++;
    }
    const x1 = chiSquare(c1, p1);
    assert.ok(
      x1 < 36,
      `${m} (GPU): first-token chi-square ${x1.toFixed(1)}, counts ${c1}, p ${p1.map((x) => x.toFixed(3))}`,
    );
  }
});
