/**
 * `serve --method auto` chooses each request's method from predicted speeds: on the bundled tiny pair
 * (wasm backend) with a hand-made hardware profile (a flat t(n), as on a GPU: Sequoia pays on ordinary
 * text; a self-repeating prompt is lookup's), two requests with different prompts and temperatures get
 * different methods, each response says which and every candidate's predicted tok/s, greedy output stays
 * AR's, a request naming its method keeps it, a tree field restricts the candidates to those reading it;
 * the same through the engine worker.
 */
import assert from "node:assert/strict";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, openModelFolder } from "../src/model/folder.ts";
import { SAMPLING_DEFAULTS } from "../src/model/sampling.ts";
import { profileKey, WasmHost } from "../src/runtime/hardware_profile.ts";
import type { HardwareCosts } from "../src/runtime/hardware_profile.ts";
import { createApp } from "../src/server/app.ts";
import type { EngineInfo, EngineOpenRequest } from "../src/server/engine_protocol.ts";
import type { DecodeEngine } from "../src/server/engine.ts";
import { RuntimeEngine } from "../src/server/runtime_engine.ts";
import { WorkerEngine } from "../src/server/worker_engine.ts";

const THREADS = 2;
const tf = await openModelFolder(DEFAULT_TARGET_DIR);
const df = await openModelFolder(DEFAULT_DRAFT_DIR);

/**
 * A private cache directory whose profile.json holds hand-made costs for this machine's wasm key (the
 * acceptance vectors at T = 0 and 0.7 are the bundled draft's stored ones): verifying 32 tokens costs
 * 1.4 x one, the draft a quarter of the target, SpecExec measured slow.
 */
async function handMadeProfile(): Promise<string> {
  const dir = Deno.makeTempDirSync({ prefix: "method_auto_" });
  const costs: HardwareCosts = {
    sizes: [1, 2, 4, 8, 16, 32],
    target: [2, 2.05, 2.1, 2.2, 2.4, 2.8],
    draft: [0.5, 0.5, 0.52, 0.55, 0.6, 0.7],
    sync: 0,
    arTokensPerSubmission: 1,
    host: { ar: 0, step: [0, 0] },
    specexec: [{ budget: 32, tokPerS: 100, tokensPerStep: 2 }],
  };
  const key = await profileKey(new WasmHost(THREADS), tf, df);
  const entry = { ...costs, key, measured_at: new Date().toISOString() };
  await Deno.writeTextFile(`${dir}/profile.json`, JSON.stringify({ version: 1, entries: [entry] }));
  return dir;
}

const request = (cacheDir: string): EngineOpenRequest => ({
  model: DEFAULT_TARGET_DIR,
  draft: DEFAULT_DRAFT_DIR,
  backend: "wasm",
  threads: THREADS,
  reprofile: false,
  method: "auto",
  sampling: SAMPLING_DEFAULTS.profile,
  cacheDir,
});

/** The app serve.ts builds over an engine. */
const appOf = (engine: DecodeEngine & { info: EngineInfo }) =>
  createApp({
    name: "tiny",
    tokenizer: tf.tokenizer,
    engine,
    defaultMethod: engine.info.defaultMethod,
    tree: engine.info.tree,
    acceptance: engine.info.acceptance,
    status: engine.info.status,
    backend: engine.info.backend,
  });

/** The tiny target's own greedy loop, which repeats itself: lookup copies from it. */
const LOOPING =
  "And the LORD said unto Moses, Behold, I will not be a burnt offering, nor a burnt offering, " +
  "and the burnt offering, and the burnt offering,";

interface Prediction {
  method: string;
  tokPerS: number;
}

async function generate(app: ReturnType<typeof createApp>, body: Record<string, unknown>) {
  const r = await app.request("/v1/generate", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ max_tokens: 24, ...body }),
  });
  const j = await r.json();
  return { status: r.status, ...j };
}

/** Every request this file sends, and what each answer must say. */
async function check(app: ReturnType<typeof createApp>): Promise<void> {
  const st = await (await app.request("/v1/status")).json();
  assert.equal(st.default_method, "auto");

  // A prompt that repeats itself, greedy: lookup; the response names it and every candidate's speed.
  const loop = await generate(app, { prompt: LOOPING, temperature: 0 });
  assert.equal(loop.status, 200, JSON.stringify(loop));
  assert.equal(loop.method, "lookup", loop.method_choice?.reason.summary);
  const c = loop.method_choice;
  assert.equal(c.method, "lookup");
  assert.deepEqual(c.predictions.map((p: Prediction) => p.method).sort(), [
    "ar",
    "lookup",
    "sequoia",
    "specexec",
  ]);
  assert.equal(c.predictions[0].method, "lookup", "fastest first");
  assert.ok(c.predictions.every((p: Prediction) => p.tokPerS > 0));
  assert.equal(c.reason.rule, "fastest predicted");
  assert.ok(c.reason.speedup > 1);
  assert.ok(c.reason.runnerUp.tokPerS < 0.9 * c.reason.tokPerS, c.reason.summary);

  // An ordinary prompt at the default temperature: Sequoia (its pick at T = 0.7, the startup plan).
  const plain = await generate(app, { prompt: "And God said", temperature: 0.7, seed: 1 });
  assert.equal(plain.status, 200, JSON.stringify(plain));
  assert.equal(plain.method, "sequoia", plain.method_choice?.reason.summary);
  const lookupThere = plain.method_choice.predictions.find((p: Prediction) => p.method === "lookup");
  const arThere = plain.method_choice.predictions.find((p: Prediction) => p.method === "ar");
  assert.ok(Math.abs(lookupThere.tokPerS - arThere.tokPerS) < 1e-6, "nothing to copy: lookup predicts AR");

  // Greedy output is AR's whatever auto chose (T = 0: the stored acceptance vector there, sequoia).
  for (const prompt of [LOOPING, "And God said"]) {
    const auto = await generate(app, { prompt, temperature: 0 });
    const ar = await generate(app, { prompt, temperature: 0, method: "ar" });
    assert.equal(ar.method, "ar");
    assert.equal(ar.method_choice, undefined, "a named method is kept, not chosen");
    assert.deepEqual(auto.tokens, ar.tokens, `${auto.method} vs ar on ${JSON.stringify(prompt)}`);
  }
  const greedy = await generate(app, { prompt: "And God said", temperature: 0 });
  assert.equal(greedy.method, "sequoia");

  // A tree field restricts auto to the methods that read it: budget -> specexec (predicted slowest).
  const budget = await generate(app, { prompt: "And God said", temperature: 0, budget: 16 });
  assert.equal(budget.status, 200, JSON.stringify(budget));
  assert.equal(budget.method, "specexec");
  assert.deepEqual(budget.tokens, greedy.tokens);
  assert.deepEqual(budget.method_choice.excluded.map((e: { method: string }) => e.method).sort(), [
    "ar",
    "lookup",
    "sequoia",
  ]);
  const none = await generate(app, { prompt: "And God said", tree_size: 8, budget: 16 });
  assert.equal(none.status, 400);
  assert.match(none.error.message, /default method is "auto".*none of them reads tree_size and budget/);
}

Deno.test("method auto: per-request choice in the in-thread engine (different prompts and temperatures)", async () => {
  const engine = await RuntimeEngine.open(request(await handMadeProfile()));
  try {
    assert.equal(engine.info.defaultMethod, "auto");
    assert.equal(engine.info.status?.cached, true, "the hand-made profile was read");
    await check(appOf(engine));
  } finally {
    engine.close();
  }
});

Deno.test("method auto: the same through the engine worker", async () => {
  const engine = await WorkerEngine.open(request(await handMadeProfile()));
  try {
    await check(appOf(engine));
  } finally {
    await engine.close();
  }
});
