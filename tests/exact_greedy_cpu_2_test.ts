/**
 * The product's promise on the CPU reference: greedy speculative output is token-identical to
 * autoregressive output for every method, 128 tokens of the second four of the 8 acceptance prompts
 * (the other four: tests/exact_greedy_cpu_1_test.ts; two files so `deno test --parallel` spreads them).
 */
import { assertGreedyMatchesAr } from "./fixtures/exact.ts";

Deno.test("exactness: greedy speculative output equals AR greedy, prompts 5-8 of 8 x 128 tokens, every method (CPU)", async () => {
  await assertGreedyMatchesAr(4, 8);
});
