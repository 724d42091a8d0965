/**
 * Verification on the device (shaders/tree_verify.wgsl) against its CPU oracle: the CPU verifiers fed
 * the same uniforms in their own order (src/speculative/verify/uniform_replay.ts), on seeded random
 * trees over awkward vocabularies, for every rule and several temperature / top-k / top-p settings; the
 * KV source lists it writes; then the whole fused step on the tiny pair: greedy output equal to AR,
 * O(depth) bytes read back per step, and both caches compacted on the device as the host would.
 */
import assert from "node:assert/strict";
import { Gpu } from "../src/gpu/device.ts";
import { PipelineCache } from "../src/gpu/pipelines.ts";
import { Recorder, UniformArena } from "../src/gpu/recorder.ts";
import * as ops from "../src/gpu/ops.ts";
import { argmax, probabilities, type SamplingParams } from "../src/model/sampling.ts";
import { f32Uniforms, Rng } from "../src/util/rng.ts";
import { childrenOf } from "../src/speculative/tree.ts";
import { verifyWithUniforms } from "../src/speculative/verify/uniform_replay.ts";
import type { VerifierKind } from "../src/speculative/verify/verifier.ts";
import { generateSpeculative, type SpeculativeEvent } from "../src/speculative/engine.ts";
import { StaticTreeDrafter } from "../src/speculative/drafters/static_tree.ts";
import { materialize, planSequoia } from "../src/speculative/sequoia_plan.ts";
import { generateAutoregressive } from "../src/decoding/autoregressive.ts";
import { gpuPair, run, targetFolder } from "./fixtures/exact.ts";
import { decode } from "../src/speculative/decode.ts";

const gpu = await Gpu.acquire();
const ctx: ops.OpContext = {
  rec: new Recorder(gpu, new UniformArena(gpu)),
  pipelines: new PipelineCache(gpu),
};
const upload = (a: Float32Array | Uint32Array) => gpu.createBufferWith("test", a);

/** A random tree of n nodes, breadth-first (each parent before its children), 1..4 children each. */
function randomTree(n: number, rng: Rng): Int32Array {
  const parent = new Int32Array(n).fill(-1);
  let next = 1;
  for (let v = 0; next < n; v++) {
    const b = 1 + Math.floor(rng.next() * 4);
    for (let c = 0; c < b && next < n; c++) parent[next++] = v;
  }
  return parent;
}

interface Case {
  n: number;
  vocab: number;
  sampling: SamplingParams;
  rule: VerifierKind;
  seed: number;
  /** How far the draft's rows are from the target's (uniform noise added to the logits). */
  noise: number;
}

/** One tree_verify dispatch over explicit rows; the whole out buffer and its list offsets. */
async function onDevice(a: {
  rule: VerifierKind;
  sampling: SamplingParams;
  logits: Float32Array;
  q: Float32Array;
  tokens: Uint32Array;
  children: number[][];
  draftSlots: Int32Array;
  uniforms: Float32Array;
}): Promise<{ got: Uint32Array; tOff: number; dOff: number }> {
  const n = a.children.length, V = a.logits.length / n;
  const { children, draftSlots } = a;
  const words = new Uint32Array(3 * n);
  let at = 0;
  for (let v = 0; v < n; v++) {
    words[v] = at;
    for (const ch of children[v]) words[n + 1 + at++] = ch;
  }
  words[n] = at;
  for (let v = 0; v < n; v++) words[2 * n + v] = draftSlots[v] < 0 ? 0xffffffff : draftSlots[v];
  const tOff = 64 * Math.ceil((2 + n) / 64), dOff = tOff + 64 * Math.ceil((1 + n) / 64);
  const out = gpu.createBuffer("verify out", (dOff + 1 + n) * 4);
  await ops.treeVerify(ctx, {
    rule: a.rule,
    logits: upload(a.logits),
    q: upload(a.q),
    tree: upload(words),
    tokens: upload(a.tokens),
    uniforms: upload(a.uniforms),
    work: gpu.createBuffer("verify work", 2 * V * 4),
    out,
    n,
    vocab: V,
    ...a.sampling,
    targetBase: 1000,
    tOffset: tOff,
    dOffset: dOff,
  });
  await ctx.rec.submit();
  return { got: new Uint32Array(await gpu.read(out, (dOff + 1 + n) * 4)), tOff, dOff };
}

/** Run one case on the device and with the oracle; the device's out words and the oracle's result. */
async function runCase(c: Case) {
  const rng = new Rng(c.seed);
  const { n, vocab: V } = c;
  const parent = randomTree(n, rng);
  const children = childrenOf(parent);
  // Target rows peaked enough that paths get accepted; draft rows a noisy copy of them.
  const logits = Float32Array.from({ length: n * V }, () => (rng.next() * 2 - 1) * 6);
  const draftLogits = logits.map((x) => x + (rng.next() * 2 - 1) * c.noise);
  const q = new Float32Array(n * V);
  const tokens = new Uint32Array(n);
  for (let v = 0; v < n; v++) {
    const row = draftLogits.subarray(v * V, (v + 1) * V);
    if (c.sampling.temperature > 0) q.set(probabilities(row, c.sampling), v * V);
    // Children: mostly the draft's likely tokens (so some are accepted and rejections chain when the
    // rows differ), some random ones.
    const t = row;
    const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => t[b] - t[a]);
    children[v].forEach((ch, i) => {
      tokens[ch] = rng.next() < 0.7 ? order[i + Math.floor(rng.next() * 2)] : Math.floor(rng.next() * V);
    });
  }
  tokens[0] = 7;
  const draftSlots = Int32Array.from({ length: n }, (_, i) => (i < n / 2 ? 100 + i : -1));
  const uniforms = c.rule === "greedy" ? new Float32Array(n) : f32Uniforms(rng, n);
  const { got, tOff, dOff } = await onDevice({
    rule: c.rule,
    sampling: c.sampling,
    logits,
    q,
    tokens,
    children,
    draftSlots,
    uniforms,
  });
  // The oracle.
  const row = (v: number) => logits.subarray(v * V, (v + 1) * V);
  const want = verifyWithUniforms(c.rule, { tokens, children }, {
    argmax: (v) => argmax(row(v)),
    p: (v) => probabilities(row(v), c.sampling),
    q: (v) => Float64Array.from(q.subarray(v * V, (v + 1) * V)),
  }, uniforms);
  return { got, want, tOff, dOff, tokens, children, draftSlots };
}

const SAMPLINGS: SamplingParams[] = [
  { temperature: 1, topK: 0, topP: 1 },
  { temperature: 0.7, topK: 40, topP: 1 },
  { temperature: 0.5, topK: 0, topP: 0.9 },
  { temperature: 1.3, topK: 25, topP: 0.8 },
];

Deno.test("gpu: tree_verify walks every rule exactly as the CPU verifiers on the same uniforms", async () => {
  const cases: Case[] = [];
  let seed = 1;
  for (const [n, vocab] of [[1, 300], [6, 1000], [17, 777], [40, 2051]]) {
    for (const noise of [1, 5]) {
      cases.push({
        n,
        vocab,
        sampling: { temperature: 0, topK: 0, topP: 1 },
        rule: "greedy",
        seed: seed++,
        noise,
      });
      for (const rule of ["match", "swor", "specinfer"] as VerifierKind[]) {
        for (const sampling of SAMPLINGS) cases.push({ n, vocab, sampling, rule, seed: seed++, noise });
      }
    }
  }
  let acceptedTotal = 0, deep = 0, chains = 0;
  for (const c of cases) {
    const { got, want, tOff, dOff, tokens, children, draftSlots } = await runCase(c);
    const what = `${c.rule} n=${c.n} V=${c.vocab} ${JSON.stringify(c.sampling)}`;
    const count = want.accepted.length;
    assert.equal(got[0], count, `${what}: accepted count`);
    assert.equal(got[1], want.bonus, `${what}: bonus`);
    let v = 0;
    for (let i = 0; i < count; i++) {
      const node = want.accepted[i];
      assert.equal(got[2 + i] & 0xffffff, tokens[node], `${what}: token ${i}`);
      assert.equal(got[2 + i] >>> 24, children[v].indexOf(node) + 1, `${what}: rank ${i}`);
      v = node;
    }
    // KV sources: the target's accepted nodes after its base; the draft's longest forwarded prefix.
    assert.deepEqual(Array.from(got.subarray(tOff, tOff + 1 + count)), [
      count,
      ...want.accepted.map((x) => 1000 + x),
    ]);
    const kept: number[] = [];
    for (const x of want.accepted) {
      if (draftSlots[x] < 0) break;
      kept.push(draftSlots[x]);
    }
    assert.deepEqual(Array.from(got.subarray(dOff, dOff + 1 + kept.length)), [kept.length, ...kept], what);
    acceptedTotal += count;
    if (count >= 2) deep++;
    // Rejection chains: a node where two or more children were tried.
    if (want.visits.some(([b, r]) => (r === 0 ? b : r) >= 2) && c.rule !== "greedy" && c.rule !== "match") {
      chains++;
    }
  }
  // Not a vacuous walk: paths get accepted, some deeper than one node.
  assert.ok(
    acceptedTotal > cases.length / 4,
    `only ${acceptedTotal} nodes accepted in ${cases.length} cases`,
  );
  assert.ok(deep >= 3, `only ${deep} cases accepted two or more nodes`);
  assert.ok(chains >= 10, `only ${chains} cases rejected a child and tried the next`);
});

Deno.test("gpu: tree_verify's rejection rules on a hand-checked 3-token step (residual p, SWOR's q)", async () => {
  // p = (0.2, 0.4, 0.4), q = (0.6, 0.3, 0.1), children tokens 0 then 1, r1 = 0.9, r2 = 0.5, u = 0.1:
  // x1 = 0 is rejected (0.9 * 0.6 >= 0.2); p' = norm(max(p - q, 0)) = (0, 0.25, 0.75). SWOR: q' =
  // (0, 0.75, 0.25), 0.5 * 0.75 >= 0.25 rejects x2 too, p'' = norm(max(p' - q', 0)) = (0, 0, 1): bonus 2.
  // SpecInfer keeps q: 0.5 * 0.3 < 0.25 accepts x2 = token 1.
  const logits = Float32Array.from([0.2, 0.4, 0.4, 1, 1, 1, 1, 1, 1].map(Math.log));
  const q = Float32Array.of(0.6, 0.3, 0.1, 0, 0, 0, 0, 0, 0);
  const tree = {
    sampling: { temperature: 1, topK: 0, topP: 1 },
    logits,
    q,
    tokens: Uint32Array.of(2, 0, 1),
    children: [[1, 2], [], []],
    draftSlots: Int32Array.of(5, 6, 7),
    uniforms: Float32Array.of(0.9, 0.5, 0.1),
  };
  for (const rule of ["swor", "specinfer"] as VerifierKind[]) {
    const want = verifyWithUniforms(rule, tree, {
      argmax: () => 0,
      p: (v) => probabilities(logits.subarray(v * 3, v * 3 + 3), tree.sampling),
      q: (v) => Float64Array.from(q.subarray(v * 3, v * 3 + 3)),
    }, tree.uniforms);
    const { got } = await onDevice({ ...tree, rule });
    assert.deepEqual([got[0], got[1]], [want.accepted.length, want.bonus], `${rule}: the oracle agrees`);
  }
  const swor = await onDevice({ ...tree, rule: "swor" });
  assert.deepEqual(Array.from(swor.got.subarray(0, 2)), [0, 2], "swor: both rejected, bonus from p''");
  const si = await onDevice({ ...tree, rule: "specinfer" });
  assert.deepEqual(
    Array.from(si.got.subarray(0, 3)),
    [1, 0, 1 | (2 << 24)],
    "specinfer: x2 accepted, bonus ~ p_2 = uniform",
  );
  assert.deepEqual(
    Array.from(si.got.subarray(si.dOff, si.dOff + 2)),
    [1, 7],
    "the draft keeps node 2's slot",
  );
});

Deno.test("gpu: tree_verify refuses a sampled rule at temperature 0", async () => {
  await assert.rejects(
    () =>
      ops.treeVerify(ctx, {
        rule: "swor",
        logits: upload(new Float32Array(4)),
        q: upload(new Float32Array(4)),
        tree: upload(new Uint32Array(4)),
        tokens: upload(new Uint32Array(4)),
        uniforms: upload(new Float32Array(4)),
        work: upload(new Float32Array(8)),
        out: upload(new Uint32Array(4)),
        n: 1,
        vocab: 4,
        temperature: 0,
        topK: 0,
        topP: 1,
        targetBase: 0,
        tOffset: 0,
        dOffset: 0,
      }),
    /needs temperature > 0/,
  );
});

async function collect(gen: AsyncGenerator<SpeculativeEvent>) {
  const ids: number[] = [];
  const steps: { bytes?: number; depth: number; syncs: number }[] = [];
  for await (const e of gen) {
    if (e.type === "token") ids.push(e.id);
    if (e.type === "step") {
      steps.push({ bytes: e.stats.readbackBytes, depth: e.stats.treeDepth, syncs: e.stats.syncs });
    }
  }
  return { ids, steps };
}

Deno.test("gpu: a fused Sequoia step verified on the device is AR's greedy output, O(depth) bytes per step", async () => {
  const { target, draft } = await gpuPair();
  const prompt = targetFolder.tokenizer.encode("And God said, Let there be");
  const ar: number[] = [];
  for await (
    const e of generateAutoregressive(target, prompt, {
      maxTokens: 40,
      sampling: { temperature: 0, topK: 0, topP: 1 },
      seed: 1,
    })
  ) {
    if (e.type === "token") ar.push(e.id);
  }
  const shape = materialize(planSequoia([0.6, 0.15, 0.08, 0.04], 12, 4), 12, 4);
  const run = (deviceVerify: boolean) =>
    collect(generateSpeculative(target, draft, prompt, {
      drafter: new StaticTreeDrafter("sequoia", shape, "swor"),
      verifier: "swor",
      maxTokens: 40,
      sampling: { temperature: 0, topK: 0, topP: 1 },
      seed: 1,
      deviceVerify,
    }));
  const dev = await run(true), host = await run(false);
  assert.deepEqual(dev.ids, ar, "device-verified greedy = AR");
  assert.deepEqual(host.ids, ar, "host-verified greedy = AR");
  const treeSteps = dev.steps.filter((s) => s.bytes !== undefined);
  assert.ok(treeSteps.length > 3, `${treeSteps.length} device-verified steps`);
  for (const s of treeSteps) {
    assert.ok(s.bytes! <= 4 * (s.depth + 16), `${s.bytes} bytes read back for a depth-${s.depth} tree`);
    assert.equal(s.syncs, 1, "one sync per step");
  }
  assert.ok(dev.steps.length < ar.length, "speculation accepted something");
});

Deno.test("gpu: sampled device-verified steps leave both caches as a fresh prefill of the text", async () => {
  const { target, draft } = await gpuPair();
  const prompt = targetFolder.tokenizer.encode("In the beginning");
  const shape = materialize(planSequoia([0.6, 0.15, 0.08, 0.04], 10, 4), 10, 4);
  for (
    const [kind, rule, draw] of [["sequoia", "swor", "swor"], ["specinfer", "specinfer", "iid"]] as const
  ) {
    const { ids, steps } = await collect(generateSpeculative(target, draft, prompt, {
      drafter: new StaticTreeDrafter(kind, shape, draw),
      verifier: rule,
      maxTokens: 48,
      sampling: { temperature: 0.8, topK: 0, topP: 1 },
      seed: 3,
    }));
    assert.ok(steps.every((s) => s.bytes !== undefined), `${kind}: every step verified on the device`);
    assert.ok(steps.length < ids.length, `${kind}: something accepted`);
    // Every token known to the test: the prompt and the emitted ids (a last step may have run past them).
    const text = [...prompt, ...ids];
    for (const m of [target, draft]) {
      const keep = Math.min(m.kv.length, text.length - 1);
      m.kv.truncate(keep);
      const rest = text.slice(keep);
      const got = await m.forward({
        tokens: Int32Array.from(rest),
        positions: Int32Array.from(rest, (_, i) => keep + i),
        logitRows: [rest.length - 1],
      });
      m.kv.truncate(0);
      const want = await m.forward({
        tokens: Int32Array.from(text),
        positions: Int32Array.from(text, (_, i) => i),
        logitRows: [text.length - 1],
      });
      let err = 0;
      for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
      assert.ok(
        err < 1e-3,
        `${kind}: ${m === target ? "target" : "draft"} cache differs by ${err} (kept ${keep})`,
      );
    }
  }
});

Deno.test("gpu: a SpecExec tree drafted on the host is verified on the target's device (greedy = AR, O(depth) bytes)", async () => {
  const { target, draft } = await gpuPair();
  const prompt = targetFolder.tokenizer.encode("And the earth was without form");
  const sampling = { temperature: 0, topK: 0, topP: 1 };
  const ar = (await run(await gpuPair(), "ar", prompt, 40, sampling)).ids;
  const bytes: { bytes?: number; depth: number }[] = [];
  const ids: number[] = [];
  for await (
    const e of decode("specexec", target, draft, prompt, {
      tree: { treeSize: 12, depth: 5, width: 2, budget: 48 },
      acceptance: [0.6, 0.15, 0.08],
      maxTokens: 40,
      sampling,
      seed: 0,
      eosIds: [],
    })
  ) {
    if (e.type === "token") ids.push(e.id);
    if (e.type === "step") bytes.push({ bytes: e.stats.readbackBytes, depth: e.stats.treeDepth });
  }
  assert.deepEqual(ids, ar);
  const verified = bytes.filter((b) => b.bytes !== undefined);
  assert.ok(verified.length >= 3, `${verified.length} device-verified steps`);
  for (const b of verified) {
    assert.ok(b.bytes! <= 4 * (b.depth + 16), `${b.bytes} bytes for depth ${b.depth}`);
  }
});
