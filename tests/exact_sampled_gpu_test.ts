/**
 * Sampled exactness on the WebGPU engine's one-readback path: first tokens follow the exact target
 * distribution (CPU reference probabilities), chi-square at the 1e-6 upper quantile.
 */
import assert from "node:assert/strict";
import type { Method } from "../src/speculative/methods.ts";
import { categories, chiSquare, gpuPair, run, targetDist, targetFolder } from "./fixtures/exact.ts";

Deno.test("exactness: on the GPU's device-verified path, sampled first tokens follow the target (sequoia, specinfer, specexec)", async () => {
  const sampling = { temperature: 0.8, topK: 0, topP: 1 };
  const prompt = targetFolder.tokenizer.encode("And the LORD said unto");
  const [top1, p1] = categories(await targetDist(prompt, sampling), 5);
  const gpu = await gpuPair();
  const N = 200;
  // sequoia and specinfer: fused steps verified on the device (SWOR, SpecInfer's rule); specexec: a tree
  // drafted on the host, verified on the target's device with the match rule.
  for (const m of ["sequoia", "specinfer", "specexec"] as Method[]) {
    const c1 = new Array(p1.length).fill(0);
    for (let s = 0; s < N; s++) {
      const { ids } = await run(gpu, m, prompt, 1, sampling, 5000 + s);
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
