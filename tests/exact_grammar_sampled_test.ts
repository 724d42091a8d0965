/**
 * Sampled exactness under a JSON schema (grammar-constrained decoding): first and second tokens of
 * sequoia and specexec follow the grammar-masked target distribution, and every output starts a JSON
 * object.
 */
import assert from "node:assert/strict";
import type { Method } from "../src/speculative/methods.ts";
import { categories, chiSquare, cpuPair, run, targetFolder } from "./fixtures/exact.ts";
import { GRAMMAR, processedDist, withGrammar } from "./fixtures/processing.ts";

const tok = targetFolder.tokenizer;

Deno.test("exactness with a JSON schema: sampled outputs of sequoia and specexec follow the grammar-masked target", async () => {
  const sampling = { temperature: 1, topK: 0, topP: 1 };
  const prompt = tok.encode("And God said");
  const d1 = await processedDist(prompt, [], GRAMMAR, sampling);
  const [t1, q1] = categories(d1.processed, 3);
  const tv = t1.reduce((a, x, i) => a + Math.abs(q1[i] - d1.plain[x]), 0) / 2;
  assert.ok(tv > 0.3, `the grammar reshapes the distribution (TV ${tv.toFixed(2)})`);
  // The second token after the likeliest first one.
  const d2 = await processedDist(prompt, [t1[0]], GRAMMAR, sampling);
  const [t2, q2] = categories(d2.processed, 3);
  const pair = await cpuPair();
  const N = 300;
  for (const m of ["sequoia", "specexec"] as Method[]) {
    const c1 = new Array(q1.length).fill(0), c2 = new Array(q2.length).fill(0);
    for (let s = 0; s < N; s++) {
      const { ids } = await run(pair, m, prompt, 3, sampling, 9000 + s, withGrammar);
      const text = tok.decode(ids);
      assert.ok(/^\s{0,2}\{/.test(text), `${m}: output starts a JSON object: ${JSON.stringify(text)}`);
      const k = t1.indexOf(ids[0]);
      c1[k < 0 ? q1.length - 1 : k]++;
      if (ids[0] !== t1[0]) continue;
      const k2 = t2.indexOf(ids[1]);
      c2[k2 < 0 ? q2.length - 1 : k2]++;
    }
    assert.ok(c2.reduce((a, b) => a + b, 0) > 60, `${m}: too few samples with the likeliest first token`);
    const x1 = chiSquare(c1, q1), x2 = chiSquare(c2, q2);
    assert.ok(
      x1 < 31,
      `${m}: first-token chi-square ${x1.toFixed(1)}, counts ${c1}, p ${q1.map((v) => v.toFixed(3))}`,
    );
    assert.ok(
      x2 < 31,
      `${m}: second-token chi-square ${x2.toFixed(1)}, counts ${c2}, p ${q2.map((v) => v.toFixed(3))}`,
    );
  }
});
