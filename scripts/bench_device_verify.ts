/**
 * Verification on the device vs on the host, in one run: AR and Sequoia (greedy and T = 0.8) on the GPU
 * for the tiny bundled pair and for SmolLM2-135M (Q4_1) with its trained draft, each Sequoia run once
 * with `deviceVerify` (the accepted path read back) and once without (every node's target and q rows
 * read back, verified on the CPU), interleaved, median of `--reps`. Prints a markdown table: tok/s,
 * syncs per token, the target's readback bytes per step after the first (the prefill's readbacks are not a
 * step's; AR's step is one token). The draft's reads are not counted: a wrapped pruned-vocabulary draft
 * (SmolLM2's) reads its rows back to draft on the host, with or without device verification.
 *
 * Where the pair runs fused steps (same vocabulary), Sequoia also runs chained: not streaming, up to
 * `--chain` steps per readback (multi_step.ts); AR runs streaming and not (32 tokens per readback).
 *
 *   deno run -A scripts/bench_device_verify.ts [--reps 3] [--tokens 64] [--nodes 32] [--depth 6] [--chain 8]
 *     [--only tiny]
 *
 * @module
 */

import { loadModel, sharedGpu } from "../src/runtime/backend.ts";
import { GpuLlama } from "../src/gpu/llama/model.ts";
import { openCheckpoint, openModelFolder } from "../src/model/folder.ts";
import { ACC, args, median, PAIRS, sequoia, TEMPERATURES } from "./bench_pairs.ts";
import { generateAutoregressive } from "../src/decoding/autoregressive.ts";
import { materialize, planSequoia } from "../src/speculative/sequoia_plan.ts";
import type { GenerationStats } from "../src/decoding/stats.ts";

const reps = Number(args.get("reps") ?? 3);
const maxTokens = Number(args.get("tokens") ?? 64);
const nodes = Number(args.get("nodes") ?? 32);
const depth = Number(args.get("depth") ?? 6);
const chainSteps = Number(args.get("chain") ?? 8);

interface Row {
  tokPerS: number[];
  syncsPerToken: number[];
  bytesPerStep: number[];
}

const gpu = await sharedGpu();
const lines = [
  "| pair | method | verify | tok/s | syncs / token | target readback bytes / step |",
  "| --- | --- | --- | ---: | ---: | ---: |",
];
for (const pair of PAIRS) {
  const t = await openModelFolder(pair.target), d = await openCheckpoint(pair.draft);
  // The runtime's loader: a pruned-vocabulary draft comes back wrapped (no fused step; its tree is drafted
  // on the host and verified on the target's device).
  const target = await GpuLlama.load(gpu, t);
  const draftLoaded = await loadModel(d, "gpu");
  const draft = draftLoaded.model;
  const prompt = t.tokenizer.encode(pair.prompt);
  const shape = materialize(planSequoia(ACC, nodes, depth), nodes, depth);
  const rows = new Map<string, Row>();
  const add = (key: string, s: GenerationStats, bytes: number, steps: number) => {
    const r = rows.get(key) ?? { tokPerS: [], syncsPerToken: [], bytesPerStep: [] };
    r.tokPerS.push(s.tokPerS);
    r.syncsPerToken.push(s.syncs / Math.max(1, s.completionTokens));
    r.bytesPerStep.push(bytes / Math.max(1, steps));
    rows.set(key, r);
  };
  const greedy = TEMPERATURES[0][1];
  for (let rep = 0; rep <= reps; rep++) {
    const keep = rep > 0; // rep 0 warms every pipeline up
    // AR streaming (8 tokens a submission) and not (32 tokens a readback, AR's strongest).
    for (const stream of [true, false]) {
      let b0 = 0, arSteps = -1;
      for await (
        const e of generateAutoregressive(target, prompt, { maxTokens, sampling: greedy, seed: rep, stream })
      ) {
        if (e.type === "token" && ++arSteps === 0) b0 = target.counters.readbackBytes;
        if (e.type === "done" && keep) {
          add(
            `ar|T=0|${stream ? "-" : "not streaming"}`,
            e.stats,
            target.counters.readbackBytes - b0,
            arSteps,
          );
        }
      }
    }
    // Chained steps (not streaming, several steps a readback) only where the pair runs fused steps.
    const chains = target.fusedTreeLimits(draft) ? [false, true] : [false];
    for (const [label, sampling] of TEMPERATURES) {
      for (const [deviceVerify, chained] of [[false, false], ...chains.map((c) => [true, c])]) {
        // Bytes from the end of the first step on (the prefill's readbacks are not a step's).
        const read = () => target.counters.readbackBytes;
        let bytes0 = 0, steps = -1;
        for await (
          const e of sequoia(target, draft, prompt, shape, {
            maxTokens,
            sampling,
            seed: rep,
            deviceVerify,
            ...(chained ? { stream: false, stepsPerReadback: chainSteps } : {}),
          })
        ) {
          if (e.type === "step" && ++steps === 0) bytes0 = read();
          if (e.type === "done" && keep) {
            const bytes = read() - bytes0;
            const where = chained
              ? `device, chained (<= ${chainSteps} steps / readback)`
              : deviceVerify
              ? "device"
              : "host";
            add(`sequoia|${label}|${where}`, e.stats, bytes, steps);
          }
        }
      }
    }
  }
  for (const [key, r] of rows) {
    const [method, label, where] = key.split("|");
    lines.push(
      `| ${pair.name} | ${method} ${label} | ${where} | ${median(r.tokPerS).toFixed(1)} | ${
        median(r.syncsPerToken).toFixed(3)
      } | ${Math.round(median(r.bytesPerStep))} |`,
    );
  }
  target.dispose();
  draftLoaded.close();
}
console.log(`Sequoia tree: ${nodes} nodes, depth ${depth}; ${maxTokens} tokens; median of ${reps}\n`);
console.log(lines.join("\n"));
