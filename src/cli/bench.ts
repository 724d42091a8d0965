/**
 * `deno task bench`: autoregressive decoding speed of the model pair on the CPU reference, over prompts
 * taken from the held-out text. Speculative methods, GPU kernels, sweeps and plots join this command as
 * the engine grows; numbers here are a baseline, not a speculative speedup.
 *
 * @module
 */

import { median } from "../util/stats.ts";
import { parseArgs } from "node:util";
import { generateAutoregressive, type GenerationStats } from "../engine/autoregressive.ts";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, openModelFolder } from "../model/loader.ts";
import { type Backend, BACKENDS, loadModel, sharedGpu } from "./backend.ts";
import { benchKernels } from "./bench_kernels.ts";
import { benchSpeculative, type SpecCase } from "./bench_spec.ts";
import { benchSweep } from "./bench_sweep.ts";
import { GpuLlama } from "../gpu/llama.ts";
import { GREEDY } from "../model/sampling.ts";
import { UsageError } from "./usage.ts";

const USAGE =
  `Usage: deno task bench [--quick] [--kernels] [--spec] [--backend gpu|cpu] [--max-tokens N] [--runs R] [--json PATH]

Measures autoregressive tok/s of the tiny target and draft on the GPU (8 and 1 tokens per submission)
and on the CPU reference (greedy, prompts from weights/tiny/heldout.txt, median of R runs after one
warm-up). --kernels adds per-kernel times and GB/s, the matmul and target-forward t(n) curves, the
sync cost and the adapter's streaming read bandwidth. --spec runs AR, chain, SpecInfer, Sequoia and
SpecExec side by side at T = 0 and 0.7 on --backend (default gpu), with the planner's G(n, d) next to
Sequoia's measured tokens per step. --sweep runs Sequoia over a grid of (n, d) at T = 0.7 and prints
the hardware-aware profiler's pick beside the best found.
`;

/** Benchmark prompts: the first words of held-out chapters (never trained on). */
export async function benchPrompts(count: number): Promise<string[]> {
  const text = await Deno.readTextFile(new URL("../../weights/tiny/heldout.txt", import.meta.url));
  const chapters = text.split("\n\n").filter((c) => c.trim().length > 0);
  const step = Math.max(1, Math.floor(chapters.length / count));
  return chapters.filter((_, i) => i % step === 0).slice(0, count).map((c) =>
    c.split("\n")[0].split(" ").slice(0, 8).join(" ")
  );
}

/** Run the benchmark; returns the exit code. */
export async function runBench(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        quick: { type: "boolean", default: false },
        kernels: { type: "boolean", default: false },
        spec: { type: "boolean", default: false },
        sweep: { type: "boolean", default: false },
        methods: { type: "string" },
        backend: { type: "string", default: "gpu" },
        "max-tokens": { type: "string" },
        runs: { type: "string" },
        json: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${USAGE}`);
  }
  if (values.help) throw new UsageError(USAGE, 0);
  const maxTokens = Number(values["max-tokens"] ?? (values.quick ? 32 : 64));
  const runs = Number(values.runs ?? (values.quick ? 1 : 3));
  if (!Number.isInteger(maxTokens) || maxTokens < 1) {
    throw new UsageError(`--max-tokens must be a positive integer`);
  }
  if (!Number.isInteger(runs) || runs < 1) throw new UsageError(`--runs must be a positive integer`);
  if (!BACKENDS.includes(values.backend as Backend)) throw new UsageError(`--backend must be "gpu" or "cpu"`);
  const prompts = await benchPrompts(values.quick ? 2 : 4);
  if (values.sweep) {
    const targetFolder = await openModelFolder(DEFAULT_TARGET_DIR);
    const draftFolder = await openModelFolder(DEFAULT_DRAFT_DIR);
    const gpu = await sharedGpu();
    const target = await GpuLlama.load(gpu, targetFolder);
    const draft = await GpuLlama.load(gpu, draftFolder);
    const r = await benchSweep(
      { targetFolder, draftFolder, target, draft },
      prompts.map((p) => targetFolder.tokenizer.encode(p)),
      {
        sizes: values.quick ? [2, 4, 8, 16] : [2, 4, 8, 16, 32, 64],
        depths: values.quick ? [1, 2, 4] : [1, 2, 3, 4, 6, 8],
        maxTokens,
        sampling: { temperature: 0.7, topK: 0, topP: 1 },
      },
    );
    if (values.json) await Deno.writeTextFile(values.json, JSON.stringify(r, null, 2));
    target.dispose();
    draft.dispose();
    return 0;
  }
  if (values.spec) {
    const backend = values.backend as Backend;
    const targetFolder = await openModelFolder(DEFAULT_TARGET_DIR);
    const draftFolder = await openModelFolder(DEFAULT_DRAFT_DIR);
    const t = await loadModel(targetFolder, backend, { maxBatch: 1025 });
    const d = await loadModel(draftFolder, backend);
    const cases: SpecCase[] = [
      { method: "ar", tree: {}, label: "ar" },
      { method: "chain", tree: { depth: 4 }, label: "chain k=4" },
      { method: "specinfer", tree: { width: 4, depth: 4 }, label: "specinfer 4x4" },
      { method: "sequoia", tree: { treeSize: 16, depth: 6 }, label: "sequoia n=16 d=6" },
      { method: "sequoia", tree: { treeSize: 32, depth: 8 }, label: "sequoia n=32 d=8" },
      { method: "sequoia", tree: { treeSize: 64, depth: 10 }, label: "sequoia n=64 d=10" },
      { method: "specexec", tree: { budget: 64 }, label: "specexec K=64" },
      { method: "specexec", tree: { budget: 256 }, label: "specexec K=256" },
    ];
    if (!values.quick) cases.push({ method: "specexec", tree: { budget: 1024 }, label: "specexec K=1024" });
    // --methods ar,sequoia: keep those methods (AR always stays: it is the speedup's baseline).
    const only = values.methods?.split(",").map((m) => m.trim());
    const selected = only ? cases.filter((c) => c.method === "ar" || only.includes(c.method)) : cases;
    const specRows = await benchSpeculative(
      { targetFolder, draftFolder, target: t.model, draft: d.model, device: t.device },
      prompts.map((p) => targetFolder.tokenizer.encode(p)),
      { temperatures: [0, 0.7], maxTokens, runs, cases: selected },
    );
    if (values.json) {
      await Deno.writeTextFile(
        values.json,
        JSON.stringify({ deno: Deno.version.deno, device: t.device, rows: specRows }, null, 2),
      );
    }
    t.close();
    d.close();
    return 0;
  }
  const configs: { backend: Backend; per: number }[] = [
    { backend: "gpu", per: 8 },
    { backend: "gpu", per: 1 },
    { backend: "cpu", per: 1 },
  ];
  const rows: {
    model: string;
    backend: string;
    perSubmission: number;
    tokPerS: number;
    prefillMs: number;
    syncsPerToken: number;
  }[] = [];
  let device = "";
  for (const [name, dir] of [["target", DEFAULT_TARGET_DIR], ["draft", DEFAULT_DRAFT_DIR]]) {
    const folder = await openModelFolder(dir);
    for (const cfg of configs) {
      const loaded = await loadModel(folder, cfg.backend);
      if (cfg.backend === "gpu") device = loaded.device;
      const perRun: GenerationStats[][] = [];
      for (let r = 0; r <= runs; r++) { // run 0 is the warm-up
        const stats: GenerationStats[] = [];
        for (const p of prompts) {
          const gen = generateAutoregressive(loaded.model, folder.tokenizer.encode(p), {
            maxTokens,
            sampling: GREEDY,
            seed: 0,
            tokensPerSubmission: cfg.per,
          });
          for await (const ev of gen) if (ev.type === "done") stats.push(ev.stats);
        }
        if (r > 0) perRun.push(stats);
      }
      const sum = (s: GenerationStats[], f: (x: GenerationStats) => number) =>
        s.reduce((a, x) => a + f(x), 0);
      rows.push({
        model: name,
        backend: cfg.backend,
        perSubmission: cfg.per,
        tokPerS: median(
          perRun.map((s) => sum(s, (x) => x.completionTokens) / (sum(s, (x) => x.decodeMs) / 1000)),
        ),
        prefillMs: median(perRun.flat().map((s) => s.prefillMs)),
        syncsPerToken: sum(perRun[0], (x) => x.syncs) / sum(perRun[0], (x) => x.completionTokens),
      });
      loaded.close();
    }
    folder.checkpoint.close();
  }
  console.log(
    `Deno ${Deno.version.deno}; ${device}; ${prompts.length} prompts x ${maxTokens} tokens, greedy, median of ${runs} run(s)\n`,
  );
  console.log("| model | method | backend | tokens/submission | tok/s | prefill ms | syncs/token |");
  console.log("|---|---|---|---:|---:|---:|---:|");
  for (const r of rows) {
    console.log(
      `| ${r.model} | ar | ${r.backend} | ${r.perSubmission} | ${r.tokPerS.toFixed(1)} | ${
        r.prefillMs.toFixed(1)
      } | ${r.syncsPerToken.toFixed(2)} |`,
    );
  }
  let kernels: Record<string, unknown> | undefined;
  if (values.kernels) kernels = await benchKernels(await sharedGpu(), DEFAULT_TARGET_DIR, values.quick);
  if (values.json) {
    await Deno.writeTextFile(
      values.json,
      JSON.stringify({ deno: Deno.version.deno, device, rows, kernels }, null, 2),
    );
  }
  return 0;
}
