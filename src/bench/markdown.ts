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

/** The prompt sets of `rows` in first-seen order (undefined: a report from before prompt sets). */
export function setsOf(rows: BenchRow[]): (string | undefined)[] {
  return [...new Set(rows.map((r) => r.set))];
}

/** The side-by-side table of one mode (main cases, every temperature), on one prompt set when `set` is given. */
export function modeTable(rows: BenchRow[], mode: Mode, set?: string): string {
  const rs = rows.filter((r) =>
    r.mode === mode && r.group === "main" && (set === undefined || r.set === set)
  );
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

/** The Sequoia size sweep: measured tokens/step against the planner's G(n, d) (a set column when several). */
export function sweepTable(rows: BenchRow[]): string {
  const order = (m: Mode) => MODES.indexOf(m);
  const sets = setsOf(rows);
  const bySet = (r: BenchRow) => sets.indexOf(r.set);
  const withSet = sets.length > 1;
  const rs = rows.filter((r) => r.method === "sequoia" && r.n !== undefined)
    .sort((a, b) =>
      bySet(a) - bySet(b) || order(a.mode) - order(b.mode) || a.temperature - b.temperature || a.n! - b.n!
    );
  const body = rs.map((r) => [
    ...(withSet ? [r.set ?? ""] : []),
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
    [
      ...(withSet ? ["set"] : []),
      ...["mode", "T", "n", "d", "tokens/step", "planner G(n,d)", "measured vs G", "tok/s", "vs AR", ""],
    ],
    [
      ...(withSet ? ["l" as const] : []),
      ...["l", "r", "r", "r", "r", "r", "r", "r", "r", "l"] as ("l" | "r")[],
    ],
    body,
  );
}

/** The host cache of a paged mode, in words. */
function hostCacheLine(c: NonNullable<ModeInfo["hostCache"]>): string {
  if (c.budget === 0) {
    return "host cache: none (--host-memory-budget 0): every streamed layer is read from disk (the OS page " +
      "cache included) at every forward";
  }
  const budget = c.budget === undefined
    ? "default budget, half the free RAM"
    : `${(c.budget / 1e6).toFixed(0)} MB`;
  return `host cache (${budget}): ${c.cachedLayers} of ${c.streamedLayers} streamed layers held in RAM ` +
    `(${(c.cachedBytes / 1e6).toFixed(2)} MB)` +
    (c.cachedLayers < c.streamedLayers ? ", the rest read from disk" : "");
}

/**
 * One mode's section of the printed report: the load, the picks, and per prompt set a table and its notes.
 * `backend` is where the mode's rows ran.
 */
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
        } MB streamed per forward${info.hostCache ? `; ${hostCacheLine(info.hostCache)}` : ""}\n`,
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
  const mine = rows.filter((r) => r.mode === mode);
  if (info.picks.length === 0 && mine.every((r) => r.method === "ar" || r.method === "lookup")) {
    out.push("no draft model: AR and lookup only (no acceptance vector or Sequoia pick)");
  }
  for (const set of setsOf(mine)) {
    // One blank line before each heading and table, whatever came before.
    if (set !== undefined) {
      out.push(`${out[out.length - 1].endsWith("\n") ? "" : "\n"}### ${mode}, prompt set ${set}`);
    }
    out.push(`\n${modeTable(mine, mode, set)}\n`);
  }
  out.push(notes(mine, backend) + "\n");
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
  if (backend === "gpu" && rows.some((r) => r.method !== "ar" && r.method !== "lookup")) {
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
