/**
 * Pipelined AR decoding on the GPU (GenerateOptions.pipelined / stream): batch k+1 is submitted before
 * batch k's readback resolves, chained on the device from batch k's last id. The output must be the
 * unpipelined one token for token (greedy and seeded sampling), the cache must be truncated exactly
 * when EOS / max_tokens / a cancel lands mid-batch, and the counters must show the overlap.
 */
import assert from "node:assert/strict";
import { generateAutoregressive, type GenerateOptions } from "../src/decoding/autoregressive.ts";
import type { GenerationStats } from "../src/decoding/stats.ts";
import { Gpu } from "../src/gpu/device.ts";
import { GpuLlama } from "../src/gpu/llama/model.ts";
import { DEFAULT_TARGET_DIR, openModelFolder } from "../src/model/folder.ts";
import { GREEDY } from "../src/model/sampling.ts";

const gpu = await Gpu.acquire();
const folder = await openModelFolder(DEFAULT_TARGET_DIR);
const model = await GpuLlama.load(gpu, folder);
const prompt = folder.tokenizer.encode("And God said");

interface Run {
  ids: number[];
  finish: string;
  stats: GenerationStats;
  /** Readbacks and pipelined (overlapped) submissions of this run. */
  readbacks: number;
  overlapped: number;
}

async function run(
  o: Partial<GenerateOptions> & { maxTokens: number },
  onToken?: (count: number) => void,
): Promise<Run> {
  const r0 = model.counters.readbacks, o0 = model.counters.overlapped;
  const ids: number[] = [];
  let finish = "", stats: GenerationStats | undefined;
  for await (const ev of generateAutoregressive(model, prompt, { sampling: GREEDY, seed: 0, ...o })) {
    if (ev.type === "token") {
      ids.push(ev.id);
      onToken?.(ids.length);
    }
    if (ev.type === "done") [finish, stats] = [ev.finishReason, ev.stats];
  }
  return {
    ids,
    finish,
    stats: stats!,
    readbacks: model.counters.readbacks - r0,
    overlapped: model.counters.overlapped - o0,
  };
}

const unpipelined = await run({ maxTokens: 64, pipelined: false });

Deno.test("AR pipeline: greedy output equals the unpipelined path, streaming or not, at any batch size", async () => {
  assert.equal(unpipelined.ids.length, 64);
  assert.equal(unpipelined.overlapped, 0, "unpipelined: no submission while a readback is in flight");
  for (
    const o of [
      { pipelined: true },
      { pipelined: true, tokensPerSubmission: 3 },
      { pipelined: true, stream: false },
      { pipelined: false, stream: false, tokensPerReadback: 20 },
    ]
  ) {
    const r = await run({ maxTokens: 64, ...o });
    assert.deepEqual(r.ids, unpipelined.ids, JSON.stringify(o));
    assert.equal(r.finish, "length");
    assert.equal(model.kv.length, prompt.length + 63, "the cache holds every token but the last");
  }
});

Deno.test("AR pipeline: counters show each decode batch submitted while the previous readback was in flight", async () => {
  // Streaming, 8 tokens per batch: the prompt's token, then 63 tokens in 8 batches (7 x 8 + 7).
  const s = await run({ maxTokens: 64, pipelined: true, tokensPerSubmission: 8 });
  assert.equal(s.readbacks, 1 + 8);
  assert.equal(s.overlapped, 8, "every decode batch was submitted before the previous read resolved");
  assert.equal(s.stats.syncs, s.readbacks);
  // Not streaming, 32 per readback: the first token rides on the first batch: 64 tokens in 2 syncs.
  const b = await run({ maxTokens: 64, pipelined: true, stream: false, tokensPerReadback: 32 });
  assert.equal(b.readbacks, 2);
  assert.ok(b.readbacks / b.ids.length <= 1 / 32, "syncs per token <= 1 / tokens per readback");
  assert.equal(b.overlapped, 1);
});

Deno.test("AR pipeline: EOS and max_tokens mid-batch drop the batch in flight and truncate the cache exactly", async () => {
  // An EOS id that first appears mid-batch: not the first token of a decode batch (1, 9, 17, ...).
  const at = unpipelined.ids.findIndex((id, i) =>
    i > 8 && (i - 1) % 8 !== 0 && unpipelined.ids.indexOf(id) === i
  );
  assert.ok(at > 8);
  const eos = unpipelined.ids[at];
  for (const stream of [true, false]) {
    const r = await run({ maxTokens: 64, eosIds: [eos], stream });
    assert.equal(r.finish, "stop");
    assert.deepEqual(r.ids, unpipelined.ids.slice(0, at));
    // Every token drawn but the last (the EOS) is cached: the emitted ones.
    assert.equal(model.kv.length, prompt.length + at, `stream ${stream}`);
    // The cache is the sequence's: decoding on from it gives the unpipelined tokens after the EOS.
    const more = await model.decodeSteps(eos, 4, { kind: "argmax" });
    assert.deepEqual(Array.from(more), unpipelined.ids.slice(at + 1, at + 5));
  }
  for (const maxTokens of [13, 1]) {
    const r = await run({ maxTokens });
    assert.equal(r.finish, "length");
    assert.deepEqual(r.ids, unpipelined.ids.slice(0, maxTokens));
    assert.equal(model.kv.length, prompt.length + maxTokens - 1);
    const more = await model.decodeSteps(r.ids[maxTokens - 1], 3, { kind: "argmax" });
    assert.deepEqual(Array.from(more), unpipelined.ids.slice(maxTokens, maxTokens + 3));
  }
});

Deno.test("AR pipeline: a cancel mid-stream stops at the next token, drops the batch in flight, and the next run is right", async () => {
  const ac = new AbortController();
  const r = await run({ maxTokens: 64, signal: ac.signal }, (count) => {
    if (count === 11) ac.abort(); // mid-batch: tokens 9..16 are the second decode batch
  });
  assert.equal(r.finish, "cancelled");
  assert.deepEqual(r.ids, unpipelined.ids.slice(0, 11));
  assert.equal(model.kv.length, prompt.length + 10);
  assert.equal(r.stats.targetForwards, 11);
  const again = await run({ maxTokens: 64 });
  assert.deepEqual(again.ids, unpipelined.ids);
});

Deno.test("AR pipeline: a seeded sampled run draws the same tokens pipelined or not, at any batch size", async () => {
  const sampling = { temperature: 0.9, topK: 0, topP: 0.95 };
  const ref = await run({ maxTokens: 48, sampling, seed: 11, pipelined: false });
  for (
    const o of [{ pipelined: true }, { pipelined: true, tokensPerSubmission: 5 }, { stream: false }]
  ) {
    const r = await run({ maxTokens: 48, sampling, seed: 11, ...o });
    assert.deepEqual(r.ids, ref.ids, JSON.stringify(o));
  }
  const other = await run({ maxTokens: 48, sampling, seed: 12 });
  assert.notDeepEqual(other.ids, ref.ids, "the seed matters");
});

Deno.test("AR pipeline: the pending-batch API refuses a batch whose ids were overwritten or a moved cache", async () => {
  model.kv.truncate(0);
  const p = await model.beginForwardIds({
    tokens: Int32Array.from(prompt),
    positions: Int32Array.from(prompt, (_, i) => i),
    logitRows: [prompt.length - 1],
  }, { kind: "argmax" });
  const a = await model.beginDecodeSteps(p, 4, { kind: "argmax" });
  const b = await model.beginDecodeSteps(a, 4, { kind: "argmax" }); // overwrites p's buffer
  await assert.rejects(() => model.finishIds(p), /overwritten/);
  const ids = await model.finishIds(a, true);
  assert.deepEqual(Array.from(ids), unpipelined.ids.slice(0, 5), "the input token first, then 4 steps");
  assert.deepEqual(Array.from(await model.finishIds(b)), unpipelined.ids.slice(5, 9));
  model.kv.truncate(model.kv.length - 1);
  await assert.rejects(() => model.beginDecodeSteps(b, 2, { kind: "argmax" }), /ended at/);
});

globalThis.addEventListener("unload", () => {
  model.dispose();
  folder.checkpoint.close();
});
