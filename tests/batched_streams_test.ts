/**
 * Batched streams (src/batching/): concurrent generations whose forwards run as one batched forward
 * give every stream exactly the output it gets alone — greedy and seeded sampling, mixed methods and
 * lengths, a cancellation and an EOS in the same batch — on the CPU reference and the wasm backend;
 * and the batched forward's logits are bit-identical to each sequence's solo forward.
 */
import assert from "node:assert/strict";
import { loadCpuModel } from "../src/cpu/load.ts";
import { loadWasmModel } from "../src/wasm/load.ts";
import type { CausalLM } from "../src/model/causal_lm.ts";
import { isMultiSequence, type MultiSequence } from "../src/model/capabilities.ts";
import { GREEDY, type SamplingParams } from "../src/model/sampling.ts";
import { decode } from "../src/speculative/decode.ts";
import type { Method } from "../src/speculative/methods.ts";
import { type BatchRecord } from "../src/batching/batcher.ts";
import { StreamPool } from "../src/batching/stream_pool.ts";
import { ACC, draftFolder, prompts, targetFolder } from "./fixtures/exact.ts";

/** One stream of the mixed batch. */
interface StreamSpec {
  method: Method;
  prompt: number;
  maxTokens: number;
  sampling: SamplingParams;
  seed: number;
  /** Abort once this many tokens arrived. */
  cancelAfter?: number;
  /** Stop at this token (index into the stream's solo output, resolved before the batched run). */
  eosAt?: number;
}

/** Prompt -1: all eight prompts in one (96 tokens: a prefill longer than PREFILL_CHUNK, in chunks). */
const LONG = -1;

const T07: SamplingParams = { temperature: 0.7, topK: 0, topP: 1 };

const STREAMS: StreamSpec[] = [
  { method: "ar", prompt: 0, maxTokens: 40, sampling: GREEDY, seed: 1 },
  { method: "sequoia", prompt: 1, maxTokens: 33, sampling: GREEDY, seed: 2 },
  { method: "specexec", prompt: 2, maxTokens: 25, sampling: T07, seed: 5 },
  { method: "lookup", prompt: 3, maxTokens: 30, sampling: GREEDY, seed: 3 },
  { method: "chain", prompt: 4, maxTokens: 36, sampling: T07, seed: 9, cancelAfter: 7 },
  { method: "specinfer", prompt: 5, maxTokens: 40, sampling: GREEDY, seed: 4, eosAt: 12 },
  { method: "sequoia", prompt: 6, maxTokens: 28, sampling: T07, seed: 11 },
  { method: "ar", prompt: 7, maxTokens: 17, sampling: T07, seed: 12 },
  { method: "sequoia", prompt: LONG, maxTokens: 20, sampling: GREEDY, seed: 13 },
  { method: "ar", prompt: LONG, maxTokens: 12, sampling: T07, seed: 14 },
];

async function generate(
  target: CausalLM,
  draft: CausalLM,
  prompt: number[],
  s: StreamSpec,
  eosIds: number[],
): Promise<number[]> {
  const ac = new AbortController();
  const ids: number[] = [];
  for await (
    const ev of decode(s.method, target, draft, prompt, {
      tree: { treeSize: 12, depth: 5, width: 2, budget: 16 },
      acceptance: ACC,
      maxTokens: s.maxTokens,
      sampling: s.sampling,
      seed: s.seed,
      eosIds,
      signal: ac.signal,
    })
  ) {
    if (ev.type === "token") {
      ids.push(ev.id);
      if (s.cancelAfter !== undefined && ids.length >= s.cancelAfter) ac.abort();
    }
  }
  return ids;
}

/**
 * Every stream alone on `solo` (one sequence each), then all of them through a pool over `batched`
 * (`size` at a time, a new one starting as one ends); each stream's tokens must be its solo tokens.
 */
async function assertBatchedMatchesSolo(
  solo: { target: CausalLM; draft: CausalLM },
  batched: { target: CausalLM & MultiSequence; draft: CausalLM & MultiSequence },
): Promise<BatchRecord[]> {
  const eight = await prompts(8);
  const ps = (i: number) => i === LONG ? eight.flat() : eight[i];
  const eos = STREAMS.map(() => [] as number[]);
  const want: number[][] = [];
  for (const [i, s] of STREAMS.entries()) {
    if (s.eosAt !== undefined) {
      const full = await generate(solo.target, solo.draft, ps(s.prompt), s, []);
      eos[i] = [full[s.eosAt]];
    }
    want.push(await generate(solo.target, solo.draft, ps(s.prompt), s, eos[i]));
  }
  const records: BatchRecord[] = [];
  const pool = new StreamPool(batched.target, batched.draft, { onBatch: (r) => records.push(r) });
  const got: number[][] = [];
  let next = 0;
  const worker = async () => {
    while (next < STREAMS.length) {
      const i = next++;
      const lease = await pool.acquire();
      try {
        got[i] = await generate(lease.target, lease.draft!, ps(STREAMS[i].prompt), STREAMS[i], eos[i]);
      } finally {
        lease.release();
      }
    }
  };
  await Promise.all(Array.from({ length: pool.size }, worker));
  for (const [i, s] of STREAMS.entries()) {
    if (s.cancelAfter !== undefined) {
      // Cancelled at its next step: at least cancelAfter tokens, and a prefix of the solo run's.
      assert.ok(
        got[i].length >= s.cancelAfter && got[i].length < s.maxTokens,
        `stream ${i}: ${got[i].length}`,
      );
      assert.deepEqual(got[i], want[i].slice(0, got[i].length), `stream ${i} (${s.method}, cancelled)`);
    } else {
      assert.deepEqual(got[i], want[i], `stream ${i} (${s.method}, T=${s.sampling.temperature})`);
    }
    if (s.eosAt !== undefined) assert.ok(got[i].length <= s.eosAt + 1, `stream ${i} stopped at its EOS`);
  }
  // The batches did batch: some forwards held several streams.
  assert.ok(records.some((r) => r.streams > 1), "no forward held more than one stream");
  assert.equal(pool.active, 0);
  return records;
}

Deno.test("batched streams (cpu reference): each of 10 mixed streams, 4 at a time, = its solo run", async () => {
  const solo = { target: await loadCpuModel(targetFolder), draft: await loadCpuModel(draftFolder) };
  const batched = {
    target: await loadCpuModel(targetFolder, undefined, 4),
    draft: await loadCpuModel(draftFolder, undefined, 4),
  };
  assert.ok(isMultiSequence(batched.target) && !isMultiSequence(solo.target));
  await assertBatchedMatchesSolo(solo, batched);
});

Deno.test("batched streams (wasm): each of 10 mixed streams, 4 at a time, = its solo run", async () => {
  const solo = {
    target: await loadWasmModel(targetFolder, { threads: 2 }),
    draft: await loadWasmModel(draftFolder, { threads: 2 }),
  };
  const batched = {
    target: await loadWasmModel(targetFolder, { threads: 2, sequences: 4 }),
    draft: await loadWasmModel(draftFolder, { threads: 2, sequences: 4 }),
  };
  try {
    const records = await assertBatchedMatchesSolo(solo, batched);
    assert.ok(records.some((r) => r.model === "draft" && r.streams > 1), "draft forwards were batched too");
  } finally {
    for (const m of [solo.target, solo.draft, batched.target, batched.draft]) m.dispose();
  }
});

Deno.test("wasm forwardBatch: logits bit-identical to each sequence's solo forward, chunked and masked", async () => {
  const solo = await loadWasmModel(targetFolder, { threads: 2 });
  // chunk 128 with 3 parts of 61 + 70 + 9 rows: the batch spans two chunks, a part spans both.
  const batched = await loadWasmModel(targetFolder, { threads: 2, sequences: 3 });
  try {
    const ps = await prompts(3);
    const lens = [61, 70, 9];
    const parts = lens.map((n, s) => {
      const tokens = Int32Array.from({ length: n }, (_, i) => ps[s][i % ps[s].length]);
      return { seq: s, input: { tokens, positions: Int32Array.from(tokens, (_, i) => i) } };
    });
    // A tree-shaped mask for the last part: row i sees rows 0 and i only.
    const n = lens[2];
    const mask = new Uint8Array(n * n);
    for (let i = 0; i < n; i++) mask[i * n] = mask[i * n + i] = 1;
    parts[2] = { seq: 2, input: { ...parts[2].input, mask } as typeof parts[2]["input"] };
    const out = await batched.forwardBatch(parts);
    for (const [s, p] of parts.entries()) {
      solo.kv.truncate(0);
      const want = solo.forwardSync(p.input);
      assert.deepEqual(out[s], want, `sequence ${s}`);
      assert.equal(batched.cacheOf(s).length, lens[s]);
    }
    // A refused batch (sequence 1 over its capacity) changes no cache.
    const big = Int32Array.from({ length: batched.kv.capacity }, () => 5);
    await assert.rejects(
      () =>
        batched.forwardBatch([
          { seq: 0, input: { tokens: Int32Array.of(3), positions: Int32Array.of(61) } },
          { seq: 1, input: { tokens: big, positions: Int32Array.from(big, (_, i) => i) } },
        ]),
      /exceed the KV capacity/,
    );
    assert.deepEqual([0, 1, 2].map((s) => batched.cacheOf(s).length), lens);
    await assert.rejects(
      () => batched.forwardBatch([parts[0], { ...parts[0] }]),
      /appears twice/,
    );
  } finally {
    solo.dispose();
    batched.dispose();
  }
});

Deno.test("greedy speculation under a node limit that changes every step (batched streams' share) = AR", async () => {
  const pair = { target: await loadCpuModel(targetFolder), draft: await loadCpuModel(draftFolder) };
  const [p] = await prompts(1);
  const run = async (method: Method, nodeLimit?: () => number) => {
    const ids: number[] = [];
    let steps = 0, plain = 0;
    for await (
      const ev of decode(method, pair.target, pair.draft, p, {
        tree: { treeSize: 12, depth: 5, width: 2, budget: 16 },
        acceptance: ACC,
        maxTokens: 48,
        sampling: GREEDY,
        seed: 0,
        eosIds: [],
        ...(nodeLimit ? { nodeLimit } : {}),
      })
    ) {
      if (ev.type === "token") ids.push(ev.id);
      if (ev.type === "step") {
        steps++;
        if (ev.stats.treeSize === 1) plain++;
      }
    }
    return { ids, steps, plain };
  };
  const ar = (await run("ar")).ids;
  for (const m of ["chain", "specinfer", "sequoia", "specexec", "lookup"] as Method[]) {
    let k = 0;
    const limits = [1, 5, 2, 12, 1, 3];
    const got = await run(m, () => limits[k++ % limits.length]);
    assert.deepEqual(got.ids, ar, `${m} under a changing node limit`);
    if (m !== "lookup") {
      assert.ok(got.plain > 0, `${m}: limit 1 made plain steps (${got.plain} of ${got.steps})`);
    }
  }
});

Deno.test("stream pool: a lease waits while every sequence is leased, and gets the one released", async () => {
  const target = await loadCpuModel(targetFolder, 64, 3);
  const pool = new StreamPool(target, undefined, { first: 1 });
  assert.equal(pool.size, 2);
  const a = await pool.acquire(), b = await pool.acquire();
  assert.deepEqual([a.seq, b.seq].sort(), [1, 2], "sequence 0 stays the model's own");
  let c: Awaited<ReturnType<StreamPool["acquire"]>> | undefined;
  const waiting = pool.acquire().then((l) => (c = l));
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(c, undefined, "no free sequence: it waits");
  b.release();
  b.release(); // idempotent
  await waiting;
  assert.equal(c!.seq, b.seq);
  assert.equal(pool.active, 2);
  a.release();
  c!.release();
  assert.equal(pool.active, 0);
});
