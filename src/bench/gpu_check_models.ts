/**
 * The model stages of the GPU check (see gpu_check.ts): whole-forward t(n) and AR tok/s of random
 * targets made on the machine (a Llama-3.2-1B shape and SmolLM2-135M's), and AR vs Sequoia with the
 * bundled tiny pair, the one pair here whose acceptance is real.
 *
 * Random weights (src/model/random_model.ts, what scripts/make_random_model.ts writes) time exactly like
 * trained ones (same shapes, same bytes, same kernels); their text is noise, so no speculative figure is
 * reported for them.
 *
 * @module
 */

import { generateAutoregressive } from "../decoding/autoregressive.ts";
import { GpuLlama } from "../gpu/llama/model.ts";
import type { CausalLM } from "../model/causal_lm.ts";
import { type Checkpoint, DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, openCheckpoint } from "../model/folder.ts";
import { llamaConfig, makeRandomModel } from "../model/random_model.ts";
import { GREEDY, SAMPLING_DEFAULTS, type SamplingParams } from "../model/sampling.ts";
import { llamaTensorSpec } from "../model/weights.ts";
import { sharedGpu } from "../runtime/backend.ts";
import { measureCosts, syncCost, verifyForward } from "../runtime/hardware_profile.ts";
import { Runtime } from "../runtime/runtime.ts";
import { decode } from "../speculative/decode.ts";
import type { Method, TreeOptions } from "../speculative/methods.ts";
import { pickSequoiaTree } from "../speculative/tree_choice.ts";
import { median } from "../util/stats.ts";
import { benchPrompts } from "./prompts.ts";
import type { StageContext } from "./gpu_check_context.ts";

/** Llama-3.2-1B's shape (tied embeddings; its llama3 RoPE scaling is left out: it does not change the cost). */
export const LLAMA_1B_DIMS = {
  hidden_size: 2048,
  num_hidden_layers: 16,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  intermediate_size: 8192,
  vocab_size: 128256,
  max_position_embeddings: 2048,
  rope_theta: 500000,
  tie_word_embeddings: true,
};

/** SmolLM2-135M's shape (the real model's GGUF is 98-270 MB and cannot travel to a lent machine). */
export const SMOLLM2_DIMS = {
  hidden_size: 576,
  num_hidden_layers: 30,
  num_attention_heads: 9,
  num_key_value_heads: 3,
  intermediate_size: 1536,
  vocab_size: 49152,
  max_position_embeddings: 2048,
  rope_theta: 100000,
  tie_word_embeddings: true,
};

/** Quick mode's stand-in for both: awkward sizes, a few MB. */
const QUICK_DIMS = {
  hidden_size: 192,
  num_hidden_layers: 2,
  num_attention_heads: 6,
  num_key_value_heads: 2,
  intermediate_size: 416,
  vocab_size: 2053,
  max_position_embeddings: 512,
  tie_word_embeddings: true,
};

/** Cached tokens before every timed forward (the hardware profile's past). */
const PAST = 64;
/** The t(n) sizes of the full check. */
export const FULL_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256];
const QUICK_SIZES = [1, 2, 4];

/** A model's t(n) row: ms of one forward of n tokens after {@link PAST} cached ones, its readback included. */
interface TnRow {
  n: number;
  ms: number;
  msPerToken: number;
}

/**
 * Bytes one decode step reads from the weights: every tensor once, except an untied embedding table
 * (one row of it is gathered). KV reads (a few hundred KB at past 64) are left out.
 */
export function weightBytesPerToken(folder: Checkpoint): number {
  const st = folder.checkpoint;
  const spec = llamaTensorSpec(folder.config);
  let total = 0;
  for (const name of st.names()) total += st.get(name)!.byteLength;
  return spec.global.lmHead ? total - st.get(spec.global.embed.name)!.byteLength : total;
}

/**
 * Median ms of one verification-style forward of n tokens after {@link PAST} cached ones: one submission
 * and one readback (of the n argmax ids), as a speculative step pays them. The past is prefilled once and
 * the cache truncated back to it before each sample (a 64-token prefill of a 1B model takes seconds on a
 * CPU adapter; re-running it per sample, as the hardware profile does, would spend the stage on it).
 */
async function tnMs(model: CausalLM, n: number, reps: number): Promise<number> {
  if (model.kv.length < PAST) {
    model.kv.truncate(0);
    await model.forward({
      tokens: new Int32Array(PAST).fill(5),
      positions: Int32Array.from({ length: PAST }, (_, i) => i),
      logitRows: [PAST - 1],
    });
  }
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    model.kv.truncate(PAST);
    const t0 = performance.now();
    await verifyForward(model, {
      tokens: new Int32Array(n).fill(7),
      positions: Int32Array.from({ length: n }, (_, i) => PAST + i),
    });
    samples.push(performance.now() - t0);
  }
  model.kv.truncate(PAST);
  return median(samples);
}

/**
 * t(n) for the check's sizes and AR tok/s of a loaded model, every figure put as it comes. AR runs
 * right after t(1), so a stage killed in its larger forwards still has it.
 */
async function measureModel(
  c: StageContext,
  key: string,
  model: CausalLM & { maxBatch?: number },
  folder: Checkpoint,
): Promise<void> {
  const gpu = await sharedGpu();
  const sync = await syncCost(gpu);
  const bytesPerToken = weightBytesPerToken(folder);
  const streamGbps = c.previous.stream?.streamGbps as number | undefined;
  const info: Record<string, unknown> = {
    layers: folder.config.nLayers,
    hidden: folder.config.hiddenSize,
    vocab: folder.config.vocabSize,
    weightDtype: folder.checkpoint.get(llamaTensorSpec(folder.config).layers[0].wq.name)!.dtype,
    bytesPerToken,
    maxBatch: model.maxBatch ?? null,
    readbackMs: sync.readbackMs,
  };
  await c.put(key, info);
  const tn: TnRow[] = [];
  const sizes = (c.quick ? QUICK_SIZES : FULL_SIZES).filter((n) => n <= (model.maxBatch ?? Infinity));
  for (const n of sizes) {
    try {
      // A size's first forward compiles its pipelines: unmeasured.
      await tnMs(model, n, 1);
      const ms = await tnMs(model, n, c.quick ? 1 : n <= 16 ? 5 : 3);
      tn.push({ n, ms, msPerToken: ms / n });
      info.tn = tn;
      const t1 = tn[0].ms;
      for (const m of [64, 256]) {
        const r = tn.find((x) => x.n === m);
        if (r) info[`t${m}OverT1`] = r.ms / t1;
      }
      await c.put(key, info);
      c.log(
        `${key} t(${n}) = ${ms.toFixed(2)} ms (${(ms / n).toFixed(3)} ms/token, ${
          (ms / t1).toFixed(2)
        } x t(1))`,
      );
    } catch (e) {
      info.tnError = `n=${n}: ${(e as Error).message}`;
      await c.put(key, info);
      c.log(`${key} t(${n}) failed: ${(e as Error).message}`);
      break;
    }
    if (n === 1) await measureAr(c, key, model, info, bytesPerToken, streamGbps);
  }
}

/** AR tok/s with the engine's defaults (8 tokens per submission, GPU-side argmax), after a short warm-up. */
async function measureAr(
  c: StageContext,
  key: string,
  model: CausalLM,
  info: Record<string, unknown>,
  bytesPerToken: number,
  streamGbps: number | undefined,
): Promise<void> {
  const prompt = Array.from({ length: 8 }, (_, i) => 3 + 17 * i);
  const ar = async (maxTokens: number) => {
    const events = generateAutoregressive(model, prompt, {
      maxTokens,
      sampling: GREEDY,
      seed: 0,
      eosIds: [],
      tokensPerSubmission: 8,
    });
    for await (const ev of events) if (ev.type === "done") return ev.stats;
    throw new Error("AR generation ended without stats");
  };
  await ar(9);
  const st = await ar(c.quick ? 9 : 65);
  const tokPerS = st.completionTokens / (st.decodeMs / 1000);
  const gbps = bytesPerToken * tokPerS / 1e9;
  info.ar = {
    tokens: st.completionTokens,
    tokPerS,
    syncsPerToken: st.syncs / st.completionTokens,
    weightGbps: gbps,
    ofStream: streamGbps ? gbps / streamGbps : null,
  };
  await c.put(key, info);
  c.log(
    `${key} AR ${tokPerS.toFixed(1)} tok/s: ${(bytesPerToken / 1e6).toFixed(0)} MB/token = ${
      gbps.toFixed(1)
    } GB/s${streamGbps ? ` = ${(100 * gbps / streamGbps).toFixed(0)}% of streaming read` : ""}`,
  );
}

/** Write a random F16 folder of `dims` under the work folder; returns its path and the seconds it took. */
async function randomFolder(
  c: StageContext,
  name: string,
  dims: Record<string, unknown>,
): Promise<{ dir: string; seconds: number; bytes: number }> {
  const dir = `${c.workDir}/${name}`;
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  const t0 = performance.now();
  const bytes = await makeRandomModel(dir, llamaConfig(dims, "F16"), {
    dtype: "F16",
    seed: 1,
    shardBytes: 2e9,
  });
  return { dir, seconds: (performance.now() - t0) / 1000, bytes };
}

/** Load `path` (folder or .gguf) on the GPU for t(n) up to 256 tokens, measure it, free it. */
async function loadAndMeasure(c: StageContext, key: string, path: string): Promise<void> {
  const t0 = performance.now();
  const folder = await openCheckpoint(path);
  const model = await GpuLlama.load(await sharedGpu(), folder, { capacity: 512, maxBatch: 256 });
  await c.put(`${key}LoadS`, (performance.now() - t0) / 1000);
  try {
    await measureModel(c, key, model, folder);
  } finally {
    model.dispose();
    folder.checkpoint.close();
  }
}

/** Stage forward1b: a Llama-3.2-1B-shaped random F16 target (2.5 GB, made here), t(n) and AR. */
export async function stageForward1b(c: StageContext): Promise<void> {
  const dims = c.quick ? QUICK_DIMS : LLAMA_1B_DIMS;
  await c.put("shape", { ...dims, dtype: "F16", random: true });
  const made = await randomFolder(c, "random-1b", dims);
  await c.put("generate", { seconds: made.seconds, bytes: made.bytes });
  c.log(`made ${made.dir}: ${(made.bytes / 1e6).toFixed(1)} MB in ${made.seconds.toFixed(1)} s`);
  try {
    await loadAndMeasure(c, "f16", made.dir);
  } finally {
    await Deno.remove(made.dir, { recursive: true }).catch(() => {});
  }
}

/** Stage smollm2: a SmolLM2-135M-shaped random target as F16 safetensors and as a Q8_0 GGUF. */
export async function stageSmollm2(c: StageContext): Promise<void> {
  const dims = c.quick ? QUICK_DIMS : SMOLLM2_DIMS;
  await c.put("shape", { ...dims, random: true });
  const made = await randomFolder(c, "random-smollm2", dims);
  await c.put("generate", { seconds: made.seconds, bytes: made.bytes });
  c.log(`made ${made.dir}: ${(made.bytes / 1e6).toFixed(1)} MB in ${made.seconds.toFixed(1)} s`);
  try {
    await loadAndMeasure(c, "f16", made.dir);
    if (!c.toGguf) {
      await c.put("q8_0Skipped", "no GGUF writer given (scripts/gpu_check.ts passes convert_gguf's)");
      return;
    }
    const gguf = `${c.workDir}/random-smollm2.Q8_0.gguf`;
    const t0 = performance.now();
    await c.toGguf(made.dir, gguf, "Q8_0");
    await c.put("q8_0ConvertS", (performance.now() - t0) / 1000);
    try {
      await loadAndMeasure(c, "q8_0", gguf);
    } finally {
      await Deno.remove(gguf).catch(() => {});
    }
  } finally {
    await Deno.remove(made.dir, { recursive: true }).catch(() => {});
  }
}

/** One method's run over the prompts: tokens, decode time, steps. */
async function runMethod(
  rt: Runtime,
  method: Method,
  tree: TreeOptions,
  prompts: number[][],
  o: { maxTokens: number; sampling: SamplingParams; acceptance: number[] },
): Promise<{ tokens: number; decodeMs: number; tokPerS: number; tokensPerStep: number; forwards: number }> {
  let tokens = 0, decodeMs = 0, forwards = 0;
  for (const [i, p] of prompts.entries()) {
    const draft = method === "ar" ? undefined : rt.draft!.model;
    const events = decode(method, rt.target.model, draft, p, {
      tree,
      acceptance: o.acceptance,
      maxTokens: o.maxTokens,
      sampling: o.sampling,
      seed: 100 + i,
      eosIds: [],
    });
    for await (const ev of events) {
      if (ev.type !== "done") continue;
      tokens += ev.stats.completionTokens;
      decodeMs += ev.stats.decodeMs;
      forwards += ev.stats.targetForwards - 1; // the prefill is not a decode step
    }
  }
  return {
    tokens,
    decodeMs,
    tokPerS: tokens / (decodeMs / 1000),
    // AR batches 8 tokens per submission but each is its own forward: one token per step.
    tokensPerStep: method === "ar" ? 1 : forwards > 0 ? tokens / forwards : 0,
    forwards,
  };
}

/**
 * Stage tiny: the bundled pair on the GPU, AR and Sequoia at T = 0 (and 0.7 in the full check).
 * Full: the target's and draft's t(n) measured here (no cached profile: a new adapter), Sequoia at the
 * hardware-aware pick on them plus larger trees; quick: one fixed tree (n = 8, depth 3).
 */
export async function stageTiny(c: StageContext): Promise<void> {
  const rt = await Runtime.open({
    model: DEFAULT_TARGET_DIR,
    draft: DEFAULT_DRAFT_DIR,
    backend: "gpu",
    maxBatch: 256,
    cacheDir: `${c.workDir}/cache`, // nothing is written beside the bundled draft
  });
  try {
    const tok = rt.target.folder.tokenizer;
    const prompts = (await benchPrompts(c.quick ? 1 : 4)).map((p) => tok.encode(p));
    const maxTokens = c.quick ? 8 : 48;
    let costs: Awaited<ReturnType<typeof measureCosts>> | undefined;
    if (!c.quick) {
      costs = await measureCosts(await sharedGpu(), rt.target.model, rt.draft!.model, { maxN: 128 });
      await c.put("costs", costs);
      c.log(
        `t_target(n) ${costs.target.map((t) => t.toFixed(1)).join(", ")} ms at n = ${costs.sizes.join(", ")}`,
      );
    }
    const rows: Record<string, unknown>[] = [];
    for (const temperature of c.quick ? [0] : [0, 0.7]) {
      const sampling = { ...SAMPLING_DEFAULTS.profile, temperature };
      const { acceptance } = await rt.acceptance(sampling);
      const trees: { label: string; tree: TreeOptions; predicted?: number }[] = [];
      if (costs) {
        const { pick, ranked } = pickSequoiaTree(acceptance, costs);
        trees.push({
          label: `sequoia pick n=${pick.n} d=${pick.depth}`,
          tree: { treeSize: pick.n, depth: pick.depth },
          predicted: pick.tokPerS,
        });
        for (const n of [16, 64, 128].filter((n) => n !== pick.n)) {
          const best = ranked.find((r) => r.n === n);
          if (best) {
            trees.push({
              label: `sequoia n=${n} d=${best.depth}`,
              tree: { treeSize: n, depth: best.depth },
              predicted: best.tokPerS,
            });
          }
        }
      } else {
        trees.push({ label: "sequoia n=8 d=3 (fixed)", tree: { treeSize: 8, depth: 3 } });
      }
      const cases: { label: string; method: Method; tree: TreeOptions; predicted?: number }[] = [
        { label: "ar", method: "ar", tree: {} },
        ...trees.map((t) => ({ ...t, method: "sequoia" as Method })),
      ];
      const o = { maxTokens, sampling, acceptance };
      for (const k of cases) {
        await runMethod(rt, k.method, k.tree, prompts.slice(0, 1), { ...o, maxTokens: 4 }); // warm-up
        const r = await runMethod(rt, k.method, k.tree, prompts, o);
        const ar = rows.find((x) => x.temperature === temperature && x.method === "ar");
        const row = {
          temperature,
          method: k.method,
          label: k.label,
          ...r,
          predictedTokPerS: k.predicted ?? null,
          speedup: ar ? r.tokPerS / (ar.tokPerS as number) : 1,
        };
        rows.push(row);
        await c.put("rows", rows);
        c.log(
          `T=${temperature} ${k.label}: ${r.tokPerS.toFixed(1)} tok/s, ${
            r.tokensPerStep.toFixed(2)
          } tokens/step` +
            (ar ? `, ${row.speedup.toFixed(2)}x AR` : ""),
        );
      }
    }
  } finally {
    rt.close();
  }
}
