/**
 * The side-by-side benchmark's pure parts: per-run samples -> result rows (median tok/s, pooled ratios),
 * the Markdown tables, the JSON report and the three SVG plots. No GPU, no I/O.
 *
 * @module
 */

import type { Method, TreeOptions } from "../speculative/methods.ts";
import type { MeasuredCosts } from "../speculative/tree_choice.ts";
import { median } from "../util/stats.ts";
import { barChart, lineChart, type LineSeries } from "../util/svg.ts";

/** How the target's weights are held. */
export type Mode = "resident" | "paged";
/** Every mode, in run order. */
export const MODES: readonly Mode[] = ["resident", "paged"];

/** One benchmark configuration. */
export interface BenchCase {
  /** Row label, e.g. "sequoia n=8 d=2". */
  label: string;
  /** Bar name in the tok/s plot (the same across modes and temperatures, e.g. "sequoia (pick)"). */
  series: string;
  method: Method;
  tree: TreeOptions;
  /** "main": the side-by-side list; "sweep": extra Sequoia sizes for the tokens/step plot. */
  group: "main" | "sweep";
  /** Prompts (the first N of bench/prompts.json) and tokens generated per prompt. */
  prompts: number;
  maxTokens: number;
  /** Sequoia: the planned tree, the planner's G(n, d) and whether it is the profiler's pick. */
  sequoia?: { n: number; depth: number; predicted: number; pick: boolean };
}

/** Paging counters of one run (differences of two snapshots). */
export interface PagingSample {
  bytes: number;
  /** Reading + writing layer bytes. */
  uploadMs: number;
  /** Time forwards waited for a refill. */
  stallMs: number;
}

/** One measured run of one case: the sums over its prompts. */
export interface RunSample {
  tokens: number;
  decodeMs: number;
  steps: number;
  /** Sum over steps of the tokens each emitted (= tokens after the first for speculation). */
  stepTokens: number;
  /** Sum over steps of the tree's nodes (root included). */
  treeNodes: number;
  targetForwards: number;
  syncs: number;
  draftMs: number;
  verifyMs: number;
  paging?: PagingSample;
}

/** One result row. */
export interface BenchRow {
  mode: Mode;
  temperature: number;
  group: "main" | "sweep";
  label: string;
  series: string;
  method: Method;
  tree: TreeOptions;
  n?: number;
  depth?: number;
  pick?: boolean;
  prompts: number;
  maxTokens: number;
  /** Measured runs (warm-up excluded). */
  runs: number;
  /** Tokens counted per run (all prompts). */
  tokens: number;
  /** Median over runs of tokens / decode seconds (prefill excluded). */
  tokPerS: number;
  tokPerSRuns: number[];
  /** tokPerS / AR's tokPerS in the same mode, temperature and run. */
  speedup: number;
  tokensPerStep: number;
  /** Sequoia: the planner's G(n, d). */
  predictedTokensPerStep?: number;
  /** Mean tree nodes per step (root included); absent for AR. */
  treeNodesPerStep?: number;
  targetForwardsPerToken: number;
  syncsPerToken: number;
  draftMsPerStep?: number;
  verifyMsPerStep?: number;
  /** Paged mode: weight bytes streamed per generated token and how much of the upload time compute hid. */
  paging?: { uploadMBPerToken: number; uploadMsPerToken: number; stallMsPerToken: number; overlap: number };
}

/** Per-mode facts for the report. */
export interface ModeInfo {
  mode: Mode;
  device: string;
  /** Paged: the budget the target was loaded under and the plan it got. */
  gpuMemoryBudget?: number;
  targetWeightBytes?: number;
  plan?: { residentLayers: number; ringSlots: number; layerBytes: number; bytesPerForward: number };
  /** The hardware profile's t(n) curves (absent on the CPU backend). */
  costs?: MeasuredCosts;
  picks: {
    temperature: number;
    n: number;
    depth: number;
    predictedTokPerS?: number;
    predictedSpeedup?: number;
  }[];
}

/** The JSON report (`--json PATH`). */
export interface BenchReport {
  version: 1;
  command: string;
  deno: string;
  adapter: string;
  startedAt: string;
  wallSeconds: number;
  settings: {
    quick: boolean;
    runs: number;
    temperatures: number[];
    modes: Mode[];
    backend?: "gpu" | "cpu";
    warmup: string;
  };
  prompts: string[];
  modes: ModeInfo[];
  rows: BenchRow[];
  plots: string[];
}

const sumOf = (xs: RunSample[], f: (s: RunSample) => number) => xs.reduce((a, s) => a + f(s), 0);

/**
 * A case's row from its measured runs: tok/s is the median over runs; every other figure pools all runs
 * (ratios of sums). `arTokPerS` is AR's median in the same mode and temperature (NaN when absent).
 */
export function summarize(
  c: BenchCase,
  ctx: { mode: Mode; temperature: number; arTokPerS: number },
  runs: RunSample[],
): BenchRow {
  if (runs.length === 0) throw new RangeError(`no measured runs for ${c.label}`);
  const tps = runs.map((r) => (r.decodeMs > 0 ? r.tokens / (r.decodeMs / 1000) : NaN));
  const tokPerS = median(tps);
  const tokens = sumOf(runs, (r) => r.tokens);
  const steps = sumOf(runs, (r) => r.steps);
  const ar = c.method === "ar";
  const row: BenchRow = {
    mode: ctx.mode,
    temperature: ctx.temperature,
    group: c.group,
    label: c.label,
    series: c.series,
    method: c.method,
    tree: c.tree,
    n: c.sequoia?.n,
    depth: c.sequoia?.depth,
    pick: c.sequoia?.pick,
    prompts: c.prompts,
    maxTokens: c.maxTokens,
    runs: runs.length,
    tokens: runs[0].tokens,
    tokPerS,
    tokPerSRuns: tps,
    speedup: ar ? 1 : tokPerS / ctx.arTokPerS,
    tokensPerStep: ar || steps === 0 ? 1 : sumOf(runs, (r) => r.stepTokens) / steps,
    predictedTokensPerStep: c.sequoia?.predicted,
    treeNodesPerStep: ar || steps === 0 ? undefined : sumOf(runs, (r) => r.treeNodes) / steps,
    targetForwardsPerToken: sumOf(runs, (r) => r.targetForwards) / tokens,
    syncsPerToken: sumOf(runs, (r) => r.syncs) / tokens,
    draftMsPerStep: ar || steps === 0 ? undefined : sumOf(runs, (r) => r.draftMs) / steps,
    verifyMsPerStep: ar || steps === 0 ? undefined : sumOf(runs, (r) => r.verifyMs) / steps,
  };
  const paged = runs.filter((r) => r.paging);
  if (paged.length) {
    const bytes = sumOf(paged, (r) => r.paging!.bytes);
    const upload = sumOf(paged, (r) => r.paging!.uploadMs);
    const stall = sumOf(paged, (r) => r.paging!.stallMs);
    const t = sumOf(paged, (r) => r.tokens);
    row.paging = {
      uploadMBPerToken: bytes / 1e6 / t,
      uploadMsPerToken: upload / t,
      stallMsPerToken: stall / t,
      overlap: upload > 0 ? Math.min(1, Math.max(0, 1 - stall / upload)) : 1,
    };
  }
  return row;
}

/** A Markdown table; `align` per column ("l" or "r"). */
export function markdownTable(headers: string[], align: ("l" | "r")[], rows: string[][]): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  const widths = headers.map((h, i) => Math.max(3, h.length, ...rows.map((r) => esc(r[i] ?? "").length)));
  const cell = (s: string, i: number) => align[i] === "r" ? s.padStart(widths[i]) : s.padEnd(widths[i]);
  const line = (cells: string[]) => `| ${cells.map((c, i) => cell(esc(c ?? ""), i)).join(" | ")} |`;
  const rule = `| ${
    widths.map((w, i) => align[i] === "r" ? "-".repeat(w - 1) + ":" : "-".repeat(w)).join(" | ")
  } |`;
  return [line(headers), rule, ...rows.map(line)].join("\n");
}

const f = (v: number | undefined, digits: number) =>
  v === undefined || !Number.isFinite(v) ? "" : v.toFixed(digits);

/** The side-by-side table of one mode (main cases, every temperature). */
export function modeTable(rows: BenchRow[], mode: Mode): string {
  const rs = rows.filter((r) => r.mode === mode && r.group === "main");
  const paged = rs.some((r) => r.paging);
  const headers = [
    "T",
    "method",
    "tok/s",
    "vs AR",
    "tokens/step",
    "planner G",
    "tree nodes",
    "target fwd/token",
    "syncs/token",
    "draft ms/step",
    "verify ms/step",
    "tokens x runs",
    ...(paged ? ["upload MB/token", "overlap"] : []),
  ];
  const body = rs.map((r) => [
    String(r.temperature),
    r.label + (r.pick ? " (pick)" : ""),
    f(r.tokPerS, 1),
    Number.isFinite(r.speedup) ? `${r.speedup.toFixed(2)}x` : "",
    f(r.tokensPerStep, 2),
    f(r.predictedTokensPerStep, 2),
    f(r.treeNodesPerStep, 0),
    f(r.targetForwardsPerToken, 2),
    f(r.syncsPerToken, 2),
    f(r.draftMsPerStep, 1),
    f(r.verifyMsPerStep, 1),
    `${r.tokens} x ${r.runs}`,
    ...(paged
      ? [f(r.paging?.uploadMBPerToken, 2), r.paging ? `${(r.paging.overlap * 100).toFixed(0)}%` : ""]
      : []),
  ]);
  return markdownTable(headers, ["r", "l", ...headers.slice(2).map(() => "r" as const)], body);
}

/** The Sequoia size sweep: measured tokens/step against the planner's G(n, d). */
export function sweepTable(rows: BenchRow[]): string {
  const order = (m: Mode) => MODES.indexOf(m);
  const rs = rows.filter((r) => r.method === "sequoia" && r.n !== undefined)
    .sort((a, b) => order(a.mode) - order(b.mode) || a.temperature - b.temperature || a.n! - b.n!);
  const body = rs.map((r) => [
    r.mode,
    String(r.temperature),
    String(r.n),
    String(r.depth),
    f(r.tokensPerStep, 2),
    f(r.predictedTokensPerStep, 2),
    r.predictedTokensPerStep
      ? `${(100 * (r.tokensPerStep / r.predictedTokensPerStep - 1)).toFixed(0).replace(/^(\d)/, "+$1")}%`
      : "",
    f(r.tokPerS, 1),
    Number.isFinite(r.speedup) ? `${r.speedup.toFixed(2)}x` : "",
    r.pick ? "pick" : "",
  ]);
  return markdownTable(
    ["mode", "T", "n", "d", "tokens/step", "planner G(n,d)", "measured vs G", "tok/s", "vs AR", ""],
    ["l", "r", "r", "r", "r", "r", "r", "r", "r", "l"],
    body,
  );
}

const TEMP_COLORS = [["#1f5f9e", "#7fb2e0", "#4e79a7"], ["#c4570a", "#f7b27a", "#f28e2b"], [
  "#2e7d32",
  "#a5d6a7",
  "#59a14f",
]];

/** Plot 1: tokens/step vs tree size (Sequoia measured and predicted per temperature; other methods as points). */
export function tokensPerStepPlot(rows: BenchRow[], subtitle: string): string {
  const temps = [...new Set(rows.map((r) => r.temperature))].sort((a, b) => a - b);
  // Tokens per step does not depend on where the weights live: use the first mode that has the sweep.
  const mode = rows.find((r) => r.group === "sweep")?.mode ?? rows[0]?.mode;
  const series: LineSeries[] = [];
  temps.forEach((t, i) => {
    const [dark, light, mid] = TEMP_COLORS[i % TEMP_COLORS.length];
    const seq = rows.filter((r) => r.mode === mode && r.temperature === t && r.method === "sequoia" && r.n)
      .sort((a, b) => a.n! - b.n!);
    const byN = new Map(seq.map((r) => [r.n!, r]));
    const pts = [...byN.values()];
    series.push({
      name: `Sequoia measured, T=${t}`,
      color: dark,
      points: pts.map((r) => ({ x: r.n!, y: r.tokensPerStep })),
    });
    series.push({
      name: `planner G(n, d), T=${t}`,
      color: light,
      dashed: true,
      points: pts.filter((r) => r.predictedTokensPerStep).map((r) => ({
        x: r.n!,
        y: r.predictedTokensPerStep!,
      })),
    });
    const others = rows.filter((r) =>
      r.mode === mode && r.temperature === t && r.method !== "sequoia" && r.method !== "ar" &&
      r.treeNodesPerStep
    );
    if (others.length) {
      series.push({
        name: `other methods, T=${t}`,
        color: mid,
        line: false,
        labelPosition: i % 2 ? "below" : "above",
        points: others.map((r) => ({
          x: r.treeNodesPerStep!,
          y: r.tokensPerStep,
          label: r.label.replace("specinfer", "SpecInfer").replace("specexec ", ""),
        })),
      });
    }
  });
  return lineChart({
    title: "Tokens per step vs tree size",
    subtitle: `${subtitle}; ${mode}; Sequoia at the profiler's depth for each n`,
    x: { label: "tree nodes per step (root included, log scale)", log: true },
    y: { label: "tokens per step (accepted + bonus)", min: 0 },
    series,
  });
}

/** Plot 2: tok/s by method, grouped by mode and temperature, AR's level dashed. */
export function tokPerSPlot(rows: BenchRow[], subtitle: string): string {
  const main = rows.filter((r) => r.group === "main");
  const keys = [...new Set(main.map((r) => `${r.mode}|${r.temperature}`))];
  return barChart({
    title: "Decoding speed by method",
    subtitle: `${subtitle}; dashed: AR in the same run`,
    yLabel: "tokens per second (median of runs)",
    groups: keys.map((k) => {
      const rs = main.filter((r) => `${r.mode}|${r.temperature}` === k);
      const ar = rs.find((r) => r.method === "ar");
      const [mode, t] = k.split("|");
      return {
        label: `${mode}, T=${t}`,
        bars: rs.map((r) => ({ name: r.series, value: r.tokPerS })),
        reference: ar ? { label: `AR ${ar.tokPerS.toFixed(1)}`, value: ar.tokPerS } : undefined,
      };
    }),
  });
}

/** Plot 3: the hardware profile's t(n): target (per mode) and draft forward ms vs tokens per forward. */
export function costPlot(modes: ModeInfo[], subtitle: string): string {
  const series: LineSeries[] = [];
  const colors = { resident: "#4e79a7", paged: "#e15759" };
  let draftDone = false;
  for (const m of modes) {
    const c = m.costs;
    if (!c) continue;
    series.push({
      name: `target, ${m.mode}`,
      color: colors[m.mode],
      points: c.sizes.map((n, i) => ({ x: n, y: c.target[i] })),
    });
    series.push({
      name: `n x t_target(1), ${m.mode}`,
      color: colors[m.mode],
      dashed: true,
      markers: false,
      points: c.sizes.map((n) => ({ x: n, y: n * c.target[0] })),
    });
    if (!draftDone) {
      series.push({
        name: "draft",
        color: "#59a14f",
        points: c.sizes.map((n, i) => ({ x: n, y: c.draft[i] })),
      });
      draftDone = true;
    }
  }
  const sync = modes.find((m) => m.costs)?.costs?.sync;
  return lineChart({
    title: "t(n): one forward of n tokens",
    subtitle: `${subtitle}; sync excluded${sync ? ` (one GPU->CPU sync: ${sync.toFixed(1)} ms)` : ""}`,
    x: { label: "tokens per forward n (log scale)", log: true },
    y: { label: "ms per forward (log scale)", log: true },
    series,
  });
}
