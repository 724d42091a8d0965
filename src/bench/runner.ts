/**
 * `deno task bench`: AR, chain, SpecInfer, Sequoia (the hardware profiler's pick, plus a sweep of tree
 * sizes), SpecExec and lookup (draft-free: its rows never touch the loaded draft) side by side on a
 * model pair, at each temperature, with the target's weights resident and paged (paged on the gpu backend,
 * the only one that pages), on each prompt set. Prints Markdown, writes the JSON report and the SVG plots.
 *
 * Method: per mode and temperature, one short warm-up generation per case (excluded), then per prompt set
 * R measured runs, interleaved case by case so drift (other load on the machine) hits every method alike; tok/s is
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
import { checkContext } from "../runtime/context_length.ts";
import { type BenchCase, type BenchSizes, buildCases, maxBatchFor, usedPrompts } from "./cases.ts";
import { modeSection, sequoiaSection } from "./markdown.ts";
import { type BenchPair, loadPair, openPair, type PairFolders } from "./pair.ts";
import { writePlots } from "./plots.ts";
import {
  DEFAULT_PROMPT_SET,
  encodePromptSet,
  loadPromptSet,
  type PromptSet,
  PromptSetError,
} from "./prompts.ts";
import type { WeightsDtype } from "../model/weight_types.ts";
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
  /** Where the resident rows run (paged rows always run on gpu: only it pages weights). */
  backend: Backend;
  /** wasm: threads per forward (default: this machine's cores). */
  threads?: number;
  /** What type the target's matrices load as (`--weights-dtype`). */
  weightsDtype?: WeightsDtype;
  sizes: BenchSizes;
  /** Keep only these methods (AR always stays: it is the baseline). */
  methods?: string[];
  /** Printed at the top and stored in the report. */
  command: string;
  /** Where the SVG plots go (none when undefined). */
  outDir?: string;
  jsonPath?: string;
  /** Model folders or GGUF files (default: the bundled tiny pair); draft null: none (AR and lookup only). */
  targetDir?: string;
  draftDir?: string | null;
  /** The prompt sets, each reported on its own (default: bench/prompts.json alone). */
  promptSets?: PromptSet[];
  /** Paged mode: host RAM caching streamed layers (0: read from disk at every forward; default: the loader's). */
  hostMemoryBudget?: number;
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
    acceptance?: number[];
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

/** A prompt set with its prompts encoded for the target. */
interface EncodedSet {
  set: PromptSet;
  prompts: number[][];
}

/**
 * One mode at one temperature: the Sequoia pick (recorded in `info`; none without a draft), one warm-up
 * per case, then per prompt set the measured runs and their rows (each against AR's tok/s from the same
 * set and runs).
 */
async function runTemperature(
  pair: BenchPair,
  info: ModeInfo,
  temperature: number,
  sets: EncodedSet[],
  o: SideBySideOptions & { withSweep: boolean; log: (line: string) => void },
): Promise<BenchRow[]> {
  const mode = info.mode;
  const sampling = { ...SAMPLING_DEFAULTS.profile, temperature };
  let acceptance: number[] | undefined;
  let sequoia: Parameters<typeof buildCases>[1];
  if (pair.draft) {
    acceptance = await pair.acceptance(sampling);
    const { pick, ranked, predicted } = pair.chooseSequoia(acceptance);
    info.picks.push(
      predicted
        ? { temperature, ...pick, predictedTokPerS: predicted.tokPerS, predictedSpeedup: predicted.speedup }
        : { temperature, ...pick },
    );
    sequoia = { pick, ranked, withSweep: o.withSweep };
  }
  const cases = buildCases(o.sizes, sequoia, o.methods);
  o.log(`${mode}, T=${temperature}: warming up ${cases.length} cases ...`);
  for (const c of cases) {
    await runCase(pair, c, sets[0].prompts, { acceptance, sampling, seed: 9, maxTokens: 4, promptCount: 1 });
  }
  const rows: BenchRow[] = [];
  for (const { set, prompts } of sets) {
    const promptCount = (c: BenchCase) => Math.min(c.prompts, prompts.length);
    const samples = cases.map((): RunSample[] => []);
    for (let r = 1; r <= o.runs; r++) {
      for (const [ci, c] of cases.entries()) {
        const ts = performance.now();
        const s = await runCase(pair, c, prompts, {
          acceptance,
          sampling,
          seed: 1000 * r,
          promptCount: promptCount(c),
        });
        samples[ci].push(s);
        o.log(
          `  ${sets.length > 1 ? `${set.name}: ` : ""}run ${r}/${o.runs} ${c.label}: ` +
            `${(s.tokens / (s.decodeMs / 1000)).toFixed(1)} tok/s ` +
            `(${s.tokens} tokens, ${((performance.now() - ts) / 1000).toFixed(1)} s)`,
        );
      }
    }
    const arIndex = cases.findIndex((c) => c.method === "ar");
    const ctx = (c: BenchCase, arTokPerS: number) => ({
      mode,
      temperature,
      set: set.name,
      prompts: promptCount(c),
      arTokPerS,
    });
    const arRow = summarize(cases[arIndex], ctx(cases[arIndex], NaN), samples[arIndex]);
    rows.push(
      ...cases.map((c, ci) => ci === arIndex ? arRow : summarize(c, ctx(c, arRow.tokPerS), samples[ci])),
    );
  }
  return rows;
}

/**
 * The prompt sets' token ids for the target, checked against both models' context before anything
 * loads: a prompt plus the most tokens any case generates must fit (errors name the file and index).
 */
function encodeSets(sets: PromptSet[], folders: PairFolders, sizes: BenchSizes): EncodedSet[] {
  const count = usedPrompts(sizes);
  const most = Math.max(
    sizes.main.maxTokens,
    sizes.sweep.maxTokens,
    ...sizes.specexec.map((s) => s.maxTokens),
  );
  const context = Math.min(
    folders.targetFolder.config.maxPositions,
    folders.draftFolder?.config.maxPositions ?? Infinity,
  );
  return sets.map((set) => {
    const prompts = encodePromptSet(set, folders.targetFolder.tokenizer, count);
    prompts.forEach((ids, i) => {
      try {
        checkContext(ids.length, most, context, "the most tokens a case generates");
      } catch (e) {
        throw new PromptSetError(`${set.path}: prompts[${i}]: ${(e as Error).message}`);
      }
    });
    return { set, prompts };
  });
}

/** "prompts_edit (bench/prompts_edit.json: 4 of 8 prompts, chat)". */
function describeSet(e: EncodedSet): string {
  const chat = e.set.prompts.slice(0, e.prompts.length).filter((p) => p.chat).length;
  const kind = chat === 0 ? "plain" : chat === e.prompts.length ? "chat" : `${chat} chat`;
  return `${e.set.name} (${e.set.path}: ${e.prompts.length} of ${e.set.prompts.length} prompts, ${kind})`;
}

/** Run the side-by-side benchmark; prints the tables and returns the report. */
export async function runSideBySide(o: SideBySideOptions): Promise<BenchReport> {
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  const log = o.log ?? ((l: string) => console.error(l));
  const print = o.print ?? ((t: string) => console.log(t));
  const promptSets = o.promptSets ?? [await loadPromptSet(DEFAULT_PROMPT_SET)];
  const names = promptSets.map((s) => s.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new RangeError(`two prompt sets are named "${dup}": rename one file`);
  const folders = await openPair({ targetDir: o.targetDir, draftDir: o.draftDir });
  try {
    return await runOpened(o, folders, promptSets, { t0, startedAt, log, print });
  } finally {
    folders.close();
  }
}

/** {@link runSideBySide} once the pair's folders are open. */
async function runOpened(
  o: SideBySideOptions,
  folders: PairFolders,
  promptSets: PromptSet[],
  ctx: { t0: number; startedAt: string; log: (line: string) => void; print: (text: string) => void },
): Promise<BenchReport> {
  const { log, print } = ctx;
  const sets = encodeSets(promptSets, folders, o.sizes);
  // Only the gpu backend pages weights: paged rows run there whatever runs the resident ones.
  const backendOf = (mode: Mode): Backend => mode === "paged" ? "gpu" : o.backend;
  const describe = async (b: Backend) =>
    b === "gpu"
      ? await sharedGpu().then((g) => g.adapter.description || g.adapter.vendor)
      : b === "wasm"
      ? `wasm SIMD128, ${o.threads ?? defaultThreads()} threads`
      : "cpu reference";
  const adapter = await describe(o.modes.includes("resident") ? o.backend : "gpu");
  const split = o.modes.includes("paged") && o.backend !== "gpu";
  print(`# specdec benchmark: methods side by side\n`);
  print(`command: ${o.command}`);
  print(`Deno ${Deno.version.deno}; adapter: ${adapter}; backend: ${o.backend}`);
  if (split) {
    print(
      `paged rows: gpu (${await describe("gpu")}): only the gpu backend pages weights` +
        (o.modes.includes("resident") ? `; resident rows: ${o.backend}` : ""),
    );
  }
  print(
    `target: ${folders.targetFolder.path}; draft: ${
      folders.draftFolder ? folders.draftFolder.path : "none (AR and lookup only)"
    }`,
  );
  print(
    `prompt sets: ${sets.map(describeSet).join("; ")}; median of ${o.runs} run(s) after one warm-up ` +
      `generation per case (excluded); modes: ${o.modes.join(", ")}; T = ${o.temperatures.join(", ")}\n`,
  );
  const rows: BenchRow[] = [];
  const modes: ModeInfo[] = [];
  for (const [mi, mode] of o.modes.entries()) {
    log(`loading the pair (${mode}) ...`);
    const pair = await loadPair(folders, {
      mode,
      backend: backendOf(mode),
      threads: o.threads,
      weightsDtype: o.weightsDtype,
      maxBatch: maxBatchFor(o.sizes),
      hostMemoryBudget: o.hostMemoryBudget,
      log,
    });
    const info: ModeInfo = { ...pair.info, picks: [] };
    modes.push(info);
    try {
      if (pair.costs) info.costs = pair.costs;
      for (const temperature of o.temperatures) {
        // Tokens/step does not depend on where the weights live: the size sweep runs in the first mode only.
        rows.push(
          ...await runTemperature(pair, info, temperature, sets, { ...o, withSweep: mi === 0, log }),
        );
      }
      const hostCache = pair.hostCache();
      if (hostCache) info.hostCache = hostCache;
    } finally {
      pair.close();
    }
    print(modeSection(info, rows, backendOf(mode)));
  }
  const sequoia = sequoiaSection(rows);
  if (sequoia) print(sequoia);
  const report: BenchReport = {
    version: 1,
    command: o.command,
    deno: Deno.version.deno,
    adapter,
    startedAt: ctx.startedAt,
    wallSeconds: 0,
    settings: {
      quick: o.quick,
      runs: o.runs,
      temperatures: o.temperatures,
      modes: o.modes,
      backend: o.backend,
      warmup: "one generation of 4 tokens per case, mode and temperature (excluded)",
    },
    prompts: sets.flatMap((e) => e.set.prompts.slice(0, e.prompts.length).map((p) => p.text)),
    promptSets: sets.map((e) => ({
      name: e.set.name,
      path: e.set.path,
      ...(e.set.note === undefined ? {} : { note: e.set.note }),
      prompts: e.set.prompts.slice(0, e.prompts.length),
    })),
    models: {
      target: folders.targetFolder.path,
      draft: folders.draftFolder?.path ?? null,
    },
    modes,
    rows,
    plots: [],
  };
  if (o.outDir) {
    report.plots = await writePlots(rows, modes, `${adapter}; Deno ${Deno.version.deno}`, o.outDir);
    print(`plots: ${report.plots.join(", ")}`);
  }
  report.wallSeconds = Math.round((performance.now() - ctx.t0) / 100) / 10;
  if (o.jsonPath) {
    await Deno.writeTextFile(o.jsonPath, JSON.stringify(report, null, 2) + "\n");
    print(`json: ${o.jsonPath}`);
  }
  print(`wall time: ${report.wallSeconds.toFixed(1)} s`);
  return report;
}
