/**
 * The side-by-side benchmark's Markdown: the generic aligned table, each mode's section (the load, the
 * Sequoia picks, the table and its notes) and the Sequoia section (measured tokens/step against the
 * planner's G(n, d)). Used by a live run and by `--replot` alike, so both print the same text.
 *
 * @module
 */

import type { Backend } from "../runtime/backend.ts";
import { type BenchRow, type Mode, type ModeInfo, MODES } from "./report.ts";

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

/** The Sequoia section of the printed report, or undefined when no Sequoia row ran. */
export function sequoiaSection(rows: BenchRow[]): string | undefined {
  if (!rows.some((r) => r.method === "sequoia")) return undefined;
  return `## Sequoia: measured tokens/step vs the planner's G(n, d)\n\n${sweepTable(rows)}\n`;
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
