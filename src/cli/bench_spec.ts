/**
 * `deno task bench --spec`: speculative methods side by side with AR on the bundled pair, per
 * temperature: tok/s, tokens per step, target forwards, syncs per token, draft / verify ms per step,
 * and, for Sequoia, the planner's predicted G(n, d) next to the measured tokens per step.
 *
 * @module
 */

import { median } from "../util/stats.ts";
import type { ModelFolder } from "../model/loader.ts";
import type { CausalLM } from "../model/types.ts";
import type { SpeculativeStats } from "../spec/engine.ts";
import type { Method, TreeOptions } from "../spec/methods.ts";
import { TREE_DEFAULTS } from "../spec/methods.ts";
import { expectedTokens, planSequoia } from "../spec/sequoia_plan.ts";
import { acceptanceFor, decode } from "../engine/decoder.ts";

/** One benchmark configuration. */
export interface SpecCase {
  method: Method;
  tree: TreeOptions;
  label: string;
}

/** One result row. */
export interface SpecRow {
  label: string;
  method: Method;
  temperature: number;
  tokPerS: number;
  tokensPerStep: number;
  predicted?: number;
  targetForwardsPerToken: number;
  syncsPerToken: number;
  draftMsPerStep: number;
  verifyMsPerStep: number;
  speedup: number;
}

/** Run every case at every temperature over `prompts`; prints a Markdown table. */
export async function benchSpeculative(
  pair: {
    targetFolder: ModelFolder;
    draftFolder: ModelFolder;
    target: CausalLM;
    draft: CausalLM;
    device: string;
  },
  prompts: number[][],
  opts: { temperatures: number[]; maxTokens: number; runs: number; cases: SpecCase[] },
): Promise<SpecRow[]> {
  const rows: SpecRow[] = [];
  for (const temperature of opts.temperatures) {
    const sampling = { temperature, topK: 0, topP: 1 };
    const acceptance = await acceptanceFor(pair, sampling, { log: (l) => console.error(l) });
    let arTps = 0;
    for (const c of opts.cases) {
      const perRun: SpeculativeStats[][] = [];
      for (let r = 0; r <= opts.runs; r++) { // run 0 warms up
        const stats: SpeculativeStats[] = [];
        for (const [i, p] of prompts.entries()) {
          const events = decode(c.method, pair.target, pair.draft, p, {
            tree: c.tree,
            acceptance,
            maxTokens: opts.maxTokens,
            sampling,
            seed: 1000 * r + i,
            eosIds: [],
          });
          for await (const ev of events) {
            if (ev.type === "done") {
              stats.push({ steps: 0, draftForwards: 0, draftMs: 0, verifyMs: 0, ...ev.stats });
            }
          }
        }
        if (r > 0) perRun.push(stats);
      }
      const sum = (s: SpeculativeStats[], f: (x: SpeculativeStats) => number) =>
        s.reduce((a, x) => a + f(x), 0);
      const tokens = sum(perRun[0], (x) => x.completionTokens);
      const steps = Math.max(1, sum(perRun[0], (x) => x.steps));
      const tps = median(
        perRun.map((s) => sum(s, (x) => x.completionTokens) / (sum(s, (x) => x.decodeMs) / 1000)),
      );
      if (c.method === "ar") arTps = tps;
      let predicted: number | undefined;
      if (c.method === "sequoia") {
        const n = c.tree.treeSize ?? TREE_DEFAULTS.sequoiaSize,
          d = (c.tree.depth ?? TREE_DEFAULTS.sequoiaDepth) + 1;
        predicted = expectedTokens(planSequoia(acceptance, n, d), n, d);
      }
      rows.push({
        label: c.label,
        method: c.method,
        temperature,
        tokPerS: tps,
        tokensPerStep: c.method === "ar" ? 1 : sum(perRun[0], (x) => x.tokensPerStep * x.steps) / steps,
        predicted,
        targetForwardsPerToken: sum(perRun[0], (x) => x.targetForwards) / tokens,
        syncsPerToken: sum(perRun[0], (x) => x.syncs) / tokens,
        draftMsPerStep: sum(perRun[0], (x) => x.draftMs) / steps,
        verifyMsPerStep: sum(perRun[0], (x) => x.verifyMs) / steps,
        speedup: arTps ? tps / arTps : NaN,
      });
    }
  }
  console.log(
    `\n## Speculative decoding (${pair.device}; ${prompts.length} held-out prompts x ${opts.maxTokens} tokens, median of ${opts.runs})\n`,
  );
  console.log(
    "| T | method | tok/s | speedup vs AR | tokens/step | planner G(n,d) | target fwd/token | syncs/token | draft ms/step | verify ms/step |",
  );
  console.log("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of rows) {
    console.log(
      `| ${r.temperature} | ${r.label} | ${r.tokPerS.toFixed(1)} | ${r.speedup.toFixed(2)}x | ${
        r.tokensPerStep.toFixed(2)
      } | ` +
        `${r.predicted?.toFixed(2) ?? ""} | ${r.targetForwardsPerToken.toFixed(2)} | ${
          r.syncsPerToken.toFixed(2)
        } | ` +
        `${r.method === "ar" ? "" : r.draftMsPerStep.toFixed(1)} | ${
          r.method === "ar" ? "" : r.verifyMsPerStep.toFixed(1)
        } |`,
    );
  }
  return rows;
}
