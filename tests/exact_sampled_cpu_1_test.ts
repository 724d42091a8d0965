/**
 * Sampled output follows the target's distribution on the CPU reference (first and second tokens,
 * against the exact target probabilities): ar, chain, specinfer here, the other methods in
 * tests/exact_sampled_cpu_2_test.ts (two files so `deno test --parallel` spreads them).
 */
import { assertSampledFollowsTarget } from "./fixtures/exact.ts";

Deno.test("exactness: sampled first and second tokens of ar, chain, specinfer follow the target distribution", async () => {
  await assertSampledFollowsTarget(["ar", "chain", "specinfer"]);
});
