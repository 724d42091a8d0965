/**
 * Sampled output follows the target's distribution on the CPU reference (first and second tokens,
 * against the exact target probabilities): sequoia, specexec here, the other methods in
 * tests/exact_sampled_cpu_1_test.ts (two files so `deno test --parallel` spreads them).
 */
import { assertSampledFollowsTarget } from "./fixtures/exact.ts";

Deno.test("exactness: sampled first and second tokens of sequoia, specexec follow the target distribution", async () => {
  await assertSampledFollowsTarget(["sequoia", "specexec"]);
});
