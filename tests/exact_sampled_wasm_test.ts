/**
 * Sampled output follows the target's distribution on the wasm backend (src/wasm/, 2 threads): first and
 * second tokens of every method against the exact probabilities of the wasm target, chi-square at the
 * 1e-6 upper quantiles (the CPU suites' sizes: tests/exact_sampled_cpu_*_test.ts).
 */
import { assertSampledFollowsTarget, wasmPair } from "./fixtures/exact.ts";

Deno.test("exactness: sampled first and second tokens of every method follow the target distribution (wasm)", async () => {
  try {
    await assertSampledFollowsTarget(["ar", "chain", "specinfer", "sequoia", "specexec", "lookup"], wasmPair);
  } finally {
    const { target, draft } = await wasmPair();
    target.dispose();
    draft.dispose();
  }
});
