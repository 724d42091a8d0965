/**
 * Exactness with a request's logit processors (presence / frequency / repetition penalties, logit_bias,
 * min-p, a JSON schema) and with logprobs: greedy output of every speculative method is token-identical
 * to AR with the same processors (CPU reference and GPU), logprobs agree with AR's. The sampled cases are
 * in tests/exact_processing_sampled_test.ts and tests/exact_grammar_sampled_test.ts.
 */
import assert from "node:assert/strict";
import type { ProcessingSpec } from "../src/decoding/logits/processor.ts";
import type { Method } from "../src/speculative/methods.ts";
import { cpuPair, gpuPair, prompts, run, SPEC, targetFolder } from "./fixtures/exact.ts";
import { withGrammar } from "./fixtures/processing.ts";

const tok = targetFolder.tokenizer;
/** Strong enough to change greedy output within a few tokens (checked below). */
const GREEDY_PROCESSING: ProcessingSpec = {
  presencePenalty: 0.6,
  frequencyPenalty: 0.4,
  repetitionPenalty: 1.3,
  logitBias: {
    [tok.encode(" the", { addBos: false })[0]]: -100,
    [tok.encode(" LORD", { addBos: false })[0]]: 2,
  },
};

Deno.test("exactness with processors: greedy speculative output equals AR with the same processors (CPU)", async () => {
  const pair = await cpuPair();
  const all = (await prompts(8)).slice(0, 2);
  let changed = 0;
  for (const p of all) {
    const plain = (await run(pair, "ar", p, 64)).ids;
    const ar = (await run(pair, "ar", p, 64, undefined, 0, { processing: GREEDY_PROCESSING })).ids;
    if (ar.join() !== plain.join()) changed++;
    const banned = Number(Object.keys(GREEDY_PROCESSING.logitBias!)[0]);
    assert.ok(!ar.includes(banned), "a -100 bias bans the token");
    for (const m of SPEC) {
      const { ids, tokensPerStep } = await run(pair, m, p, 64, undefined, 0, {
        processing: GREEDY_PROCESSING,
      });
      assert.deepEqual(ids, ar, `${m} with processors differs from AR for ${JSON.stringify(tok.decode(p))}`);
      // These penalties forbid the repeats lookup copies (its acceptance with processors: lookup_test.ts).
      if (m !== "lookup") assert.ok(tokensPerStep > 1, `${m}: speculation never accepted anything`);
    }
  }
  assert.equal(
    changed,
    all.length,
    "the processors change the greedy output (else this test proves nothing)",
  );
});

Deno.test("exactness with processors: on the GPU too (sequoia, specexec; drafted and verified apart from the fused step)", async () => {
  const pair = await gpuPair();
  const p = (await prompts(8))[3];
  const ar = (await run(pair, "ar", p, 48, undefined, 0, { processing: GREEDY_PROCESSING })).ids;
  for (const m of ["sequoia", "specexec"] as Method[]) {
    const { ids } = await run(pair, m, p, 48, undefined, 0, { processing: GREEDY_PROCESSING });
    assert.deepEqual(ids, ar, `${m} (GPU) with processors differs from AR`);
  }
});

Deno.test("logprobs: every method reports AR's logprobs for the same tokens; top-1 is the greedy token", async () => {
  const pair = await cpuPair();
  const p = (await prompts(8))[1];
  const extra = { processing: GREEDY_PROCESSING, logprobs: 3 };
  const ar = await run(pair, "ar", p, 32, undefined, 0, extra);
  assert.equal(ar.logprobs.length, 32);
  for (let i = 0; i < 32; i++) {
    assert.ok(ar.logprobs[i] <= 0 && ar.tops[i].length === 3);
    assert.equal(ar.tops[i][0][0], ar.ids[i], "greedy picks the most likely processed token");
    assert.ok(Math.abs(ar.tops[i][0][1] - ar.logprobs[i]) < 1e-12);
    assert.ok(ar.tops[i][0][1] >= ar.tops[i][1][1] && ar.tops[i][1][1] >= ar.tops[i][2][1]);
  }
  for (const m of SPEC) {
    const r = await run(pair, m, p, 32, undefined, 0, extra);
    assert.deepEqual(r.ids, ar.ids);
    for (let i = 0; i < 32; i++) {
      // A tree forward and a one-token forward sum in different orders: equal to float noise.
      assert.ok(
        Math.abs(r.logprobs[i] - ar.logprobs[i]) < 1e-3,
        `${m} token ${i}: ${r.logprobs[i]} vs ${ar.logprobs[i]}`,
      );
    }
  }
});

Deno.test("exactness with a JSON schema: greedy output of every method equals AR's and parses to the schema", async () => {
  const pair = await cpuPair();
  for (const p of (await prompts(8)).slice(4, 6)) {
    const ar = (await run(pair, "ar", p, 64, undefined, 0, withGrammar)).ids;
    const text = tok.decode(ar);
    const value = JSON.parse(text);
    assert.deepEqual(Object.keys(value), ["name", "ok", "kind"], text);
    assert.ok(typeof value.name === "string" && [...value.name].length <= 6 && typeof value.ok === "boolean");
    assert.ok(["a", "b", "c"].includes(value.kind), text);
    for (const m of SPEC) {
      const { ids } = await run(pair, m, p, 64, undefined, 0, withGrammar);
      assert.deepEqual(ids, ar, `${m} with a grammar differs from AR`);
    }
  }
});
