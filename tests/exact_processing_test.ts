/**
 * Exactness with a request's logit processors (presence / frequency / repetition penalties, logit_bias,
 * min-p) and with logprobs: greedy output of every speculative method is token-identical to AR with the
 * same processors (CPU reference and the GPU's one-readback path), logprobs agree with AR's, and sampled
 * first and second tokens follow the PROCESSED target distribution (chi-square), which differs from the
 * plain one by construction, so a method that ignored the processors (or a node's history) would fail.
 */
import assert from "node:assert/strict";
import { LogitsPipeline } from "../src/decoding/logits/pipeline.ts";
import type { ProcessingSpec } from "../src/decoding/logits/processor.ts";
import { probabilities, type SamplingParams } from "../src/model/sampling.ts";
import type { Method } from "../src/speculative/methods.ts";
import { grammarProcessor, vocabularyOf } from "../src/decoding/grammar/mod.ts";
import {
  categories,
  chiSquare,
  cpuPair,
  gpuPair,
  prompts,
  run,
  SPEC,
  targetFolder,
} from "./fixtures/exact.ts";

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
      assert.ok(tokensPerStep > 1, `${m}: speculation never accepted anything`);
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

/** The processed target distribution after `ids` (generated = ids after the prompt), CPU reference. */
async function processedDist(
  prompt: number[],
  generated: number[],
  spec: ProcessingSpec,
  sampling: SamplingParams,
): Promise<{ processed: Float64Array; plain: Float64Array }> {
  const { target } = await cpuPair();
  const ids = [...prompt, ...generated];
  target.kv.truncate(0);
  const logits = await target.forward({
    tokens: Int32Array.from(ids),
    positions: Int32Array.from(ids, (_, i) => i),
    logitRows: [ids.length - 1],
  });
  const pipe = LogitsPipeline.fromSpec(spec, {
    temperature: sampling.temperature,
    vocabSize: logits.length,
    vocab: vocabularyOf(tok, logits.length),
    grammar: grammarProcessor,
  })!;
  let st = pipe.initial(prompt);
  for (const t of generated) st = pipe.advance(st, t);
  return {
    processed: probabilities(pipe.processed(logits, st), sampling),
    plain: probabilities(logits, sampling),
  };
}

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
  for (const m of ["ar", "sequoia", "specexec"] as Method[]) {
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

/** A schema whose output is bounded, so generations end with EOS well within max_tokens. */
const SCHEMA = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 6 },
    ok: { type: "boolean" },
    kind: { enum: ["a", "b", "c"] },
  },
  required: ["name", "ok", "kind"],
  additionalProperties: false,
};
const GRAMMAR: ProcessingSpec = { grammar: { kind: "json_schema", schema: SCHEMA } };
const withGrammar = { processing: GRAMMAR, vocab: vocabularyOf(tok, 2048), grammar: grammarProcessor };

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
  for (const m of ["ar", "sequoia", "specexec"] as Method[]) {
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
