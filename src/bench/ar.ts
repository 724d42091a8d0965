/**
 * `deno task bench --ar`: autoregressive tok/s of the target and the draft, each alone, on the GPU at 8
 * and 1 tokens per submission (what batching submissions buys) and on the CPU reference.
 *
 * @module
 */

import { generateAutoregressive } from "../decoding/autoregressive.ts";
import type { GenerationStats } from "../decoding/stats.ts";
import { GREEDY } from "../model/sampling.ts";
import type { Backend } from "../runtime/backend.ts";
import { median } from "../util/stats.ts";
import { loadAlone, openPair } from "./pair.ts";
import { benchPrompts } from "./prompts.ts";

/** Options of the AR benchmark. */
export interface ArBenchOptions {
  /** Held-out prompts ({@link benchPrompts}). */
  prompts: number;
  /** Tokens generated per prompt. */
  maxTokens: number;
  /** Measured runs (after one warm-up); tok/s is their median. */
  runs: number;
  /** Where the JSON goes (none when undefined). */
  jsonPath?: string;
}

/** One measured configuration. */
export interface ArRow {
  model: string;
  backend: string;
  perSubmission: number;
  tokPerS: number;
  prefillMs: number;
  syncsPerToken: number;
}

const CONFIGS: { backend: Backend; per: number }[] = [
  { backend: "gpu", per: 8 },
  { backend: "gpu", per: 1 },
  { backend: "cpu", per: 1 },
];

/** Run the AR benchmark; prints Markdown and returns the rows. */
export async function benchAr(o: ArBenchOptions): Promise<ArRow[]> {
  const prompts = await benchPrompts(o.prompts);
  const folders = await openPair();
  const rows: ArRow[] = [];
  let device = "";
  for (const [name, folder] of [["target", folders.targetFolder], ["draft", folders.draftFolder!]] as const) {
    for (const cfg of CONFIGS) {
      const loaded = await loadAlone(folder, cfg.backend);
      if (cfg.backend === "gpu") device = loaded.device;
      const perRun: GenerationStats[][] = [];
      for (let r = 0; r <= o.runs; r++) { // run 0 is the warm-up
        const stats: GenerationStats[] = [];
        for (const p of prompts) {
          const gen = generateAutoregressive(loaded.model, folder.tokenizer.encode(p), {
            maxTokens: o.maxTokens,
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
  }
  folders.close();
  console.log(
    `Deno ${Deno.version.deno}; ${device}; ${prompts.length} prompts x ${o.maxTokens} tokens, greedy, median of ${o.runs} run(s)\n`,
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
  if (o.jsonPath) {
    await Deno.writeTextFile(o.jsonPath, JSON.stringify({ deno: Deno.version.deno, device, rows }, null, 2));
  }
  return rows;
}
