/**
 * A generation's counters stay true when it ends mid-submission: on the GPU, AR decodes 8 tokens per
 * submission, and tokens computed past a cancel (or EOS, or max_tokens) are dropped, not counted as
 * forwards (an audit saw tokensPerStep 0.917 and 97 forwards for 89 tokens).
 */
import assert from "node:assert/strict";
import { generateAutoregressive } from "../src/decoding/autoregressive.ts";
import type { GenerationStats } from "../src/decoding/stats.ts";
import { gpuPair, targetFolder } from "./fixtures/exact.ts";

Deno.test("AR stats: a cancel mid-submission counts only the forwards whose tokens were emitted", async () => {
  const { target } = await gpuPair();
  const prompt = targetFolder.tokenizer.encode("And God said");
  for (const stopAt of [9, 13]) {
    const ac = new AbortController();
    let n = 0;
    let stats: GenerationStats | undefined;
    let finish: string | undefined;
    for await (
      const ev of generateAutoregressive(target, prompt, {
        maxTokens: 64,
        sampling: { temperature: 0, topK: 0, topP: 1 },
        seed: 0,
        signal: ac.signal,
        tokensPerSubmission: 8,
      })
    ) {
      if (ev.type === "token" && ++n === stopAt) ac.abort();
      if (ev.type === "done") [stats, finish] = [ev.stats, ev.finishReason];
    }
    assert.equal(finish, "cancelled");
    assert.equal(stats!.completionTokens, stopAt);
    assert.equal(stats!.targetForwards, stopAt, "one forward per emitted token (prefill gave the first)");
    assert.equal(stats!.tokensPerStep, 1);
  }
});
