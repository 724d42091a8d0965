/**
 * The product's promise on the CPU reference: greedy speculative output is token-identical to
 * autoregressive output for every method, 128 tokens of the second four of the 8 acceptance prompts
 * (the other four: tests/exact_greedy_cpu_1_test.ts; two files so `deno test --parallel` spreads them).
 */
import assert from "node:assert/strict";
import { cpuPair, prompts, run, SPEC, targetFolder } from "./fixtures/exact.ts";

Deno.test("exactness: greedy speculative output equals AR greedy, prompts 5-8 of 8 x 128 tokens, every method (CPU)", async () => {
  const all = await prompts(8);
  assert.equal(all.length, 8);
  const pair = await cpuPair();
  for (const p of all.slice(4, 8)) {
    const ar = (await run(pair, "ar", p, 128)).ids;
    assert.equal(ar.length, 128);
    for (const m of SPEC) {
      const { ids, tokensPerStep } = await run(pair, m, p, 128);
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
