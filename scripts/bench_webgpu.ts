/**
 * Deno's built-in WebGPU vs Dawn's, in one run: AR and Sequoia (greedy and T = 0.8, verified on the
 * device) on the GPU for the tiny bundled pair and for SmolLM2-135M (Q4_1) with its trained draft, both
 * implementations loaded side by side and interleaved per repetition, median of `--reps`. Also each
 * implementation's sync cost: the round trip of a 4-byte readback after an empty submission (median of
 * 50). Prints a markdown table: tok/s, syncs per token, and the readback time per step that implies.
 * Sequoia streams, in single steps and, where the pair runs fused steps, chained (up to 8 steps submitted
 * ahead, each step's read overlapping the next one: multi_step.ts).
 *
 *   deno run -A scripts/bench_webgpu.ts [--reps 3] [--tokens 64] [--nodes 32] [--depth 6] [--only tiny]
 *
 * Dawn needs its driver on a CPU-only Debian 12 machine: SPECDEC_DAWN_ICD=$(bash scripts/dawn_mesa.sh).
 *
 * @module
 */

import { loadModel, sharedGpu } from "../src/runtime/backend.ts";
import type { Gpu } from "../src/gpu/device.ts";
import type { WebGpuImpl } from "../src/gpu/webgpu_impl.ts";
import { GpuLlama } from "../src/gpu/llama/model.ts";
import { openCheckpoint, openModelFolder } from "../src/model/folder.ts";
import { ACC, args, median, PAIRS, sequoia, TEMPERATURES } from "./bench_pairs.ts";
import { generateAutoregressive } from "../src/decoding/autoregressive.ts";
import { materialize, planSequoia } from "../src/speculative/sequoia_plan.ts";
import type { CausalLM } from "../src/model/causal_lm.ts";
import { hasFusedTreeStep } from "../src/model/capabilities.ts";

const reps = Number(args.get("reps") ?? 3);
const maxTokens = Number(args.get("tokens") ?? 64);
const nodes = Number(args.get("nodes") ?? 32);
const depth = Number(args.get("depth") ?? 6);

const IMPLS: WebGpuImpl[] = ["deno", "dawn"];

/** Median round trip (ms) of a 4-byte readback after an empty submission: the implementation's sync. */
async function syncMs(gpu: Gpu): Promise<number> {
  const buf = gpu.createBuffer("sync probe", 4);
  const t: number[] = [];
  for (let i = 0; i < 55; i++) {
    const t0 = performance.now();
    await gpu.read(buf, 4);
    if (i >= 5) t.push(performance.now() - t0);
  }
  buf.destroy();
  return median(t);
}

const gpus = Object.fromEntries(
  await Promise.all(IMPLS.map(async (i) => [i, await sharedGpu(i)] as const)),
) as Record<
  WebGpuImpl,
  Gpu
>;
const sync = Object.fromEntries(
  await Promise.all(IMPLS.map(async (i) => [i, await syncMs(gpus[i])] as const)),
);
const lines = [
  "| pair | method | webgpu | tok/s | syncs / token | sync ms | readback ms / token |",
  "| --- | --- | --- | ---: | ---: | ---: | ---: |",
];
for (const pair of PAIRS) {
  const t = await openModelFolder(pair.target), d = await openCheckpoint(pair.draft);
  const models: Record<string, { target: CausalLM; draft: CausalLM; close: () => void }> = {};
  for (const impl of IMPLS) {
    const target = await GpuLlama.load(gpus[impl], t);
    const draft = await loadModel(d, "gpu", { webgpu: impl });
    models[impl] = { target, draft: draft.model, close: () => (target.dispose(), draft.close()) };
  }
  const prompt = t.tokenizer.encode(pair.prompt);
  const shape = materialize(planSequoia(ACC, nodes, depth), nodes, depth);
  const rows = new Map<string, { tokPerS: number[]; syncsPerToken: number[] }>();
  const add = (key: string, tokPerS: number, syncs: number, tokens: number) => {
    const r = rows.get(key) ?? { tokPerS: [], syncsPerToken: [] };
    r.tokPerS.push(tokPerS);
    r.syncsPerToken.push(syncs / Math.max(1, tokens));
    rows.set(key, r);
  };
  const greedy = TEMPERATURES[0][1];
  for (let rep = 0; rep <= reps; rep++) {
    const keep = rep > 0; // rep 0 warms every pipeline up
    for (const impl of IMPLS) {
      const { target, draft } = models[impl];
      for await (
        const e of generateAutoregressive(target, prompt, { maxTokens, sampling: greedy, seed: rep })
      ) {
        if (e.type === "done" && keep) {
          add(`ar T=0|${impl}`, e.stats.tokPerS, e.stats.syncs, e.stats.completionTokens);
        }
      }
      // Streaming, single steps and chained (each step's read overlapping the next step; only where the
      // pair runs fused steps: SmolLM2's pruned-vocabulary draft drafts on the host).
      const chains = hasFusedTreeStep(target) && target.fusedTreeLimits(draft) ? [1, 8] : [1];
      for (const [label, sampling] of TEMPERATURES) {
        for (const steps of chains) {
          for await (
            const e of sequoia(target, draft, prompt, shape, {
              maxTokens,
              sampling,
              seed: rep,
              stepsPerReadback: steps,
              streamChain: steps > 1,
            })
          ) {
            if (e.type === "done" && keep) {
              const key = `sequoia ${label}${steps > 1 ? ", chained" : ""}|${impl}`;
              add(key, e.stats.tokPerS, e.stats.syncs, e.stats.completionTokens);
            }
          }
        }
      }
    }
  }
  for (const [key, r] of rows) {
    const [method, impl] = key.split("|");
    const spt = median(r.syncsPerToken), s = sync[impl];
    lines.push(
      `| ${pair.name} | ${method} | ${impl} | ${median(r.tokPerS).toFixed(1)} | ${spt.toFixed(3)} | ${
        s.toFixed(2)
      } | ${(spt * s).toFixed(2)} |`,
    );
  }
  for (const m of Object.values(models)) m.close();
}
console.log(
  `${gpus.deno.adapter.description} (deno) / ${gpus.dawn.adapter.description} (dawn); Sequoia tree: ${nodes} ` +
    `nodes, depth ${depth}, verified on the device; ${maxTokens} tokens; median of ${reps}\n`,
);
console.log(lines.join("\n"));
