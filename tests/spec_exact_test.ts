/**
 * The product's promise, end to end on the bundled tiny pair: greedy speculative output is
 * token-identical to autoregressive output for every method (8 prompts x 128 tokens on the CPU
 * reference; one prompt on the WebGPU engine), and sampled output follows the target's distribution
 * (first token, against the exact target probabilities). Trees are kept small so CI stays fast; tree
 * size does not change what is being checked.
 */
import assert from "node:assert/strict";
import { sharedGpu } from "../src/cli/backend.ts";
import { acceptanceTexts, decode } from "../src/cli/decoder.ts";
import { GpuLlama } from "../src/gpu/llama.ts";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, loadCpuModel, openModelFolder } from "../src/model/loader.ts";
import type { CausalLM } from "../src/model/types.ts";
import { GREEDY, probabilities } from "../src/model/sampling.ts";
import type { Method } from "../src/spec/methods.ts";

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

Deno.test("exactness: sampled first token of every method follows the target distribution", async () => {
  const sampling = { temperature: 0.8, topK: 0, topP: 1 };
  const prompt = targetFolder.tokenizer.encode("And the LORD said unto");
  cpuPair.target.truncate(0);
  const logits = await cpuPair.target.forward({
    tokens: Int32Array.from(prompt),
    positions: Int32Array.from(prompt, (_, i) => i),
    logitRows: [prompt.length - 1],
  });
  const p = probabilities(logits, sampling);
  // Categories: the 5 most likely tokens and "everything else".
  const top = Array.from(p.keys()).sort((a, b) => p[b] - p[a]).slice(0, 5);
  const probs = [...top.map((t) => p[t]), 1 - top.reduce((a, t) => a + p[t], 0)];
  const N = 240;
  for (const m of ["ar", ...SPEC] as Method[]) {
    const counts = new Array(probs.length).fill(0);
    for (let s = 0; s < N; s++) {
      const { ids } = await run(cpuPair, m, prompt, 1, sampling, 1000 + s);
      const k = top.indexOf(ids[0]);
      counts[k < 0 ? probs.length - 1 : k]++;
    }
    let chi = 0;
    for (let k = 0; k < probs.length; k++) chi += (counts[k] - N * probs[k]) ** 2 / (N * probs[k]);
    // 5 degrees of freedom: P(chi-square > 36) < 1e-6.
    assert.ok(
      chi < 36,
      `${m}: first-token chi-square ${chi.toFixed(1)}, counts ${counts}, expected ${
        probs.map((x) => (x * N).toFixed(0))
      }`,
    );
  }
});
