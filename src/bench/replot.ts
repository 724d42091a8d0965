/**
 * `deno task bench --replot PATH`: the tables and plots of a saved JSON report, without measuring, so a
 * long run's output can be redrawn (or compared with a later run's) after the fact.
 *
 * @module
 */

import type { Backend } from "../runtime/backend.ts";
import { modeSection, sequoiaSection } from "./markdown.ts";
import { writePlots } from "./plots.ts";
import type { BenchReport } from "./report.ts";

/** Read a saved report; throws when the file is not a version-1 benchmark report. */
export async function readReport(path: string): Promise<BenchReport> {
  const r = JSON.parse(await Deno.readTextFile(path)) as BenchReport;
  if (r.version !== 1 || !Array.isArray(r.rows) || !Array.isArray(r.modes)) {
    throw new Error(`${path}: not a benchmark report (version 1)`);
  }
  return r;
}

/** Print the tables of the report at `path` and, when `outDir` is given, redraw its plots there. */
export async function replot(
  path: string,
  outDir: string | undefined,
  print = (t: string) => console.log(t),
): Promise<void> {
  const r = await readReport(path);
  // Reports from before `settings.backend` existed: the CPU reference names itself as the adapter.
  const backend: Backend = r.settings.backend ?? (r.adapter === "cpu reference" ? "cpu" : "gpu");
  print(`# specdec benchmark: methods side by side (from ${path})\n`);
  print(
    `command: ${r.command}\nDeno ${r.deno}; adapter: ${r.adapter}; backend: ${backend}; ${r.startedAt}\n`,
  );
  const split = r.modes.find((m) => m.backend !== undefined && m.backend !== backend);
  if (split) {
    print(`${split.mode} rows: ${split.backend} (only the gpu backend pages weights); others: ${backend}`);
  }
  if (r.models) print(`target: ${r.models.target}; draft: ${r.models.draft ?? "none (AR and lookup only)"}`);
  if (r.promptSets) {
    print(
      `prompt sets: ${
        r.promptSets.map((s) => `${s.name} (${s.path}: ${s.prompts.length} prompts)`).join("; ")
      }\n`,
    );
  }
  for (const m of r.modes) print(modeSection(m, r.rows, m.backend ?? backend));
  const sequoia = sequoiaSection(r.rows);
  if (sequoia) print(sequoia);
  if (outDir) {
    const plots = await writePlots(r.rows, r.modes, `${r.adapter}; Deno ${r.deno}`, outDir);
    print(`plots: ${plots.join(", ")}`);
  }
  print(`wall time of that run: ${r.wallSeconds.toFixed(1)} s`);
}
