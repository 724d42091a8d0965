/**
 * The product's promise on the wasm backend (src/wasm/, 2 threads): greedy speculative output is
 * token-identical to autoregressive output on the same engine for every method, 128 tokens of each of
 * the 8 acceptance prompts (the CPU suites' sizes: tests/exact_greedy_cpu_*_test.ts). It holds because a
 * token's logits on this backend do not depend on which other tokens share its forward.
 */
import { assertGreedyMatchesAr, wasmPair } from "./fixtures/exact.ts";

Deno.test("exactness: greedy speculative output equals AR greedy, 8 prompts x 128 tokens, every method (wasm)", async () => {
  try {
    await assertGreedyMatchesAr(0, 8, wasmPair);
  } finally {
    const { target, draft } = await wasmPair();
    target.dispose();
    draft.dispose();
  }
});
