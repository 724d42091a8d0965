/**
 * Sampled exactness with request processors (penalties, logit_bias, min-p): first and second tokens of
 * sequoia and specexec follow the PROCESSED target distribution, which the test checks differs from the
 * plain one and from the one a method that ignored a node's history would draw from. (Split from
 * tests/exact_processing_test.ts so `deno test --parallel` spreads the long statistical cases.)
 */
import assert from "node:assert/strict";
import type { ProcessingSpec } from "../src/decoding/logits/processor.ts";
import { LogitsPipeline } from "../src/decoding/logits/pipeline.ts";
import { probabilities } from "../src/model/sampling.ts";
import type { Method } from "../src/speculative/methods.ts";
import { categories, chiSquare, cpuPair, run, targetFolder } from "./fixtures/exact.ts";
import { processedDist } from "./fixtures/processing.ts";

const tok = targetFolder.tokenizer;

Deno.test("exactness with processors: sampled first and second tokens of sequoia and specexec follow the processed target", async () => {
  const sampling = { temperature: 0.8, topK: 0, topP: 1 };
  const prompt = tok.encode("And they");
  const first = await processedDist(prompt, [], { repetitionPenalty: 1.2, minP: 0.02 }, sampling);
  const [top1, p1] = categories(first.processed, 5);
  // Second token after the likeliest first: negative presence/frequency penalties make the token just
  // generated far likelier again, and a bias and min-p reshape the rest, so a method that used the root's
  // state (ignoring a node's own history) or the plain distribution would show.
  const spec: ProcessingSpec = {
    presencePenalty: -2,
    frequencyPenalty: -2,
    repetitionPenalty: 0.3,
    minP: 0.02,
    logitBias: { [top1[4]]: -100 },
  };
  const d1 = await processedDist(prompt, [], spec, sampling);
  const [t1, q1] = categories(d1.processed, 5);
  const d2 = await processedDist(prompt, [t1[0]], spec, sampling);
  const [t2, q2] = categories(d2.processed, 3);
  // The bug to catch: the second token scored with the root's state, as if nothing had been generated.
  const { target } = await cpuPair();
  const ids = [...prompt, t1[0]];
  target.kv.truncate(0);
  const row2 = await target.forward({
    tokens: Int32Array.from(ids),
    positions: Int32Array.from(ids, (_, i) => i),
    logitRows: [ids.length - 1],
  });
  const pipe = LogitsPipeline.fromSpec(spec, { temperature: sampling.temperature, vocabSize: row2.length })!;
  const noHistory = probabilities(pipe.processed(row2, pipe.initial(prompt)), sampling);
  const tv = (ref: Float64Array) => t2.reduce((a, t, i) => a + Math.abs(q2[i] - ref[t]), 0) / 2;
  assert.ok(
    tv(d2.plain) > 0.1 && tv(noHistory) > 0.1,
    `the processors and the history reshape the second token: TV ${tv(d2.plain).toFixed(3)} vs plain, ${
      tv(noHistory).toFixed(3)
    } vs the root's state; first ${t1} ${q1.map((x) => x.toFixed(2))}, second ${t2} ${
      q2.map((x) => x.toFixed(2))
    }`,
  );
  const pair = await cpuPair();
  const N = 400;
  for (const m of ["sequoia", "specexec"] as Method[]) {
    const c1 = new Array(q1.length).fill(0), c2 = new Array(q2.length).fill(0);
    for (let s = 0; s < N; s++) {
      const { ids } = await run(pair, m, prompt, 2, sampling, 7000 + s, { processing: spec });
      const k = t1.indexOf(ids[0]);
      c1[k < 0 ? q1.length - 1 : k]++;
      if (ids[0] === t1[0]) {
        const k2 = t2.indexOf(ids[1]);
        c2[k2 < 0 ? q2.length - 1 : k2]++;
      }
    }
    const x1 = chiSquare(c1, q1), x2 = chiSquare(c2, q2);
    assert.ok(
      x1 < 36,
      `${m}: first-token chi-square ${x1.toFixed(1)}, counts ${c1}, p ${q1.map((x) => x.toFixed(3))}`,
    );
    assert.ok(c2.reduce((a, b) => a + b, 0) > 40, `${m}: too few samples with the likeliest first token`);
    assert.ok(
      x2 < 31,
      `${m}: second-token chi-square ${x2.toFixed(1)}, counts ${c2}, p ${q2.map((x) => x.toFixed(3))}`,
    );
  }
  assert.equal(p1.length, 6);
});
