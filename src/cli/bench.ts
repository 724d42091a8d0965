/**
 * `deno task bench`: flags, usage text and dispatch. The default is the side-by-side benchmark of every
 * method ({@link runSideBySide}); --kernels, --sweep and --ar run the narrower benchmarks and --replot
 * redraws a saved report. The benchmarks themselves live in src/bench/ and take typed options.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_TARGET_DIR } from "../model/folder.ts";
import { describeDecision, resolveBackend } from "../runtime/backend_choice.ts";
import { describeWebGpu, resolveWebGpu } from "../runtime/webgpu_choice.ts";
import { benchAr } from "../bench/ar.ts";
import {
  BENCH_METHODS,
  type BenchSizes,
  FULL_SIZES,
  QUICK_SIZES,
  withSpecExecBudgets,
} from "../bench/cases.ts";
import { benchKernels } from "../bench/kernels.ts";
import { loadMarkdown, runLoad } from "../bench/load.ts";
import { loadPrompts, loadPromptSet, type PromptSet, PromptSetError } from "../bench/prompts.ts";
import { benchPeers, PEER_DEFAULTS } from "../bench/peers.ts";
import { benchPagedAtSize } from "../bench/offload_probe.ts";
import { replot } from "../bench/replot.ts";
import { type Mode, MODES } from "../bench/report.ts";
import { runSideBySide } from "../bench/runner.ts";
import { benchSweep, SWEEP_GRIDS } from "../bench/sweep.ts";
import { type Method, needsDraftModel } from "../speculative/methods.ts";
import { sharedGpu } from "../runtime/backend.ts";
import { UsageError } from "./usage.ts";
import { BACKEND_FLAGS, backendFlags, backendUsage } from "./backend_flags.ts";
import { pagingBudgets } from "./paging_flags.ts";

const USAGE =
  `Usage: deno task bench [--quick] [--offload | --resident-only] [--methods LIST] [--temperatures LIST]
                       [--runs R] [--max-tokens N] [--prompts N] [--backend gpu|cpu|wasm|auto] [--threads N]
                       [--model PATH] [--draft PATH|none] [--prompt-set FILE[,FILE...]]
                       [--specexec-budgets LIST] [--host-memory-budget BYTES] [--json PATH] [--out DIR]
       deno task bench --kernels | --sweep | --ar  [--quick] [--json PATH]
       deno task bench --kernels --model DIR       (kernels, t(n) and a decode step at DIR's shape)
       deno task bench --peers [--model FILE.gguf] [--vulkan] [--max-tokens N] [--runs R] [--json PATH]
       deno task bench --load URL [--concurrency C] [--requests N] [--max-tokens N] [--temperatures T]
                       [--api-key KEY] [--json PATH]

Default: AR, chain (k = 4), SpecInfer (4 x 4), Sequoia (the hardware profiler's pick for this adapter,
plus a sweep of tree sizes n = 4 .. 64 at the profiler's depth for each), SpecExec (K = 64, 256,
1024) and lookup (draft-free, the pick's node budget) side by side at T = 0 and 0.7, with the target's
weights resident and paged (loaded under a GPU memory budget of a quarter of its weights, or the least
that pages; paged rows run on the gpu backend, the only one that pages, whatever runs the resident
rows). Reports tok/s (median of R runs, default 3, after a warm-up generation), speedup vs AR measured
in the same run, tokens/step (with the planner's G(n, d) for Sequoia), tree nodes, target forwards and
syncs per token, draft and verify ms per step, and for paged rows the weight MB uploaded per token and
how much of the upload compute hid. Every row is reported per prompt set (a table each). Prints
Markdown tables; writes SVG plots (tokens/step vs tree size with the planner's prediction, tok/s by
method, t(n)) to --out (default bench/out) and the JSON report to --json. Full run on the bundled pair:
about 10 minutes on 2 CPU cores.

  --quick          smoke run: 1 prompt, 4-16 tokens per case, 1 run, sweep n = 4, 16 (about a minute)
  --offload        paged mode only          --resident-only   resident mode only
                   (paged runs on the bundled pair, unless --quick, end with a 1B-shaped random target
                   paged under 256 MB, made once in <out>/random-1b, 2.2 GB of disk; --skip-1b leaves it out)
  --methods LIST   e.g. chain,sequoia,lookup (AR always runs: it is the baseline)
  --temperatures   e.g. 0,0.7 (default)     --max-tokens / --prompts   override the main cases' sizes
                   (--prompts N: the first N prompts of each set)
  --model PATH     the target: a Hugging Face folder or a .gguf file (default weights/tiny/target)
  --draft PATH     the draft, same tokenizer (default weights/tiny/draft); none: AR and lookup rows only
  --prompt-set F   prompt files, comma-separated (default bench/prompts.json), each reported on its own:
                   {"prompts": [string | {"text", "chat"?: bool, "kind"?}], "note"?}; a chat prompt is
                   one user message in the target's chat template, a string or plain prompt raw text
                   (bench/prompts_edit.json: "edit this text/code" chat prompts that repeat their input)
  --specexec-budgets LIST   SpecExec's K values (default 64,256,1024)
  --sweep-sizes LIST|none   the Sequoia sweep's tree sizes (default 4,8,16,32,64; none: the pick only,
                   e.g. for paged runs, where every forward reads the weights from disk)
  --host-memory-budget B    paged rows: host RAM caching streamed layers (e.g. 256MB; 0: read from disk
                   at every forward); default 0 with --model, else the loader's (half the free RAM)
${
    backendUsage(19)
  }                   (cpu and wasm: the resident rows; paged rows run on gpu, left out when there is
                   no WebGPU adapter; on cpu Sequoia runs without a hardware profile; auto with
                   --offload: gpu)
  --replot PATH    print the tables and redraw the plots of a saved --json report (no measurement)

Other benchmarks:
  --kernels   per-kernel ms and GB/s, matmul and target-forward t(n), sync cost, streaming bandwidth,
              one decode step kernel by kernel against the measured t(1) (--model DIR: that model)
  --sweep     Sequoia over a grid of (n, d) at T = 0.7, the profiler's pick beside the best found
  --ar        AR tok/s of the target and draft: GPU at 8 and 1 tokens per submission, CPU reference
  --peers     a real model (default: SmolLM2-135M-Instruct from deno task models) decoded by this engine
              (GPU at 8 and 1 tokens per submission, CPU reference) and by llama.cpp on the same GGUF
              (CPU; --vulkan adds its Vulkan backend; bash tools/llama_cpp/install.sh first), with the wasm
              backend and llama.cpp's CPU backend at 1 and 2 threads (--threads N: at N only),
              same prompt ids and tokens, with weight bytes per token and GB/s beside streaming read
              (run from the repository root: the model, prompts and tool folder are found from there)
  --load URL  a running server (or replicas behind a balancer) under C concurrent streaming completions
              (default 8 clients, 64 requests, 32 tokens, T = 0.7, bench/prompts.json; --api-key or
              $SPECDEC_API_KEY): requests/s, tok/s, latency, TTFT and inter-token percentiles, and every
              answer that was not a complete stream; exits 1 if any was not
`;

const OPTIONS = {
  quick: { type: "boolean", default: false },
  kernels: { type: "boolean", default: false },
  spec: { type: "boolean", default: false }, // the default now; kept for old command lines
  sweep: { type: "boolean", default: false },
  ar: { type: "boolean", default: false },
  peers: { type: "boolean", default: false },
  vulkan: { type: "boolean", default: false },
  offload: { type: "boolean", default: false },
  "resident-only": { type: "boolean", default: false },
  methods: { type: "string" },
  temperatures: { type: "string" },
  ...BACKEND_FLAGS,
  "max-tokens": { type: "string" },
  prompts: { type: "string" },
  runs: { type: "string" },
  json: { type: "string" },
  out: { type: "string", default: "bench/out" },
  replot: { type: "string" },
  model: { type: "string" },
  draft: { type: "string" },
  "prompt-set": { type: "string" },
  "specexec-budgets": { type: "string" },
  "sweep-sizes": { type: "string" },
  "host-memory-budget": { type: "string" },
  "skip-1b": { type: "boolean", default: false },
  load: { type: "string" },
  concurrency: { type: "string" },
  requests: { type: "string" },
  "api-key": { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** A flag's value as a positive integer (undefined when not given); throws UsageError otherwise. */
function positive(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${flag} must be a positive integer`);
  return n;
}

/** Run the benchmark the flags name; returns the exit code, throws UsageError for bad flags. */
export async function runBench(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args, options: OPTIONS, strict: true }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${USAGE}`);
  }
  if (values.help) throw new UsageError(USAGE, 0);
  // Checked in this order (before anything loads), so an error names the first bad flag.
  const maxTokensFlag = positive("max-tokens", values["max-tokens"]);
  const promptsFlag = positive("prompts", values.prompts);
  const runs = positive("runs", values.runs) ?? (values.quick ? 1 : 3);
  const { backend: backendChoice, threads, kvDtype, weightsDtype, webgpu } = backendFlags(values);
  if (kvDtype !== "f32") {
    throw new UsageError(
      `--kv-dtype ${kvDtype}: bench loads its models with an f32 cache; time f16 with generate`,
    );
  }
  if (
    [values.kernels, values.sweep, values.ar, values.peers, values.load !== undefined].filter(Boolean)
      .length > 1
  ) {
    throw new UsageError(`--kernels, --sweep, --ar, --peers and --load are separate benchmarks: pick one`);
  }
  const sideBySide = !values.kernels && !values.peers && !values.sweep && !values.ar &&
    values.load === undefined && !values.replot;
  if (values.model !== undefined && !sideBySide && !values.kernels && !values.peers) {
    throw new UsageError(`--model goes with --kernels, --peers or the side-by-side run only`);
  }
  for (
    const flag of ["draft", "prompt-set", "specexec-budgets", "sweep-sizes", "host-memory-budget"] as const
  ) {
    if (values[flag] !== undefined && !sideBySide) {
      throw new UsageError(`--${flag} goes with the side-by-side run only (not --kernels, --sweep, ...)`);
    }
  }
  if (values.vulkan && !values.peers) throw new UsageError(`--vulkan goes with --peers only`);
  const concurrency = positive("concurrency", values.concurrency);
  const requests = positive("requests", values.requests);
  if ((concurrency ?? requests ?? values["api-key"]) !== undefined && values.load === undefined) {
    throw new UsageError(`--concurrency, --requests and --api-key go with --load URL only`);
  }
  if (values.load !== undefined) {
    return await benchLoad(values.load, {
      concurrency: concurrency ?? 8,
      requests: requests ?? 64,
      maxTokens: maxTokensFlag ?? 32,
      temperatures: values.temperatures,
      apiKey: values["api-key"] ?? Deno.env.get("SPECDEC_API_KEY"),
      jsonPath: values.json,
    });
  }
  if (values.replot) {
    await replot(values.replot, values.out || undefined);
    return 0;
  }
  if (values.kernels) {
    await benchKernels({ quick: values.quick, targetDir: values.model, jsonPath: values.json, weightsDtype });
    return 0;
  }
  if (values.peers) {
    await benchPeers({
      model: values.model ?? PEER_DEFAULTS.model,
      prompts: PEER_DEFAULTS.prompts,
      tokens: maxTokensFlag ?? (values.quick ? 16 : 64),
      runs,
      vulkan: values.vulkan,
      jsonPath: values.json,
      // --threads N: the wasm and llama.cpp CPU rows at N threads only (default: 1 and 2).
      threads: values.threads === undefined ? undefined : [threads],
    });
    return 0;
  }
  // --sweep and --ar: held-out prompts of their own, more and longer than the side-by-side's quick run.
  const maxTokens = maxTokensFlag ?? (values.quick ? 32 : 64);
  const prompts = promptsFlag ?? (values.quick ? 2 : 4);
  if (values.sweep) {
    const grid = values.quick ? SWEEP_GRIDS.quick : SWEEP_GRIDS.full;
    await benchSweep({ grid, prompts, maxTokens, jsonPath: values.json });
    return 0;
  }
  if (values.ar) {
    await benchAr({ prompts, maxTokens, runs, jsonPath: values.json });
    return 0;
  }

  // The side-by-side benchmark (the default).
  if (values.offload && values["resident-only"]) {
    throw new UsageError(`--offload (paged only) and --resident-only exclude each other`);
  }
  if (backendChoice !== "gpu" && backendChoice !== "auto" && values.offload) {
    throw new UsageError(`--offload (paged weights) needs --backend gpu, not ${backendChoice}`);
  }
  const temperatures = (values.temperatures ?? "0,0.7").split(",").map((t) => Number(t.trim()));
  if (temperatures.some((t) => !Number.isFinite(t) || t < 0)) {
    throw new UsageError(`--temperatures must be a comma-separated list of numbers >= 0`);
  }
  const methods = values.methods?.split(",").map((m) => m.trim());
  const bad = methods?.find((m) => !BENCH_METHODS.includes(m as Method));
  if (bad) throw new UsageError(`--methods: unknown method "${bad}" (${BENCH_METHODS.join(", ")})`);
  // --draft none: the draft-free methods only (AR and lookup).
  const draftDir = values.draft === "none" ? null : values.draft;
  const needsDraft = methods?.find((m) => needsDraftModel(m as Method));
  if (draftDir === null && needsDraft) {
    throw new UsageError(`--methods ${needsDraft} needs a draft model: --draft none runs ar and lookup only`);
  }
  const base = values.quick ? QUICK_SIZES : FULL_SIZES;
  const budgets = values["specexec-budgets"]?.split(",").map((b) => positive("specexec-budgets", b.trim())!);
  const sweepFlag = values["sweep-sizes"]?.trim();
  const sweepSizes = sweepFlag === undefined
    ? base.sweep.sizes
    : sweepFlag === "none"
    ? []
    : sweepFlag.split(",").map((n) => positive("sweep-sizes", n.trim())!);
  const sizes: BenchSizes = {
    ...(budgets ? withSpecExecBudgets(base, budgets) : base),
    main: { prompts: promptsFlag ?? base.main.prompts, maxTokens: maxTokensFlag ?? base.main.maxTokens },
    sweep: { ...base.sweep, sizes: sweepSizes },
  };
  const hostMemoryBudget = values["host-memory-budget"] === undefined
    // A real model's paged rows stream from disk (no host cache); the bundled pair keeps the loader's default.
    ? (values.model === undefined ? undefined : 0)
    : pagingBudgets({ "host-memory-budget": values["host-memory-budget"] }).hostMemoryBudget;
  if (values["host-memory-budget"] !== undefined && values["resident-only"]) {
    throw new UsageError(`--host-memory-budget is for paged rows: not with --resident-only`);
  }
  let promptSets: PromptSet[] | undefined;
  if (values["prompt-set"] !== undefined) {
    const files = values["prompt-set"].split(",").map((f) => f.trim()).filter((f) => f);
    if (files.length === 0) throw new UsageError(`--prompt-set needs FILE[,FILE...]`);
    try {
      promptSets = await Promise.all(files.map(loadPromptSet));
    } catch (e) {
      if (e instanceof PromptSetError) throw new UsageError(e.message);
      throw e;
    }
  }
  // auto: paged weights need the GPU; resident ones run where the target's t(1) is smaller.
  const targetDir = values.model;
  if (backendChoice !== "wasm" && backendChoice !== "cpu") {
    // Every sharedGpu() of the benchmarks below is then this implementation's.
    const w = await resolveWebGpu(webgpu, targetDir ?? DEFAULT_TARGET_DIR, {
      weightsDtype,
      log: (l) => console.error(l),
    });
    if (w.basis !== "named") console.error(`webgpu auto: ${describeWebGpu(w)}`);
  }
  const { backend, decision } = values.offload && backendChoice === "auto"
    ? { backend: "gpu" as const, decision: undefined }
    : await resolveBackend(backendChoice, targetDir ?? DEFAULT_TARGET_DIR, {
      threads,
      weightsDtype,
      log: (l) => console.error(l),
    });
  if (decision) console.error(`backend auto: ${describeDecision(decision)}`);
  let modes: Mode[] = values.offload ? ["paged"] : values["resident-only"] ? ["resident"] : [...MODES];
  // Only the gpu backend pages weights: with wasm or cpu the paged rows run on gpu, when there is one.
  if (modes.includes("paged") && backend !== "gpu" && !await sharedGpu().then(() => true, () => false)) {
    console.error(`no WebGPU adapter: the paged rows (gpu only) are left out`);
    modes = ["resident"];
  }
  await runSideBySide({
    quick: values.quick,
    modes,
    temperatures,
    runs,
    backend,
    threads,
    weightsDtype,
    sizes,
    methods,
    command: commandLine(args),
    outDir: values.out || undefined,
    jsonPath: values.json,
    targetDir,
    draftDir,
    promptSets,
    hostMemoryBudget,
  });
  // The 1B-shaped paging probe belongs to the bundled pair's full run.
  if (
    modes.includes("paged") && backend === "gpu" && !values.quick && !values["skip-1b"] &&
    targetDir === undefined
  ) {
    await benchPagedAtSize(values.out || "bench/out");
  }
  return 0;
}

/** `--load URL`: the load run, its table on stdout, the JSON report to `jsonPath`; 1 if any answer failed. */
async function benchLoad(
  url: string,
  o: {
    concurrency: number;
    requests: number;
    maxTokens: number;
    temperatures?: string;
    apiKey?: string;
    jsonPath?: string;
  },
): Promise<number> {
  if (!/^https?:\/\/[^/]+/.test(url)) {
    throw new UsageError(`--load needs an http(s) URL, got ${JSON.stringify(url)}`);
  }
  const temperature = Number(o.temperatures ?? "0.7");
  if (!Number.isFinite(temperature) || temperature < 0) {
    throw new UsageError(`--temperatures with --load is one number >= 0, got ${o.temperatures}`);
  }
  const report = await runLoad({ url, ...o, temperature, prompts: await loadPrompts() });
  console.log(loadMarkdown([{ report }]));
  for (const r of report.records.filter((r) => !r.complete).slice(0, 5)) {
    console.error(`  ${r.id}: status ${r.status}: ${r.error}`);
  }
  if (o.jsonPath) await Deno.writeTextFile(o.jsonPath, JSON.stringify(report, null, 2) + "\n");
  return report.ok === report.requests ? 0 : 1;
}

/** The command line as typed (via `deno task bench` or the compiled binary). */
export function commandLine(args: string[]): string {
  const q = (a: string) => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
  const prog = Deno.mainModule.endsWith("/src/main.ts") ? "deno task bench" : "specdec bench";
  return [prog, ...args.map(q)].join(" ");
}
