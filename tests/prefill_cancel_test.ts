/**
 * A long prefill is cancellable between its chunks on every backend (ForwardInput.signal): a 450-token
 * prompt on the tiny target stops early when its request is cancelled (chunks counted by the backends'
 * counters, never timed), the generation ends "cancelled" with no token, and the next generation on the
 * same model equals one on a freshly loaded model.
 */
import assert from "node:assert/strict";
import { generateAutoregressive } from "../src/decoding/autoregressive.ts";
import { generateSpeculative } from "../src/speculative/engine.ts";
import { makeDrafter } from "../src/speculative/methods.ts";
import { Gpu } from "../src/gpu/device.ts";
import { GpuLlama } from "../src/gpu/llama/model.ts";
import { loadWasmModel } from "../src/wasm/load.ts";
import { CPU_CHUNK } from "../src/cpu/llama.ts";
import { loadCpuModel } from "../src/cpu/load.ts";
import { type CausalLM, ForwardCancelled } from "../src/model/causal_lm.ts";
import { DEFAULT_TARGET_DIR, openModelFolder } from "../src/model/folder.ts";
import { GREEDY } from "../src/model/sampling.ts";
import { Rng } from "../src/util/rng.ts";

const folder = await openModelFolder(DEFAULT_TARGET_DIR);
const rng = new Rng(3);
const PROMPT = Array.from({ length: 450 }, () => 3 + (rng.nextU32() % 2000));

async function generate(model: CausalLM, signal?: AbortSignal): Promise<{ ids: number[]; finish: string }> {
  const ids: number[] = [];
  let finish = "";
  for await (
    const ev of generateAutoregressive(model, PROMPT, { maxTokens: 12, sampling: GREEDY, seed: 0, signal })
  ) {
    if (ev.type === "token") ids.push(ev.id);
    if (ev.type === "done") finish = ev.finishReason;
  }
  return { ids, finish };
}

Deno.test("prefill cancel (gpu): a cancel between chunks stops the prefill; the next generation is right", async () => {
  const gpu = await Gpu.acquire();
  const g = await GpuLlama.load(gpu, folder, { maxBatch: 32 }); // 450 tokens: 15 chunks
  const fresh = await GpuLlama.load(gpu, folder, { maxBatch: 32 });
  const want = await generate(fresh);
  assert.equal(want.ids.length, 12);
  // Abort as the third submission goes out (the trigger is the counter itself, not a clock).
  const ac = new AbortController();
  const c = g.counters;
  let submissions = c.submissions;
  const abortAt = submissions + 3;
  Object.defineProperty(c, "submissions", {
    get: () => submissions,
    set: (v: number) => {
      submissions = v;
      if (v === abortAt) ac.abort();
    },
    configurable: true,
  });
  const f0 = c.forwards, r0 = c.readbacks;
  const got = await generate(g, ac.signal);
  assert.equal(got.finish, "cancelled");
  assert.deepEqual(got.ids, []);
  const chunks = c.forwards - f0;
  assert.equal(chunks, 3, `stopped after 3 of ${Math.ceil(PROMPT.length / 32)} chunks`);
  assert.equal(c.readbacks - r0, 0, "nothing read back");
  assert.equal(g.kv.length, 0, "the cache dropped the chunks that ran");
  assert.deepEqual(await generate(g), want);
  // The forward itself: ForwardCancelled, the cache as before it.
  g.kv.truncate(0);
  await g.forward({ tokens: Int32Array.of(1, 2), positions: Int32Array.of(0, 1) });
  const ac2 = new AbortController();
  ac2.abort();
  await assert.rejects(
    () =>
      g.forward({
        tokens: Int32Array.from(PROMPT.slice(0, 100)),
        positions: Int32Array.from({ length: 100 }, (_, i) => i + 2),
        logitRows: [99],
        signal: ac2.signal,
      }),
    (e) => e instanceof ForwardCancelled && e.done === 0 && e.total === 4,
  );
  assert.equal(g.kv.length, 2);
  g.dispose();
  fresh.dispose();
});

Deno.test("prefill cancel (gpu): the speculative engine stops its prefill too", async () => {
  const gpu = await Gpu.acquire();
  const g = await GpuLlama.load(gpu, folder, { maxBatch: 32 });
  const ac = new AbortController();
  ac.abort();
  const f0 = g.counters.forwards;
  const { drafter, verifier } = makeDrafter("lookup", {});
  let finish = "";
  const gen = generateSpeculative(g, undefined, PROMPT, {
    drafter,
    verifier,
    maxTokens: 8,
    sampling: GREEDY,
    seed: 0,
    signal: ac.signal,
  });
  for await (const ev of gen) if (ev.type === "done") finish = ev.finishReason;
  assert.equal(finish, "cancelled");
  assert.equal(g.counters.forwards - f0, 0, "no chunk ran");
  g.dispose();
});

/** Abort on the first timer turn: the chunked CPU and wasm forwards yield one between chunks. */
function abortSoon(): AbortSignal {
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 0);
  return ac.signal;
}

Deno.test("prefill cancel (wasm): the forward yields between chunks and stops; the next generation is right", async () => {
  const m = await loadWasmModel(folder, { threads: 2 });
  const want = await generate(m);
  const c0 = m.counters.chunks;
  const got = await generate(m, abortSoon());
  assert.equal(got.finish, "cancelled");
  assert.deepEqual(got.ids, []);
  const total = Math.ceil(PROMPT.length / m.chunk);
  assert.ok(total >= 3);
  assert.equal(m.counters.chunks - c0, 1, `stopped after 1 of ${total} chunks`);
  assert.equal(m.kv.length, 0);
  assert.deepEqual(await generate(m), want);
  m.dispose();
});

Deno.test("prefill cancel (cpu): the forward yields between chunks and stops; the next generation is right", async () => {
  const m = await loadCpuModel(folder);
  const want = await generate(m);
  const c0 = m.counters.forwards;
  const got = await generate(m, abortSoon());
  assert.equal(got.finish, "cancelled");
  assert.equal(
    m.counters.forwards - c0,
    1,
    `stopped after 1 of ${Math.ceil(PROMPT.length / CPU_CHUNK)} chunks`,
  );
  assert.equal(m.kv.length, 0);
  assert.deepEqual(await generate(m), want);
  // Chunked and whole forwards give the same logits (a signal that never fires).
  m.kv.truncate(0);
  const input = {
    tokens: Int32Array.from(PROMPT.slice(0, 150)),
    positions: Int32Array.from({ length: 150 }, (_, i) => i),
    logitRows: [149, 10, 70],
  };
  const whole = await m.forward(input);
  m.kv.truncate(0);
  const chunked = await m.forward({ ...input, signal: new AbortController().signal });
  assert.deepEqual(chunked, whole);
  assert.equal(m.kv.length, 150);
});
