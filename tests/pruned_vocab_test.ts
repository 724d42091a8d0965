/**
 * Drafts with a pruned vocabulary (config.json `vocab_map`, FR-Spec style): the config's validation, the
 * wrapper over the outer vocabulary (model/vocab_map.ts), loading through the normal path, and exactness
 * of speculation with such a draft — greedy output identical to AR, sampled output following the target's
 * distribution, mass outside the draft's subset included — on seeded random models (CPU reference).
 */
import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../src/model/config.ts";
import type { CausalLM } from "../src/model/causal_lm.ts";
import { openCheckpoint, openModelFolder } from "../src/model/folder.ts";
import { GREEDY, type SamplingParams } from "../src/model/sampling.ts";
import { VocabMappedLM, withVocabMap } from "../src/model/vocab_map.ts";
import { loadCpuModel } from "../src/cpu/load.ts";
import { loadModel } from "../src/runtime/backend.ts";
import { decode } from "../src/speculative/decode.ts";
import { drawWithoutReplacement } from "../src/speculative/draw.ts";
import type { Drafter } from "../src/speculative/drafters/drafter.ts";
import { SpecExecDrafter } from "../src/speculative/drafters/specexec.ts";
import { StaticTreeDrafter } from "../src/speculative/drafters/static_tree.ts";
import { generateSpeculative } from "../src/speculative/engine.ts";
import { makeDrafter, type Method } from "../src/speculative/methods.ts";
import { LogitsPipeline } from "../src/decoding/logits/pipeline.ts";
import type { LogitsProcessor } from "../src/decoding/logits/processor.ts";
import { Rng } from "../src/util/rng.ts";
import { ACC, chiSquare, targetDist as fixtureTargetDist } from "./fixtures/exact.ts";
import { maxRelErr } from "./fixtures/numeric.ts";
import { randomCpuModel, randomTensors, SMALL_CONFIG, writeModelFolder } from "./fixtures/random_model.ts";
import type { TensorToWrite } from "../src/model/safetensors_write.ts";

const SPEC: Exclude<Method, "ar" | "lookup">[] = ["chain", "specinfer", "sequoia", "specexec"];
const TREE = { treeSize: 12, depth: 5, width: 2, budget: 16 };
const SAMPLED: SamplingParams = { temperature: 1, topK: 0, topP: 1 };

// ---- the pair: a random target over 77 tokens, a pruned draft over two thirds of them ----

const V = SMALL_CONFIG.vocab_size; // 77, the outer vocabulary
const D = SMALL_CONFIG.hidden_size;
const TARGET_RAW = { ...SMALL_CONFIG, max_position_embeddings: 256 };
/** The draft's subset: every id t with t % 3 != 1, rows in a shuffled order, the other row at row 7. */
const MAPPED = Array.from({ length: V }, (_, t) => t).filter((t) => t % 3 !== 1);
const OTHER_ROW = 7;
const IDS: number[] = (() => {
  const rng = new Rng(11), ids = [...MAPPED];
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  ids.splice(OTHER_ROW, 0, -1);
  return ids;
})();
const inMap = new Set(MAPPED);
const DRAFT_RAW = { ...TARGET_RAW, vocab_size: IDS.length, vocab_map: { vocab_size: V, ids: IDS } };

/**
 * A draft close to the target: its layers with 10% multiplicative noise, its embedding and LM-head rows the
 * target's rows of its ids; the other row's embedding is the mean of the unmapped ones, its LM-head row a
 * large one (its logit must be dropped).
 */
function prunedTensors(t: Record<string, TensorToWrite>, ids: number[], seed: number) {
  const rng = new Rng(seed);
  const out: Record<string, TensorToWrite> = {};
  for (const [name, x] of Object.entries(t)) {
    if (name === "model.embed_tokens.weight" || name === "lm_head.weight") {
      const rows = new Float32Array(ids.length * D); // (rows, dim)
      const unmapped = Array.from({ length: V }, (_, i) => i).filter((i) => !ids.includes(i));
      ids.forEach((id, r) => {
        const row = rows.subarray(r * D, (r + 1) * D);
        if (id >= 0) row.set(x.data.subarray(id * D, (id + 1) * D));
        else if (name === "lm_head.weight") row.set(x.data.subarray(0, D).map((v) => 3 * v));
        else for (const u of unmapped) row.forEach((_, k) => (row[k] += x.data[u * D + k] / unmapped.length));
      });
      out[name] = { ...x, shape: [ids.length, D], data: rows };
    } else {
      out[name] = { ...x, data: x.data.map((v) => v * (1 + 0.1 * (rng.next() * 2 - 1))) };
    }
  }
  return out;
}

const tmp = await Deno.makeTempDir({ prefix: "pruned_vocab_" });
const targetTensors = randomTensors(parseConfig(TARGET_RAW), 21);
{
  // The target embeds every token outside the map alike (their mean), as the draft's other row does: a
  // random model's output swings with any change of its input, and the draft would otherwise accept
  // nearly nothing after the first such token. Its predictions still tell those tokens apart.
  const e = targetTensors["model.embed_tokens.weight"].data;
  const unmapped = Array.from({ length: V }, (_, t) => t).filter((t) => !inMap.has(t));
  const mean = new Float32Array(D);
  for (const u of unmapped) for (let k = 0; k < D; k++) mean[k] += e[u * D + k] / unmapped.length;
  for (const u of unmapped) e.set(mean, u * D);
}
await writeModelFolder(`${tmp}/target`, TARGET_RAW, targetTensors);
await writeModelFolder(`${tmp}/draft`, DRAFT_RAW, prunedTensors(targetTensors, IDS, 22));
const targetCkpt = await openCheckpoint(`${tmp}/target`);
const draftCkpt = await openCheckpoint(`${tmp}/draft`);
const target = (await loadModel(targetCkpt, "cpu")).model;
const draft = (await loadModel(draftCkpt, "cpu")).model;
globalThis.addEventListener("unload", () => {
  targetCkpt.checkpoint.close();
  draftCkpt.checkpoint.close();
  Deno.removeSync(tmp, { recursive: true });
});

/** One generation; returns its ids and tokens per step. */
async function generate(
  method: Method,
  prompt: number[],
  maxTokens: number,
  sampling: SamplingParams,
  seed: number,
  o: { draft?: CausalLM; drafter?: Drafter; processing?: LogitsProcessor } = {},
): Promise<{ ids: number[]; tokensPerStep: number }> {
  const ids: number[] = [];
  let tokensPerStep = 0;
  const common = { maxTokens, sampling, seed, eosIds: [] };
  // A processor goes in as a grammar: the one kind a request may give any processor of.
  const processed = o.processing && {
    processing: { grammar: { kind: "json_object" as const } },
    vocab: { size: V, bytes: () => undefined, eosIds: [] },
    grammar: () => o.processing!,
  };
  const events = o.drafter
    ? generateSpeculative(target, o.draft ?? draft, prompt, {
      ...common,
      drafter: o.drafter,
      verifier: "swor",
    })
    : decode(method, target, o.draft ?? draft, prompt, {
      ...common,
      ...processed,
      tree: TREE,
      acceptance: ACC,
    });
  for await (const ev of events) {
    if (ev.type === "token") ids.push(ev.id);
    if (ev.type === "done") tokensPerStep = ev.stats.tokensPerStep;
  }
  return { ids, tokensPerStep };
}

/** Seeded prompts of `n` ids in [3, V). */
function randomPrompt(seed: number, n: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => 3 + Math.floor(rng.next() * (V - 3)));
}

/** The target's distribution after `ids` (fresh cache): the exactness fixtures' helper on this pair. */
const targetDist = (ids: number[], sampling: SamplingParams) =>
  fixtureTargetDist(ids, sampling, () => Promise.resolve({ target, draft: target }));

// ---- config ----

function refuses(vocabMap: unknown, vocabSize: number, ...needles: string[]): void {
  const raw = { ...SMALL_CONFIG, vocab_size: vocabSize, vocab_map: vocabMap };
  assert.throws(() => parseConfig(raw, "d/config.json"), (e: Error) => {
    assert.ok(e instanceof ConfigError, e.message);
    for (const s of ["d/config.json", ...needles]) {
      assert.ok(e.message.includes(s), `"${e.message}" lacks "${s}"`);
    }
    return true;
  });
}

Deno.test("pruned vocab: config.json vocab_map is parsed and every rule is checked, naming the field", () => {
  const c = parseConfig(DRAFT_RAW);
  assert.equal(c.vocabSize, IDS.length);
  assert.equal(c.vocabMap?.outerVocabSize, V);
  assert.equal(c.vocabMap?.otherRow, OTHER_ROW);
  assert.deepEqual(Array.from(c.vocabMap!.ids), IDS);
  assert.equal(parseConfig(SMALL_CONFIG).vocabMap, undefined);

  refuses({ vocab_size: 100, ids: [5, -1, 9] }, 4, `"vocab_map.ids"`, "has 3 entries but vocab_size is 4");
  refuses(
    { vocab_size: 100, ids: [5, -1, 100] },
    3,
    `"vocab_map.ids[2]"`,
    "100 is outside vocab_map.vocab_size 100",
  );
  refuses(
    { vocab_size: 100, ids: [5, -2, 9] },
    3,
    `"vocab_map.ids[1]"`,
    "-2 is outside vocab_map.vocab_size 100",
  );
  refuses({ vocab_size: 100, ids: [5, -1, 5] }, 3, `"vocab_map.ids[2]"`, "5 repeats ids[0]");
  refuses(
    { vocab_size: 100, ids: [-1, 4, -1] },
    3,
    `"vocab_map.ids[2]"`,
    "a second -1 (the other row is ids[0])",
  );
  refuses({ vocab_size: 100, ids: [5, 6, 9] }, 3, `"vocab_map.ids"`, "no entry is -1");
  refuses({ vocab_size: 100, ids: [-1] }, 1, `"vocab_map.ids"`, "maps no token");
  refuses({ vocab_size: 100, ids: [5, -1, 1.5] }, 3, `"vocab_map.ids.2"`);
  refuses({ vocab_size: 0, ids: [5, -1] }, 2, `"vocab_map.vocab_size"`);
  refuses({ ids: [5, -1] }, 2, `"vocab_map.vocab_size"`);
  refuses([5, -1], 2, `"vocab_map"`);
});

// ---- the wrapper ----

Deno.test("pruned vocab: the wrapper maps input ids to rows and scatters each row over the outer vocabulary", async () => {
  const inner = await loadCpuModel(draftCkpt); // the same weights, unwrapped
  const wrapped = new VocabMappedLM(await loadCpuModel(draftCkpt), draftCkpt.config.vocabMap!);
  assert.equal(wrapped.config.vocabSize, V);
  assert.equal(wrapped.config.vocabMap, undefined);
  assert.equal(wrapped.config.nLayers, inner.config.nLayers);
  assert.ok(withVocabMap(inner) !== inner, "a model with a map is wrapped");
  assert.ok(withVocabMap(target) === target, "a model without a map is returned as it is");
  assert.equal(draft.config.vocabSize, V, "loadModel wraps a model with a map");

  const rowOf = (t: number) => IDS.includes(t) ? IDS.indexOf(t) : OTHER_ROW;
  const tokens = [3, 4, 10, 6, 76, 1]; // 4, 10, 76 and 1 are outside the map
  assert.ok(tokens.some((t) => !inMap.has(t)) && tokens.some((t) => inMap.has(t)));
  const positions = Int32Array.from(tokens, (_, i) => i);
  for (const logitRows of [undefined, [5, 1]]) {
    inner.kv.truncate(0);
    wrapped.kv.truncate(0);
    const want = await inner.forward({ tokens: Int32Array.from(tokens, rowOf), positions, logitRows });
    const got = await wrapped.forward({ tokens: Int32Array.from(tokens), positions, logitRows });
    assert.equal(wrapped.kv.length, tokens.length, "kv is the inner model's");
    const rows = logitRows?.length ?? tokens.length, Vi = IDS.length;
    assert.equal(got.length, rows * V);
    for (let r = 0; r < rows; r++) {
      for (let t = 0; t < V; t++) {
        const g = got[r * V + t];
        const w = inMap.has(t) ? want[r * Vi + IDS.indexOf(t)] : -Infinity;
        assert.equal(g, w, `row ${r}, token ${t}: got ${g}, want ${w}`);
      }
    }
  }
  // Every unmapped token is the other row: the same input, the same logits.
  const one = async (t: number) => {
    wrapped.kv.truncate(0);
    return await wrapped.forward({ tokens: Int32Array.of(t), positions: Int32Array.of(0) });
  };
  assert.deepEqual(await one(4), await one(76));
  assert.notDeepEqual(await one(4), await one(3));
  await assert.rejects(() => one(V), /token 77 at row 0 outside vocabulary \[0, 77\)/);
  inner.dispose();
  wrapped.dispose();
});

// ---- drafting where most logits are -Infinity ----

/** A draft that maps only ids 5 and 9 (support 2 < the children asked for). */
const TWO_RAW = { ...TARGET_RAW, vocab_size: 3, vocab_map: { vocab_size: V, ids: [9, -1, 5] } };
const twoDraft = withVocabMap(randomCpuModel(parseConfig(TWO_RAW), 31));

Deno.test("pruned vocab: drafters draw only tokens with q > 0, stop at the support, and keep q free of NaN", async () => {
  const q = new Float64Array(V);
  q[5] = 0.3;
  q[9] = 0.7;
  assert.deepEqual(drawWithoutReplacement(q, 6, new Rng(1)).sort((a, b) => a - b), [5, 9]);
  // The root with 4 children, two of them with 3 each: more than the support of 2, at every level.
  const parent = Int32Array.from([-1, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2]);
  const shape = { parent, depth: Int32Array.from(parent, (p) => (p < 0 ? 0 : p === 0 ? 1 : 2)) };
  // A processor leaving the draft nothing: it forbids both of the draft's tokens.
  const banMapped = new LogitsPipeline([{
    initial: () => null,
    advance: () => null,
    apply: (l: Float32Array) => (l[5] = l[9] = -Infinity),
  }]);
  const prompt = randomPrompt(3, 6);
  const drafters: [string, Drafter][] = [
    ["sequoia (swor)", new StaticTreeDrafter("sequoia", shape, "swor")],
    ["specinfer (iid)", new StaticTreeDrafter("specinfer", shape, "iid")],
    ["specexec", new SpecExecDrafter({ budget: 16, width: 8, batch: 4, decay: 0.95, maxRounds: 4 })],
  ];
  for (const [name, d] of drafters) {
    for (const sampling of [GREEDY, { temperature: 1, topK: 0, topP: 1 }]) {
      for (const processing of [undefined, { pipeline: banMapped, root: banMapped.initial(prompt) }]) {
        const what = `${name}, T ${sampling.temperature}${processing ? ", processed" : ""}`;
        twoDraft.kv.truncate(0);
        const tree = await d.draft({
          draft: twoDraft,
          prefixLen: 0,
          pending: prompt,
          history: prompt,
          sampling,
          rng: new Rng(7),
          maxNodes: 64,
          draftRoom: 64,
          processing,
        });
        const drawn = Array.from(tree.tokens.subarray(1));
        // SpecExec adds only children the processors allow: none here; the others draw from the raw rows.
        assert.ok(drawn.length > 0 || (name === "specexec" && processing), what);
        assert.ok(drawn.every((t) => t === 5 || t === 9), `${what}: drew ${drawn}`);
        for (const [v, kids] of tree.children.entries()) {
          if (name === "specexec") {
            assert.ok(kids.length <= 2, `${what}: node ${v} has ${kids.length} children`);
          }
          const qv = tree.q[v];
          if (!qv) continue;
          assert.ok(qv.every(Number.isFinite), `${what}: q of node ${v} has NaN`);
          assert.ok(Math.abs(qv[5] + qv[9] - 1) < 1e-9, `${what}: q of node ${v} outside the support`);
        }
      }
    }
  }
});

// ---- exactness ----

Deno.test("pruned vocab: greedy speculative output equals AR, the target's tokens often outside the draft's subset", async () => {
  let outside = 0, total = 0;
  for (const [i, d] of [draft, twoDraft].entries()) {
    for (let s = 0; s < (i === 0 ? 3 : 1); s++) {
      const prompt = randomPrompt(100 + s, 8);
      const ar = (await generate("ar", prompt, 48, GREEDY, 0)).ids;
      outside += ar.filter((t) => !inMap.has(t)).length;
      total += ar.length;
      for (const m of SPEC) {
        const { ids, tokensPerStep } = await generate(m, prompt, 48, GREEDY, 0, { draft: d });
        assert.deepEqual(ids, ar, `${m} differs from AR (prompt ${prompt}, draft ${i})`);
        if (i === 0) assert.ok(tokensPerStep > 1.2, `${m}: ${tokensPerStep} tokens/step`);
      }
    }
  }
  assert.ok(outside > total / 10 && outside < total, `${outside} of ${total} AR tokens outside the map`);
  // Processors that leave the draft nothing (a grammar allowing only tokens outside the map): the
  // drafters fall back to the raw rows, and the output is still the target's.
  const outsideOnly: LogitsProcessor = {
    initial: () => null,
    advance: () => null,
    apply: (l) => MAPPED.forEach((t) => (l[t] = -Infinity)),
  };
  const prompt = randomPrompt(200, 8);
  const ar = (await generate("ar", prompt, 24, GREEDY, 0, { processing: outsideOnly })).ids;
  assert.ok(ar.every((t) => !inMap.has(t)), `AR ${ar}`);
  for (const m of SPEC) {
    const { ids } = await generate(m, prompt, 24, GREEDY, 0, { processing: outsideOnly });
    assert.deepEqual(ids, ar, `${m} with processors differs from AR`);
    const sampled = (await generate(m, prompt, 24, SAMPLED, 5, { processing: outsideOnly })).ids;
    assert.ok(sampled.length === 24 && sampled.every((t) => !inMap.has(t)), `${m}, sampled: ${sampled}`);
  }
});

/** Sampled generations per method (two tokens each, ~2 ms on the CPU reference). */
const N = 600;

/** Categories of a token under `p`: the `k` likeliest tokens, then the rest inside the map, then the rest outside. */
function categorize(
  p: Float64Array,
  k: number,
): { of: (t: number) => number; probs: number[]; top: number[] } {
  const top = Array.from(p.keys()).sort((a, b) => p[b] - p[a]).slice(0, k);
  const probs = [...top.map((t) => p[t]), 0, 0];
  for (let t = 0; t < V; t++) if (!top.includes(t)) probs[inMap.has(t) ? k : k + 1] += p[t];
  return { of: (t) => (top.includes(t) ? top.indexOf(t) : inMap.has(t) ? k : k + 1), probs, top };
}

/** One chi-square statistic with what it was computed from. */
interface ChiSquare {
  x: number;
  counts: number[];
  probs: number[];
}

/**
 * Chi-squares of `N` sampled two-token generations against the target: the first token over the 4
 * likeliest + rest inside the map + rest outside; the second, each under the target's distribution after
 * that sample's first token, over its 2 likeliest + rest inside + rest outside (expected counts summed
 * over the samples; counts of unlike categoricals vary less than a multinomial's, so the chi-square
 * threshold stays conservative).
 */
async function sampledChiSquares(
  prompt: number[],
  run: (seed: number) => Promise<number[]>,
): Promise<{ first: ChiSquare; second: ChiSquare }> {
  const c1 = categorize(await targetDist(prompt, SAMPLED), 4);
  const counts1 = new Array(6).fill(0), counts2 = new Array(4).fill(0), expected2 = new Array(4).fill(0);
  const after = new Map<number, ReturnType<typeof categorize>>();
  for (let s = 0; s < N; s++) {
    const [a, b] = await run(1000 + s);
    counts1[c1.of(a)]++;
    if (!after.has(a)) after.set(a, categorize(await targetDist([...prompt, a], SAMPLED), 2));
    const c2 = after.get(a)!;
    counts2[c2.of(b)]++;
    c2.probs.forEach((p, k) => (expected2[k] += p / N));
  }
  return {
    first: { x: chiSquare(counts1, c1.probs), counts: counts1, probs: c1.probs },
    second: { x: chiSquare(counts2, expected2), counts: counts2, probs: expected2 },
  };
}

/** "first-token chi-square 3.1, counts 1,2,3, p 0.100,0.200" */
function describe(which: string, r: ChiSquare): string {
  return `${which}-token chi-square ${r.x.toFixed(1)}, counts ${r.counts}, p ${
    r.probs.map((x) => x.toFixed(3))
  }`;
}

Deno.test("pruned vocab: sampled output follows the target's distribution, mass outside the draft's subset included", async () => {
  const prompt = randomPrompt(7, 8);
  const { probs, top } = categorize(await targetDist(prompt, SAMPLED), 4);
  assert.ok(top.some((t) => !inMap.has(t)), `the likeliest tokens ${top} are all inside the map`);
  const outsideMass = probs[5] + top.reduce((a, t, k) => a + (inMap.has(t) ? 0 : probs[k]), 0);
  assert.ok(outsideMass > 0.15, `target mass outside the map ${outsideMass.toFixed(3)}`);
  // 1e-6 upper quantiles: chi-square(5) 35.9 -> 36; chi-square(3) 30.7 -> 31.
  for (const m of SPEC) {
    const r = await sampledChiSquares(
      prompt,
      async (seed) => (await generate(m, prompt, 2, SAMPLED, seed)).ids,
    );
    assert.ok(r.first.x < 36, `${m}: ${describe("first", r.first)}`);
    assert.ok(r.second.x < 31, `${m}: ${describe("second", r.second)}`);
  }
  // The same test catches a verifier that ignores the pruning: q as if renormalised over the full
  // vocabulary (half its mass spread over the tokens the draft cannot propose) is biased.
  const sequoia = makeDrafter("sequoia", TREE, ACC).drafter;
  const unmapped = Array.from({ length: V }, (_, t) => t).filter((t) => !inMap.has(t));
  const wrong: Drafter = {
    kind: "sequoia",
    needsDraftModel: true,
    async draft(input) {
      const tree = await sequoia.draft(input);
      const q = tree.q.map((qv) => {
        if (!qv) return qv;
        const w = qv.map((x) => x / 2);
        for (const t of unmapped) w[t] += 0.5 / unmapped.length;
        return w;
      });
      return { ...tree, q };
    },
  };
  const r = await sampledChiSquares(
    prompt,
    async (seed) => (await generate("sequoia", prompt, 2, SAMPLED, seed, { drafter: wrong })).ids,
  );
  assert.ok(r.first.x > 100, `the biased variant passed: ${describe("first", r.first)}`);
});

// ---- loading through the normal path ----

Deno.test("pruned vocab: an HF folder with vocab_map loads through openModelFolder + loadModel on cpu and wasm", async () => {
  // The bundled tokenizer (2,048 ids) is the target's: the draft maps 100 of them.
  const outer = 2048;
  const ids = Array.from({ length: 100 }, (_, i) => i * 20 + 3);
  ids.splice(40, 0, -1);
  const raw = { ...TARGET_RAW, vocab_size: ids.length, vocab_map: { vocab_size: outer, ids } };
  const dir = `${tmp}/draft_2048`;
  await writeModelFolder(dir, raw, randomTensors(parseConfig(raw), 41), { withTokenizer: true });
  const folder = await openModelFolder(dir);
  const prompt = folder.tokenizer.encode("And God said");
  assert.ok(prompt.length > 1 && prompt.every((t) => t < outer));
  const input = {
    tokens: Int32Array.from(prompt),
    positions: Int32Array.from(prompt, (_, i) => i),
  };
  const rows: Float32Array[] = [];
  for (const backend of ["cpu", "wasm"] as const) {
    const m = await loadModel(folder, backend, { threads: 1 });
    try {
      assert.equal(m.model.config.vocabSize, outer, backend);
      assert.equal(m.model.config.vocabMap, undefined, backend);
      const logits = await m.model.forward(input);
      assert.equal(logits.length, prompt.length * outer, backend);
      for (let t = 0; t < outer; t++) {
        assert.equal(Number.isFinite(logits[t]), ids.includes(t), `${backend}: token ${t}`);
      }
      rows.push(logits.filter(Number.isFinite));
    } finally {
      m.close();
    }
  }
  const err = maxRelErr(rows[1], rows[0]);
  assert.ok(err < 2e-2, `wasm vs cpu: max relative error ${err}`);
  folder.checkpoint.close();

  // The tokenizer is checked against the outer vocabulary.
  const small = { ...raw, vocab_map: { vocab_size: 1000, ids: ids.map((t) => (t < 0 ? t : t >> 1)) } };
  const dir2 = `${tmp}/draft_small`;
  await writeModelFolder(dir2, small, randomTensors(parseConfig(raw), 41), { withTokenizer: true });
  await assert.rejects(
    () => openModelFolder(dir2),
    /tokenizer.json has 2048 tokens but config.json vocab_map.vocab_size is 1000/,
  );
});
