/**
 * The side-by-side benchmark's three SVG plots (tokens/step vs tree size with the planner's prediction,
 * tok/s by method, the hardware profile's t(n)) and {@link writePlots}, which draws them into a folder
 * (the first two per prompt set when there are several).
 *
 * @module
 */

import { barChart, lineChart, type LineSeries } from "../util/svg.ts";
import type { BenchRow, ModeInfo } from "./report.ts";

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

/**
 * Write the plots under `outDir` (t(n) only when a mode has a hardware profile); returns their paths. With
 * several prompt sets the tokens/step and tok/s plots are drawn per set (`tok_s.<set>.svg`, ...).
 */
export async function writePlots(
  rows: BenchRow[],
  modes: ModeInfo[],
  subtitle: string,
  outDir: string,
): Promise<string[]> {
  await Deno.mkdir(outDir, { recursive: true });
  const sets = [...new Set(rows.map((r) => r.set))];
  const plots: [string, string][] = [];
  for (const set of sets) {
    const rs = rows.filter((r) => r.set === set);
    const [suffix, sub] = sets.length > 1 ? [`.${set}`, `${subtitle}; prompt set ${set}`] : ["", subtitle];
    plots.push(
      [`tokens_per_step${suffix}.svg`, tokensPerStepPlot(rs, sub)],
      [`tok_s${suffix}.svg`, tokPerSPlot(rs, sub)],
    );
  }
  if (modes.some((m) => m.costs)) plots.push(["t_n.svg", costPlot(modes, subtitle)]);
  const paths: string[] = [];
  for (const [name, svg] of plots) {
    const path = `${outDir.replace(/\/$/, "")}/${name}`;
    await Deno.writeTextFile(path, svg);
    paths.push(path);
  }
  return paths;
}
