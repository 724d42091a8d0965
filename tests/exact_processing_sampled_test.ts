/**
 * Sampled exactness with request processors (penalties, logit_bias, min-p) under sequoia and specexec:
 * the joint distribution of the first two tokens follows the PROCESSED target, each second token scored
 * with its own history (the first token generated). The case is designed to have power against the
 * bug that matters: the negative presence/frequency penalties and the repetition penalty make the token
 * just generated far likelier again, so a method that scored a tree node with the root's state (as if
 * nothing had been generated) draws from a different joint distribution; the test computes that
 * alternative exactly, requires its noncentrality to be large, and checks the samples reject it.
 *
 * The draft is a second copy of the target, so the first drafted token is (almost) always accepted and
 * the second token really comes from a tree node, not from a fresh root.
 */
import assert from "node:assert/strict";
import type { ProcessingSpec } from "../src/decoding/logits/processor.ts";
import { LogitsPipeline } from "../src/decoding/logits/pipeline.ts";
import { loadCpuModel } from "../src/cpu/load.ts";
import { probabilities } from "../src/model/sampling.ts";
import type { Method } from "../src/speculative/methods.ts";
import { chiSquare, cpuPair, run, targetFolder } from "./fixtures/exact.ts";

const tok = targetFolder.tokenizer;

Deno.test("exactness with processors: sampled first two tokens of sequoia and specexec follow the processed target, history included", async () => {
  const sampling = { temperature: 1, topK: 0, topP: 1 };
  const prompt = tok.encode("And he said");
  const spec: ProcessingSpec = {
    presencePenalty: -2,
    frequencyPenalty: -2,
    repetitionPenalty: 0.5,
    minP: 0.01,
    logitBias: { [tok.encode(" the", { addBos: false })[0]]: -100 },
  };
  const { target } = await cpuPair();
  const row = async (ids: number[]) => {
    target.kv.truncate(0);
    return await target.forward({
      tokens: Int32Array.from(ids),
      positions: Int32Array.from(ids, (_, i) => i),
      logitRows: [ids.length - 1],
    });
  };
  const pipe = LogitsPipeline.fromSpec(spec, { temperature: 1, vocabSize: target.config.vocabSize })!;
  const init = pipe.initial(prompt);
  const d1 = probabilities(pipe.processed(await row(prompt), init), sampling);
  // Exact joint probabilities of (first, second) over the 6 likeliest first tokens, with the node's own
  // history (right) and with the root's state (the bug).
  const firsts = Array.from(d1.keys()).sort((a, b) => d1[b] - d1[a]).slice(0, 6);
  const pairs: { a: number; b: number; p: number; wrong: number }[] = [];
  for (const a of firsts) {
    const r = await row([...prompt, a]);
    const right = probabilities(pipe.processed(r, pipe.advance(init, a)), sampling);
    const wrong = probabilities(pipe.processed(r, init), sampling);
    for (let b = 0; b < right.length; b++) pairs.push({ a, b, p: d1[a] * right[b], wrong: d1[a] * wrong[b] });
  }
  pairs.sort((x, y) => y.p - x.p);
  const top = pairs.slice(0, 5);
  const probs = [...top.map((x) => x.p), 1 - top.reduce((s, x) => s + x.p, 0)];
  const wrongs = [...top.map((x) => x.wrong), 1 - top.reduce((s, x) => s + x.wrong, 0)];
  const N = 400;
  assert.ok(probs.every((p) => p * N >= 5), `expected counts >= 5: ${probs.map((p) => p.toFixed(3))}`);
  const lambda = N * probs.reduce((s, p, i) => s + (wrongs[i] - p) ** 2 / p, 0);
  assert.ok(lambda > 150, `power against the root-state bug: noncentrality ${lambda.toFixed(0)}`);
  const selfDraft = await loadCpuModel(targetFolder);
  const pair = { target, draft: selfDraft };
  for (const m of ["sequoia", "specexec"] as Method[]) {
    const counts = new Array(probs.length).fill(0);
    for (let s = 0; s < N; s++) {
      const { ids } = await run(pair, m, prompt, 2, sampling, 7000 + s, { processing: spec });
      const k = top.findIndex((x) => x.a === ids[0] && x.b === ids[1]);
      counts[k < 0 ? probs.length - 1 : k]++;
    }
    // 1e-6 upper quantile of chi-square(5): 35.9.
    const x = chiSquare(counts, probs);
    assert.ok(
      x < 36,
      `${m}: chi-square ${x.toFixed(1)}, counts ${counts}, p ${probs.map((p) => p.toFixed(3))}`,
    );
    const xw = chiSquare(counts, wrongs);
    assert.ok(
      xw > 36,
      `${m}: the samples do not reject the root-state distribution (chi-square ${xw.toFixed(1)})`,
    );
  }
});
