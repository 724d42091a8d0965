/**
 * `deno task bench`: command-line parsing and dispatch. The default is the side-by-side benchmark of
 * every method ({@link runSideBySide}); --kernels, --sweep and --ar run the narrower benchmarks.
 *
 * @module
 */

import { median } from "../util/stats.ts";
import { parseArgs } from "node:util";
import { generateAutoregressive, type GenerationStats } from "../decoding/autoregressive.ts";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, openModelFolder } from "../model/folder.ts";
import { type Backend, BACKENDS, loadModel, sharedGpu } from "../runtime/backend.ts";
import { benchKernels } from "./kernels.ts";
import {
  BENCH_METHODS,
  type BenchSizes,
  FULL_SIZES,
  QUICK_SIZES,
  replot,
  runSideBySide,
} from "./side_by_side.ts";
import { type Mode, MODES } from "./report.ts";
import type { Method } from "../speculative/methods.ts";
import { benchSweep } from "./sweep.ts";
import { GpuLlama } from "../gpu/llama/model.ts";
import { GREEDY } from "../model/sampling.ts";
import { UsageError } from "../cli/usage.ts";
import { type OffloadProbe, probePagedModel } from "./offload_probe.ts";
import { formatBytes } from "../util/bytes.ts";

const USAGE =
  `Usage: deno task bench [--quick] [--offload | --resident-only] [--methods LIST] [--temperatures LIST]
                       [--runs R] [--max-tokens N] [--prompts N] [--backend gpu|cpu] [--json PATH] [--out DIR]
       deno task bench --kernels | --sweep | --ar  [--quick] [--json PATH]

Default: AR, chain (k = 4), SpecInfer (4 x 4), Sequoia (the hardware profiler's pick for this adapter,
plus a sweep of tree sizes n = 4 .. 64 at the profiler's depth for each) and SpecExec (K = 64, 256,
1024) side by side at T = 0 and 0.7, with the target's weights resident and paged (loaded under a GPU
memory budget of a quarter of its weights, or the least that pages). Reports tok/s (median of R runs,
default 3, after a warm-up generation), speedup vs AR measured in the same run, tokens/step (with the
planner's G(n, d) for Sequoia), tree nodes, target forwards and syncs per token, draft and verify ms per
step, and for paged rows the weight MB uploaded per token and how much of the upload compute hid.
Prompts: bench/prompts.json (held-out text the tiny models never trained on). Prints Markdown tables;
writes SVG plots (tokens/step vs tree size with the planner's prediction, tok/s by method, t(n)) to
--out (default bench/out) and the JSON report to --json. Full run: about 10 minutes on 2 CPU cores.

  --quick          smoke run: 1 prompt, 4-16 tokens per case, 1 run, sweep n = 4, 16 (about a minute)
  --offload        paged mode only          --resident-only   resident mode only
                   (paged runs, unless --quick, end with a 1B-shaped random target paged under 256 MB,
                   made once in <out>/random-1b, 2.2 GB of disk; --skip-1b leaves it out)
  --methods LIST   e.g. chain,sequoia (AR always runs: it is the baseline)
  --temperatures   e.g. 0,0.7 (default)     --max-tokens / --prompts   override the main cases' sizes
  --backend cpu    the CPU reference (resident only; Sequoia without a hardware profile)
  --replot PATH    print the tables and redraw the plots of a saved --json report (no measurement)

Other benchmarks:
  --kernels   per-kernel ms and GB/s, matmul and target-forward t(n), sync cost, streaming bandwidth
  --sweep     Sequoia over a grid of (n, d) at T = 0.7, the profiler's pick beside the best found
  --ar        AR tok/s of the target and draft: GPU at 8 and 1 tokens per submission, CPU reference
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
        spec: { type: "boolean", default: false }, // the default now; kept for old command lines
        sweep: { type: "boolean", default: false },
        ar: { type: "boolean", default: false },
        offload: { type: "boolean", default: false },
        "resident-only": { type: "boolean", default: false },
        methods: { type: "string" },
        temperatures: { type: "string" },
        backend: { type: "string", default: "gpu" },
        "max-tokens": { type: "string" },
        prompts: { type: "string" },
        runs: { type: "string" },
        json: { type: "string" },
        out: { type: "string", default: "bench/out" },
        replot: { type: "string" },
        "skip-1b": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${USAGE}`);
  }
  if (values.help) throw new UsageError(USAGE, 0);
  const positive = (flag: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${flag} must be a positive integer`);
    return n;
  };
  const maxTokensFlag = positive("max-tokens", values["max-tokens"]);
  const promptsFlag = positive("prompts", values.prompts);
  const runs = positive("runs", values.runs) ?? (values.quick ? 1 : 3);
  if (!BACKENDS.includes(values.backend as Backend)) throw new UsageError(`--backend must be "gpu" or "cpu"`);
  const backend = values.backend as Backend;
  if ([values.kernels, values.sweep, values.ar].filter(Boolean).length > 1) {
    throw new UsageError(`--kernels, --sweep and --ar are separate benchmarks: pick one`);
  }
  if (values.replot) {
    await replot(values.replot, values.out || undefined);
    return 0;
  }
  if (values.kernels) {
    const kernels = await benchKernels(await sharedGpu(), DEFAULT_TARGET_DIR, values.quick);
    if (values.json) {
      await Deno.writeTextFile(values.json, JSON.stringify({ deno: Deno.version.deno, kernels }, null, 2));
    }
    return 0;
  }
  const maxTokens = maxTokensFlag ?? (values.quick ? 32 : 64);
  const prompts = await benchPrompts(promptsFlag ?? (values.quick ? 2 : 4));
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
  if (values.ar) return await benchAr(prompts, maxTokens, runs, values.json);

  // The side-by-side benchmark (the default).
  if (values.offload && values["resident-only"]) {
    throw new UsageError(`--offload (paged only) and --resident-only exclude each other`);
  }
  const modes: Mode[] = values.offload
    ? ["paged"]
    : values["resident-only"] || backend === "cpu"
    ? ["resident"]
    : [...MODES];
  if (backend === "cpu" && values.offload) {
    throw new UsageError(`--offload (paged weights) needs --backend gpu`);
  }
  const temperatures = (values.temperatures ?? "0,0.7").split(",").map((t) => Number(t.trim()));
  if (temperatures.some((t) => !Number.isFinite(t) || t < 0)) {
    throw new UsageError(`--temperatures must be a comma-separated list of numbers >= 0`);
  }
  const methods = values.methods?.split(",").map((m) => m.trim());
  const bad = methods?.find((m) => !BENCH_METHODS.includes(m as Method));
  if (bad) throw new UsageError(`--methods: unknown method "${bad}" (${BENCH_METHODS.join(", ")})`);
  const base = values.quick ? QUICK_SIZES : FULL_SIZES;
  const sizes: BenchSizes = {
    ...base,
    main: { prompts: promptsFlag ?? base.main.prompts, maxTokens: maxTokensFlag ?? base.main.maxTokens },
  };
  await runSideBySide({
    quick: values.quick,
    modes,
    temperatures,
    runs,
    backend,
    sizes,
    methods,
    command: commandLine(args),
    outDir: values.out || undefined,
    jsonPath: values.json,
  });
  if (modes.includes("paged") && backend === "gpu" && !values.quick && !values["skip-1b"]) {
    await benchPagedAtSize(values.out || "bench/out");
  }
  return 0;
}

/**
 * Paging at a real size: a 1B-shaped random target (made once under `outDir`) under a 256 MB budget
 * (or the least that pages), streamed from disk and from the host cache; upload GB/s beside this
 * machine's memcpy and writeBuffer bandwidth. Printed as a table and written to offload_1b.json.
 */
async function benchPagedAtSize(outDir: string): Promise<void> {
  const gpu = await sharedGpu();
  const dir = `${outDir}/random-1b`;
  const log = (l: string) => console.error(l);
  const rows: OffloadProbe[] = [];
  for (const hostBudget of [0, 4e9]) {
    rows.push(await probePagedModel(gpu, { dir, preset: "1b", budget: 256e6, hostBudget, tokens: 4, log }));
  }
  console.log(
    `\n### Paging at size: 1B-shaped random target (${formatBytes(rows[0].modelBytes)} of F16 weights)\n`,
  );
  console.log(
    "| host cache | GPU budget | ring | tok/s | ms/token | upload GB/s | overlap | stall ms/token | RSS |",
  );
  console.log("|---|---:|---|---:|---:|---:|---:|---:|---:|");
  for (const r of rows) {
    const p = r.paging;
    console.log(
      `| ${r.hostBudget ? "RAM" : "none (disk)"} | ${
        formatBytes(r.budget)
      } | ${p.resident_layers} resident + ${p.ring_slots} x ${formatBytes(p.layer_bytes)} | ${
        r.tokPerS.toFixed(2)
      } | ${r.msPerToken.toFixed(0)} | ${p.upload_gb_per_s.toFixed(2)} | ${(p.overlap * 100).toFixed(0)}% | ${
        (p.stall_ms / r.tokens).toFixed(0)
      } | ${formatBytes(r.rssBytes)} |`,
    );
  }
  console.log(
    `\nPlain copy bandwidth on this machine: memcpy ${rows[0].memcpyGBps.toFixed(2)} GB/s, ` +
      `writeBuffer into a GPU buffer ${rows[0].writeBufferGBps.toFixed(2)} GB/s (256 MB, incl. its submit).`,
  );
  await Deno.mkdir(outDir, { recursive: true });
  await Deno.writeTextFile(`${outDir}/offload_1b.json`, JSON.stringify(rows, null, 2) + "\n");
}

/** The command line as typed (via `deno task bench` or the compiled binary). */
export function commandLine(args: string[]): string {
  const q = (a: string) => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
  const prog = Deno.mainModule.endsWith("/src/main.ts") ? "deno task bench" : "specdec bench";
  return [prog, ...args.map(q)].join(" ");
}

/** `--ar`: AR tok/s of both models on the GPU (8 and 1 tokens per submission) and the CPU reference. */
async function benchAr(prompts: string[], maxTokens: number, runs: number, json?: string): Promise<number> {
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
  if (json) {
    await Deno.writeTextFile(json, JSON.stringify({ deno: Deno.version.deno, device, rows }, null, 2));
  }
  return 0;
}
