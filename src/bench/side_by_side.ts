/**
 * `deno task bench`: AR, chain, SpecInfer, Sequoia (the hardware profiler's pick, plus a sweep of tree
 * sizes) and SpecExec side by side on the bundled pair, at each temperature, with the target's weights
 * resident and paged. Prints Markdown tables, writes the JSON report and the SVG plots.
 *
 * Method: per mode and temperature, one short warm-up generation per case (excluded), then R measured
 * runs, interleaved case by case so drift (other load on the machine) hits every method alike; tok/s is
 * the median over runs of tokens / decode time (prefill excluded), every other figure pools all runs.
 * AR decodes 8 tokens per submission with GPU-side sampling (the engine's strongest baseline).
 *
 * @module
 */

import { acceptanceFor } from "../runtime/acceptance.ts";
import { decode } from "../speculative/decode.ts";
import { GpuLlama } from "../gpu/llama/model.ts";
import { minPagedBudget, type PagingStats, weightSizes } from "../gpu/paging/pager.ts";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, type ModelFolder, openModelFolder } from "../model/folder.ts";
import type { SamplingParams } from "../model/sampling.ts";
import type { CausalLM } from "../model/causal_lm.ts";
import type { Method } from "../speculative/methods.ts";
import { planSequoia } from "../speculative/sequoia_plan.ts";
import { rankTrees, type TreeChoice } from "../speculative/tree_choice.ts";
import { type Backend, loadModel, sharedGpu } from "../runtime/backend.ts";
import {
  type BenchCase,
  type BenchReport,
  type BenchRow,
  costPlot,
  type Mode,
  type ModeInfo,
  modeTable,
  type RunSample,
  summarize,
  sweepTable,
  tokensPerStepPlot,
  tokPerSPlot,
} from "./report.ts";
import { loadOrMeasureCosts } from "../runtime/hardware_profile.ts";

/** How much each kind of case generates: prompts x tokens per run. */
export interface BenchSizes {
  main: { prompts: number; maxTokens: number };
  /** Sequoia tree sizes of the tokens/step sweep (at the profiler's depth for each size). */
  sweep: { sizes: number[]; prompts: number; maxTokens: number };
  /** SpecExec budgets; large trees get fewer tokens (a K-node verify costs ~K single-token passes on a CPU adapter). */
  specexec: { budget: number; prompts: number; maxTokens: number }[];
}

/** The full run (sized to finish in under 20 minutes on a 2-core llvmpipe machine). */
export const FULL_SIZES: BenchSizes = {
  main: { prompts: 4, maxTokens: 48 },
  sweep: { sizes: [4, 8, 16, 32, 64], prompts: 2, maxTokens: 32 },
  specexec: [
    { budget: 64, prompts: 2, maxTokens: 24 },
    { budget: 256, prompts: 2, maxTokens: 12 },
    { budget: 1024, prompts: 1, maxTokens: 8 },
  ],
};

/** `--quick`: a smoke run (under 2 minutes). */
export const QUICK_SIZES: BenchSizes = {
  main: { prompts: 1, maxTokens: 16 },
  sweep: { sizes: [4, 16], prompts: 1, maxTokens: 12 },
  specexec: [
    { budget: 64, prompts: 1, maxTokens: 8 },
    { budget: 256, prompts: 1, maxTokens: 4 },
    { budget: 1024, prompts: 1, maxTokens: 4 },
  ],
};

/** Options of a side-by-side run. */
export interface SideBySideOptions {
  quick: boolean;
  modes: Mode[];
  temperatures: number[];
  runs: number;
  backend: Backend;
  sizes: BenchSizes;
  /** Keep only these methods (AR always stays: it is the baseline). */
  methods?: string[];
  /** Printed at the top and stored in the report. */
  command: string;
  /** Where the SVG plots go (none when undefined). */
  outDir?: string;
  jsonPath?: string;
  /** Model folders (default: the bundled tiny pair). */
  targetDir?: string;
  draftDir?: string;
  /** Progress lines (stderr by default). */
  log?: (line: string) => void;
  /** Result output (stdout by default). */
  print?: (text: string) => void;
}

/** The shipped prompt set: held-out text the tiny models never trained on. */
export async function loadPrompts(): Promise<string[]> {
  const j = JSON.parse(await Deno.readTextFile(new URL("../../bench/prompts.json", import.meta.url)));
  if (!Array.isArray(j.prompts) || !j.prompts.every((p: unknown) => typeof p === "string" && p.length > 0)) {
    throw new Error("bench/prompts.json: expected {prompts: string[]}");
  }
  return j.prompts;
}

/** The budget `paged` mode loads the target under: a quarter of its weights, or the least that can page. */
export function pagedBudget(folder: ModelFolder): { budget: number; weightBytes: number } {
  const w = weightSizes(folder.checkpoint, folder.config);
  const weightBytes = w.baseBytes + w.nLayers * w.layerBytes;
  return {
    budget: Math.max(Math.floor(weightBytes / 4), minPagedBudget(folder.checkpoint, folder.config)),
    weightBytes,
  };
}

/** A loaded pair for one mode. */
interface LoadedPair {
  target: CausalLM;
  draft: CausalLM;
  device: string;
  info: Omit<ModeInfo, "picks" | "costs">;
  close(): void;
}

/** Load the pair with the target's weights held as `mode` says. */
export async function loadPair(
  mode: Mode,
  backend: Backend,
  targetFolder: ModelFolder,
  draftFolder: ModelFolder,
  maxBatch: number,
): Promise<LoadedPair> {
  let gpuMemoryBudget: number | undefined, targetWeightBytes: number | undefined;
  if (mode === "paged") {
    ({ budget: gpuMemoryBudget, weightBytes: targetWeightBytes } = pagedBudget(targetFolder));
  }
  const t = await loadModel(targetFolder, backend, { maxBatch, gpuMemoryBudget });
  const d = await loadModel(draftFolder, backend);
  const p = t.model instanceof GpuLlama ? t.model.paging : undefined;
  return {
    target: t.model,
    draft: d.model,
    device: t.device,
    info: {
      mode,
      device: t.device,
      gpuMemoryBudget,
      targetWeightBytes,
      plan: p &&
        {
          residentLayers: p.residentLayers,
          ringSlots: p.ringSlots,
          layerBytes: p.layerBytes,
          bytesPerForward: p.bytesPerForward,
        },
    },
    close: () => {
      t.close();
      d.close();
    },
  };
}

/** The cases of one mode and temperature. */
export function buildCases(
  sizes: BenchSizes,
  sequoia: { pick: { n: number; depth: number }; ranked: TreeChoice[]; withSweep: boolean },
  methods?: string[],
): BenchCase[] {
  const { main } = sizes;
  const g = (n: number, depth: number) =>
    sequoia.ranked.find((r) => r.n === n && r.depth === depth)?.tokensPerStep ?? NaN;
  const pick = sequoia.pick;
  const cases: BenchCase[] = [
    { label: "ar", series: "ar", method: "ar", tree: {}, group: "main", ...main },
    { label: "chain k=4", series: "chain k=4", method: "chain", tree: { depth: 4 }, group: "main", ...main },
    {
      label: "specinfer 4x4",
      series: "specinfer 4x4",
      method: "specinfer",
      tree: { width: 4, depth: 4 },
      group: "main",
      ...main,
    },
    {
      label: `sequoia n=${pick.n} d=${pick.depth}`,
      series: "sequoia (profiler's pick)",
      method: "sequoia",
      tree: { treeSize: pick.n, depth: pick.depth },
      group: "main",
      ...main,
      sequoia: { ...pick, predicted: g(pick.n, pick.depth), pick: true },
    },
    ...sizes.specexec.map((s): BenchCase => ({
      label: `specexec K=${s.budget}`,
      series: `specexec K=${s.budget}`,
      method: "specexec",
      tree: { budget: s.budget },
      group: "main",
      prompts: s.prompts,
      maxTokens: s.maxTokens,
    })),
  ];
  if (sequoia.withSweep) {
    for (const n of sizes.sweep.sizes) {
      // The profiler's best depth for this size (its ranking is by predicted tok/s on this adapter).
      const best = sequoia.ranked.find((r) => r.n === n);
      if (!best || (n === pick.n && best.depth === pick.depth)) continue;
      cases.push({
        label: `sequoia n=${n} d=${best.depth}`,
        series: "sequoia sweep",
        method: "sequoia",
        tree: { treeSize: n, depth: best.depth },
        group: "sweep",
        prompts: sizes.sweep.prompts,
        maxTokens: sizes.sweep.maxTokens,
        sequoia: { n, depth: best.depth, predicted: best.tokensPerStep, pick: false },
      });
    }
  }
  return methods ? cases.filter((c) => c.method === "ar" || methods.includes(c.method)) : cases;
}

const diffPaging = (a: PagingStats, b: PagingStats) => ({
  bytes: b.bytesUploaded - a.bytesUploaded,
  uploadMs: b.readMs - a.readMs + (b.writeMs - a.writeMs),
  stallMs: b.stallMs - a.stallMs,
});

/** One run of one case over its prompts. */
async function runCase(
  pair: LoadedPair,
  c: BenchCase,
  prompts: number[][],
  o: {
    acceptance: number[];
    sampling: SamplingParams;
    seed: number;
    maxTokens?: number;
    promptCount?: number;
  },
): Promise<RunSample> {
  const paged = pair.target instanceof GpuLlama && pair.target.paging ? pair.target : undefined;
  await paged?.pagingIdle();
  const before = paged?.pagingStats();
  const s: RunSample = {
    tokens: 0,
    decodeMs: 0,
    steps: 0,
    stepTokens: 0,
    treeNodes: 0,
    targetForwards: 0,
    syncs: 0,
    draftMs: 0,
    verifyMs: 0,
  };
  for (let i = 0; i < (o.promptCount ?? c.prompts); i++) {
    const events = decode(c.method, pair.target, pair.draft, prompts[i % prompts.length], {
      tree: c.tree,
      acceptance: o.acceptance,
      maxTokens: o.maxTokens ?? c.maxTokens,
      sampling: o.sampling,
      seed: o.seed + i,
      eosIds: [],
    });
    for await (const ev of events) {
      if (ev.type === "step") s.treeNodes += ev.stats.treeSize;
      if (ev.type !== "done") continue;
      const st = ev.stats as typeof ev.stats & { steps?: number; draftMs?: number; verifyMs?: number };
      s.tokens += st.completionTokens;
      s.decodeMs += st.decodeMs;
      s.steps += st.steps ?? 0;
      s.stepTokens += (st.steps ?? 0) * st.tokensPerStep;
      s.targetForwards += st.targetForwards;
      s.syncs += st.syncs;
      s.draftMs += st.draftMs ?? 0;
      s.verifyMs += st.verifyMs ?? 0;
    }
  }
  if (paged && before) {
    await paged.pagingIdle();
    s.paging = diffPaging(before, paged.pagingStats()!);
  }
  return s;
}

/** Run the side-by-side benchmark; prints the tables and returns the report. */
export async function runSideBySide(o: SideBySideOptions): Promise<BenchReport> {
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  const log = o.log ?? ((l: string) => console.error(l));
  const print = o.print ?? ((t: string) => console.log(t));
  const promptTexts = await loadPrompts();
  const targetFolder = await openModelFolder(o.targetDir ?? DEFAULT_TARGET_DIR);
  const draftFolder = await openModelFolder(o.draftDir ?? DEFAULT_DRAFT_DIR);
  const prompts = promptTexts.map((p) => targetFolder.tokenizer.encode(p));
  const usedPrompts = Math.max(
    o.sizes.main.prompts,
    o.sizes.sweep.prompts,
    ...o.sizes.specexec.map((s) => s.prompts),
  );
  const adapter = o.backend === "gpu"
    ? await sharedGpu().then((g) => g.adapter.description || g.adapter.vendor)
    : "cpu reference";
  print(`# specdec benchmark: methods side by side\n`);
  print(`command: ${o.command}`);
  print(`Deno ${Deno.version.deno}; adapter: ${adapter}; backend: ${o.backend}`);
  print(
    `${usedPrompts} held-out prompt(s) (bench/prompts.json); median of ${o.runs} run(s) after one warm-up ` +
      `generation per case (excluded); modes: ${o.modes.join(", ")}; T = ${o.temperatures.join(", ")}\n`,
  );
  const maxBatch = 1 + Math.max(256, ...o.sizes.specexec.map((s) => s.budget));
  const rows: BenchRow[] = [];
  const modes: ModeInfo[] = [];
  for (const [mi, mode] of o.modes.entries()) {
    log(`loading the pair (${mode}) ...`);
    const pair = await loadPair(mode, o.backend, targetFolder, draftFolder, maxBatch);
    const info: ModeInfo = { ...pair.info, picks: [] };
    modes.push(info);
    try {
      const gpuPair = pair.target instanceof GpuLlama && pair.draft instanceof GpuLlama
        ? { targetFolder, draftFolder, target: pair.target, draft: pair.draft }
        : undefined;
      if (gpuPair) info.costs = (await loadOrMeasureCosts(await sharedGpu(), gpuPair, { log })).costs;
      for (const temperature of o.temperatures) {
        const sampling = { temperature, topK: 0, topP: 1 };
        const acceptance = await acceptanceFor(
          { targetFolder, draftFolder, target: pair.target, draft: pair.draft },
          sampling,
          { log },
        );
        let pick = { n: 8, depth: 3 };
        const plan = planSequoia(acceptance, 256, 17);
        let ranked: TreeChoice[];
        if (info.costs) {
          ranked = rankTrees(plan, info.costs);
          pick = { n: ranked[0].n, depth: ranked[0].depth };
          info.picks.push({
            temperature,
            ...pick,
            predictedTokPerS: ranked[0].tokPerS,
            predictedSpeedup: ranked[0].speedup,
          });
        } else {
          // No hardware profile off the GPU: rank by G(n, d) under t(n) proportional to n.
          const sizes = [1, 2, 4, 8, 16, 32, 64];
          ranked = rankTrees(plan, {
            sizes,
            target: sizes,
            draft: sizes.map((n) => n / 8),
            sync: 0,
            arTokensPerSubmission: 1,
          });
          info.picks.push({ temperature, ...pick });
        }
        const cases = buildCases(o.sizes, { pick, ranked, withSweep: mi === 0 }, o.methods);
        log(`${mode}, T=${temperature}: warming up ${cases.length} cases ...`);
        for (const c of cases) {
          await runCase(pair, c, prompts, { acceptance, sampling, seed: 9, maxTokens: 4, promptCount: 1 });
        }
        const samples = cases.map((): RunSample[] => []);
        for (let r = 1; r <= o.runs; r++) {
          for (const [ci, c] of cases.entries()) {
            const ts = performance.now();
            const s = await runCase(pair, c, prompts, { acceptance, sampling, seed: 1000 * r });
            samples[ci].push(s);
            log(
              `  run ${r}/${o.runs} ${c.label}: ${(s.tokens / (s.decodeMs / 1000)).toFixed(1)} tok/s ` +
                `(${s.tokens} tokens, ${((performance.now() - ts) / 1000).toFixed(1)} s)`,
            );
          }
        }
        const arIndex = cases.findIndex((c) => c.method === "ar");
        const arRow = summarize(cases[arIndex], { mode, temperature, arTokPerS: NaN }, samples[arIndex]);
        for (const [ci, c] of cases.entries()) {
          rows.push(
            ci === arIndex
              ? arRow
              : summarize(c, { mode, temperature, arTokPerS: arRow.tokPerS }, samples[ci]),
          );
        }
      }
    } finally {
      pair.close();
    }
    print(modeSection(info, rows, o.backend));
  }
  if (rows.some((r) => r.method === "sequoia")) {
    print(`## Sequoia: measured tokens/step vs the planner's G(n, d)\n\n${sweepTable(rows)}\n`);
  }
  const report: BenchReport = {
    version: 1,
    command: o.command,
    deno: Deno.version.deno,
    adapter,
    startedAt,
    wallSeconds: 0,
    settings: {
      quick: o.quick,
      runs: o.runs,
      temperatures: o.temperatures,
      modes: o.modes,
      backend: o.backend,
      warmup: "one generation of 4 tokens per case, mode and temperature (excluded)",
    },
    prompts: promptTexts.slice(0, usedPrompts),
    modes,
    rows,
    plots: [],
  };
  if (o.outDir) {
    report.plots = await writePlots(rows, modes, `${adapter}; Deno ${Deno.version.deno}`, o.outDir);
    print(`plots: ${report.plots.join(", ")}`);
  }
  report.wallSeconds = Math.round((performance.now() - t0) / 100) / 10;
  if (o.jsonPath) {
    await Deno.writeTextFile(o.jsonPath, JSON.stringify(report, null, 2) + "\n");
    print(`json: ${o.jsonPath}`);
  }
  print(`wall time: ${report.wallSeconds.toFixed(1)} s`);
  targetFolder.checkpoint.close();
  draftFolder.checkpoint.close();
  return report;
}

/** One mode's section of the printed report: the load, the picks, the table and its notes. */
export function modeSection(info: ModeInfo, rows: BenchRow[], backend: Backend): string {
  const mode = info.mode;
  const out = [`## ${mode}: ${info.device}\n`];
  if (info.plan) {
    out.push(
      `target paged under a ${(info.gpuMemoryBudget! / 1e6).toFixed(2)} MB GPU budget (its weights: ${
        (info.targetWeightBytes! / 1e6).toFixed(2)
      } MB; a quarter, or the least that pages): ${info.plan.residentLayers} resident layers + ` +
        `${info.plan.ringSlots}-slot ring, ${
          (info.plan.bytesPerForward / 1e6).toFixed(2)
        } MB streamed per forward\n`,
    );
  }
  for (const p of info.picks) {
    out.push(
      `Sequoia at T=${p.temperature}: ${
        p.predictedTokPerS === undefined
          ? "no hardware profile on this backend: default"
          : `profiler's pick (predicted ${p.predictedTokPerS.toFixed(1)} tok/s, ${
            p.predictedSpeedup!.toFixed(2)
          }x AR)`
      } n=${p.n} d=${p.depth}`,
    );
  }
  out.push(`\n${modeTable(rows, mode)}\n`, notes(rows.filter((r) => r.mode === mode), backend) + "\n");
  return out.join("\n");
}

/** Write the three plots under `outDir`; returns their paths. */
export async function writePlots(
  rows: BenchRow[],
  modes: ModeInfo[],
  subtitle: string,
  outDir: string,
): Promise<string[]> {
  await Deno.mkdir(outDir, { recursive: true });
  const plots: [string, string][] = [
    ["tokens_per_step.svg", tokensPerStepPlot(rows, subtitle)],
    ["tok_s.svg", tokPerSPlot(rows, subtitle)],
  ];
  if (modes.some((m) => m.costs)) plots.push(["t_n.svg", costPlot(modes, subtitle)]);
  const paths: string[] = [];
  for (const [name, svg] of plots) {
    const path = `${outDir.replace(/\/$/, "")}/${name}`;
    await Deno.writeTextFile(path, svg);
    paths.push(path);
  }
  return paths;
}

/** `--replot PATH`: print the tables and redraw the plots of a saved JSON report (no measurement). */
export async function replot(
  path: string,
  outDir: string | undefined,
  print = (t: string) => console.log(t),
) {
  const r = JSON.parse(await Deno.readTextFile(path)) as BenchReport;
  if (r.version !== 1 || !Array.isArray(r.rows) || !Array.isArray(r.modes)) {
    throw new Error(`${path}: not a benchmark report (version 1)`);
  }
  const backend: Backend = r.settings.backend ?? (r.adapter === "cpu reference" ? "cpu" : "gpu");
  print(`# specdec benchmark: methods side by side (from ${path})\n`);
  print(
    `command: ${r.command}\nDeno ${r.deno}; adapter: ${r.adapter}; backend: ${backend}; ${r.startedAt}\n`,
  );
  for (const m of r.modes) print(modeSection(m, r.rows, backend));
  if (r.rows.some((x) => x.method === "sequoia")) {
    print(`## Sequoia: measured tokens/step vs the planner's G(n, d)\n\n${sweepTable(r.rows)}\n`);
  }
  if (outDir) {
    const plots = await writePlots(r.rows, r.modes, `${r.adapter}; Deno ${r.deno}`, outDir);
    print(`plots: ${plots.join(", ")}`);
  }
  print(`wall time of that run: ${r.wallSeconds.toFixed(1)} s`);
}

/** What the columns mean where it is not obvious, and what capped a tree. */
function notes(rows: BenchRow[], backend: Backend): string {
  const out = [
    "tok/s: tokens / decode time (prefill excluded), median of runs; vs AR: against AR's tok/s in the same " +
    "run; tokens x runs: tokens counted per run.",
  ];
  if (backend === "gpu") {
    out.push(
      "chain, SpecInfer and Sequoia run a whole step (draft levels, the target's tree forward, one readback) " +
        "as one GPU submission, so their step time is under draft ms and verify ms is the CPU-side check " +
        "only; SpecExec's draft ms is its expansion rounds and verify ms the target forward plus the check.",
    );
  }
  const capped = new Map<string, number[]>();
  for (const r of rows) {
    const budget = r.tree.budget;
    if (
      r.method === "specexec" && budget && r.treeNodesPerStep !== undefined && r.treeNodesPerStep < budget - 1
    ) {
      capped.set(r.label, [...capped.get(r.label) ?? [], r.treeNodesPerStep]);
    }
  }
  for (const [label, nodes] of capped) {
    out.push(
      `${label}: trees average ${
        nodes.map((n) => n.toFixed(0)).join(" / ")
      } nodes, capped by the room left in ` +
        `the models' context and the engine's batch limit.`,
    );
  }
  if (rows.some((r) => r.paging)) {
    out.push(
      "upload MB/token: decoder-layer bytes streamed per generated token (the prompt's forward included); " +
        "overlap: share of the upload time hidden behind compute.",
    );
  }
  return out.map((l) => `- ${l}`).join("\n");
}

/** Methods accepted by --methods. */
export const BENCH_METHODS: readonly Method[] = ["ar", "chain", "specinfer", "sequoia", "specexec"];
