/**
 * `deno task bench`: AR, chain, SpecInfer, Sequoia (the hardware profiler's pick, plus a sweep of tree
 * sizes), SpecExec and lookup (draft-free: its rows never touch the loaded draft) side by side on a
 * model pair, at each temperature, with the target's weights resident and paged. Prints Markdown,
 * writes the JSON report and the SVG plots.
 *
 * Method: per mode and temperature, one short warm-up generation per case (excluded), then R measured
 * runs, interleaved case by case so drift (other load on the machine) hits every method alike; tok/s is
 * the median over runs of tokens / decode time (prefill excluded), every other figure pools all runs.
 * AR decodes 8 tokens per submission with GPU-side sampling (the engine's strongest baseline).
 *
 * @module
 */

import { decode } from "../speculative/decode.ts";
import { needsDraftModel } from "../speculative/methods.ts";
import { pagedModel, type PagingStats } from "../model/capabilities.ts";
import { SAMPLING_DEFAULTS, type SamplingParams } from "../model/sampling.ts";
import { type Backend, defaultThreads, sharedGpu } from "../runtime/backend.ts";
import { type BenchCase, type BenchSizes, buildCases, maxBatchFor, usedPrompts } from "./cases.ts";
import { modeSection, sequoiaSection } from "./markdown.ts";
import { type BenchPair, loadPair, openPair } from "./pair.ts";
import { writePlots } from "./plots.ts";
import { loadPrompts } from "./prompts.ts";
import {
  type BenchReport,
  type BenchRow,
  type Mode,
  type ModeInfo,
  type RunSample,
  summarize,
} from "./report.ts";

/** Options of a side-by-side run. */
export interface SideBySideOptions {
  quick: boolean;
  modes: Mode[];
  temperatures: number[];
  runs: number;
  backend: Backend;
  /** wasm: threads per forward (default: this machine's cores). */
  threads?: number;
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

const diffPaging = (a: PagingStats, b: PagingStats) => ({
  bytes: b.bytesUploaded - a.bytesUploaded,
  uploadMs: b.readMs - a.readMs + (b.writeMs - a.writeMs),
  stallMs: b.stallMs - a.stallMs,
});

/** One run of one case over its prompts. */
async function runCase(
  pair: BenchPair,
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
  const paged = pagedModel(pair.target);
  // Refills scheduled before this run belong to the previous one: let them land before the snapshot.
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
    const draft = needsDraftModel(c.method) ? pair.draft : undefined;
    const events = decode(c.method, pair.target, draft, prompts[i % prompts.length], {
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

/**
 * One mode at one temperature: the Sequoia pick (recorded in `info`), the warm-up, the measured runs
 * and their rows (each against AR's tok/s from the same runs).
 */
async function runTemperature(
  pair: BenchPair,
  info: ModeInfo,
  temperature: number,
  prompts: number[][],
  o: SideBySideOptions & { withSweep: boolean; log: (line: string) => void },
): Promise<BenchRow[]> {
  const mode = info.mode;
  const sampling = { ...SAMPLING_DEFAULTS.profile, temperature };
  const acceptance = await pair.acceptance(sampling);
  const { pick, ranked, predicted } = pair.chooseSequoia(acceptance);
  info.picks.push(
    predicted
      ? { temperature, ...pick, predictedTokPerS: predicted.tokPerS, predictedSpeedup: predicted.speedup }
      : { temperature, ...pick },
  );
  const cases = buildCases(o.sizes, { pick, ranked, withSweep: o.withSweep }, o.methods);
  o.log(`${mode}, T=${temperature}: warming up ${cases.length} cases ...`);
  for (const c of cases) {
    await runCase(pair, c, prompts, { acceptance, sampling, seed: 9, maxTokens: 4, promptCount: 1 });
  }
  const samples = cases.map((): RunSample[] => []);
  for (let r = 1; r <= o.runs; r++) {
    for (const [ci, c] of cases.entries()) {
      const ts = performance.now();
      const s = await runCase(pair, c, prompts, { acceptance, sampling, seed: 1000 * r });
      samples[ci].push(s);
      o.log(
        `  run ${r}/${o.runs} ${c.label}: ${(s.tokens / (s.decodeMs / 1000)).toFixed(1)} tok/s ` +
          `(${s.tokens} tokens, ${((performance.now() - ts) / 1000).toFixed(1)} s)`,
      );
    }
  }
  const arIndex = cases.findIndex((c) => c.method === "ar");
  const arRow = summarize(cases[arIndex], { mode, temperature, arTokPerS: NaN }, samples[arIndex]);
  return cases.map((c, ci) =>
    ci === arIndex ? arRow : summarize(c, { mode, temperature, arTokPerS: arRow.tokPerS }, samples[ci])
  );
}

/** Run the side-by-side benchmark; prints the tables and returns the report. */
export async function runSideBySide(o: SideBySideOptions): Promise<BenchReport> {
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  const log = o.log ?? ((l: string) => console.error(l));
  const print = o.print ?? ((t: string) => console.log(t));
  const promptTexts = await loadPrompts();
  const folders = await openPair({ targetDir: o.targetDir, draftDir: o.draftDir });
  const prompts = promptTexts.map((p) => folders.targetFolder.tokenizer.encode(p));
  const promptCount = usedPrompts(o.sizes);
  const adapter = o.backend === "gpu"
    ? await sharedGpu().then((g) => g.adapter.description || g.adapter.vendor)
    : o.backend === "wasm"
    ? `wasm SIMD128, ${o.threads ?? defaultThreads()} threads`
    : "cpu reference";
  print(`# specdec benchmark: methods side by side\n`);
  print(`command: ${o.command}`);
  print(`Deno ${Deno.version.deno}; adapter: ${adapter}; backend: ${o.backend}`);
  print(
    `${promptCount} held-out prompt(s) (bench/prompts.json); median of ${o.runs} run(s) after one warm-up ` +
      `generation per case (excluded); modes: ${o.modes.join(", ")}; T = ${o.temperatures.join(", ")}\n`,
  );
  const rows: BenchRow[] = [];
  const modes: ModeInfo[] = [];
  for (const [mi, mode] of o.modes.entries()) {
    log(`loading the pair (${mode}) ...`);
    const pair = await loadPair(folders, {
      mode,
      backend: o.backend,
      threads: o.threads,
      maxBatch: maxBatchFor(o.sizes),
      log,
    });
    const info: ModeInfo = { ...pair.info, picks: [] };
    modes.push(info);
    try {
      if (pair.costs) info.costs = pair.costs;
      for (const temperature of o.temperatures) {
        // Tokens/step does not depend on where the weights live: the size sweep runs in the first mode only.
        rows.push(
          ...await runTemperature(pair, info, temperature, prompts, { ...o, withSweep: mi === 0, log }),
        );
      }
    } finally {
      pair.close();
    }
    print(modeSection(info, rows, o.backend));
  }
  const sequoia = sequoiaSection(rows);
  if (sequoia) print(sequoia);
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
    prompts: promptTexts.slice(0, promptCount),
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
  folders.close();
  return report;
}
