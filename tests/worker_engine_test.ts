/**
 * The engine worker (serve --engine worker, the default) behaves like the in-thread engine: the same
 * greedy tokens for AR and a speculative method, a stop sequence ends the stream at the same token, a
 * cancel reaches a running CPU generation at its next step (the worker yields to its event loop), errors
 * come back with their message, and close ends the worker.
 */
import assert from "node:assert/strict";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, openModelFolder } from "../src/model/folder.ts";
import { SAMPLING_DEFAULTS } from "../src/model/sampling.ts";
import { loadCpuModel } from "../src/cpu/load.ts";
import { createApp, localService } from "../src/server/app.ts";
import { WorkerEngine } from "../src/server/worker_engine.ts";
import { freshCacheDir } from "./fixtures/server_process.ts";

Deno.env.set("SPECDEC_CACHE_DIR", freshCacheDir());
const engine = await WorkerEngine.open({
  model: DEFAULT_TARGET_DIR,
  draft: DEFAULT_DRAFT_DIR,
  backend: "cpu",
  reprofile: false,
  method: "ar",
  sampling: SAMPLING_DEFAULTS.profile,
});
const tf = await openModelFolder(DEFAULT_TARGET_DIR);
const df = await openModelFolder(DEFAULT_DRAFT_DIR);
const svc = {
  name: "tiny",
  tokenizer: tf.tokenizer,
  tree: engine.info.tree,
  acceptance: engine.info.acceptance,
};
const worker = createApp({ ...svc, engine });
const inline = createApp(
  localService({ ...svc, model: await loadCpuModel(tf), draft: await loadCpuModel(df) }),
);

/** Greedy engine options for `maxTokens` tokens (no tree, no adaptive plan, no EOS). */
function greedy(maxTokens: number) {
  return {
    tree: {},
    adaptive: false,
    maxTokens,
    sampling: { temperature: 0, topK: 0, topP: 1 },
    seed: 0,
    eosIds: [],
  };
}

async function generate(app: typeof worker, body: Record<string, unknown>) {
  const r = await app.request("/v1/generate", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: "And God said", temperature: 0, ...body }),
  });
  const j = await r.json();
  assert.equal(r.status, 200, JSON.stringify(j));
  return j;
}

Deno.test("worker engine: the same greedy tokens as the in-thread engine (ar, sequoia)", async () => {
  assert.equal(engine.context, 512);
  assert.ok(engine.hasDraft && engine.healthy);
  for (const method of ["ar", "sequoia"]) {
    const a = await generate(worker, { max_tokens: 24, method });
    const b = await generate(inline, { max_tokens: 24, method });
    assert.deepEqual(a.tokens, b.tokens, method);
    assert.equal(a.usage.completion_tokens, 24);
  }
});

Deno.test("worker engine: a stop sequence ends at the same token as in-thread (no token after it)", async () => {
  const full = await generate(inline, { max_tokens: 40 });
  const stop = full.text.slice(10, 14); // a string the greedy text contains
  const a = await generate(worker, { max_tokens: 40, stop: [stop] });
  const b = await generate(inline, { max_tokens: 40, stop: [stop] });
  assert.equal(a.finish_reason, "stop");
  assert.equal(a.text, b.text);
  assert.deepEqual(a.tokens, b.tokens);
  assert.equal(a.usage.completion_tokens, b.usage.completion_tokens);
  assert.ok(a.usage.completion_tokens < 40);
});

Deno.test("worker engine: a cancel stops a running CPU generation at its next step", async () => {
  const ac = new AbortController();
  let tokens = 0;
  let done: { finishReason: string; stats: { completionTokens: number } } | undefined;
  const prompt = tf.tokenizer.encode("And God said");
  const opts = greedy(400);
  for await (const ev of engine.decode("ar", prompt, opts, ac.signal)) {
    if (ev.type === "token" && ++tokens === 5) ac.abort();
    if (ev.type === "done") done = ev;
  }
  assert.equal(tokens, 5, "no token is delivered after the cancel");
  assert.ok(done, "the run still ends with its stats");
  assert.equal(done.finishReason, "cancelled");
  // Without yielding, the worker would have read the cancel only after all 400 tokens.
  assert.ok(done.stats.completionTokens < 400, `the worker stopped early: ${done.stats.completionTokens}`);
});

Deno.test("worker engine: an engine error comes back with its message", async () => {
  const long = Array.from({ length: 600 }, () => 5);
  const opts = greedy(4);
  await assert.rejects(async () => {
    for await (const _ of engine.decode("ar", long, opts, new AbortController().signal)) { /* drain */ }
  }, /context/);
  // The engine still works afterwards.
  const a = await generate(worker, { max_tokens: 4 });
  assert.equal(a.usage.completion_tokens, 4);
});

Deno.test("worker engine: close ends the worker; later generations are refused", async () => {
  await engine.close();
  const opts = greedy(4);
  await assert.rejects(async () => {
    for await (const _ of engine.decode("ar", [1, 2], opts, new AbortController().signal)) { /* drain */ }
  }, /closed/);
});
