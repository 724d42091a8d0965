/**
 * `deno task profile --acceptance`: measure the acceptance vector of a model pair at given sampling
 * settings (progress on stderr), store it beside the draft model, print it with the planner's G(n, d).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, openModelFolder } from "../model/loader.ts";
import { validateSampling } from "../model/sampling.ts";
import { expectedTokens, planSequoia } from "../spec/sequoia_plan.ts";
import { type Backend, BACKENDS, loadModel } from "./backend.ts";
import { acceptanceFor } from "./decoder.ts";
import { UsageError } from "./usage.ts";

const USAGE = `Usage: deno task profile --acceptance [options]

  --acceptance       measure (or re-measure) the acceptance vector and store it beside the draft
  --model DIR        target (default weights/tiny/target)
  --draft DIR        draft (default weights/tiny/draft)
  --temperature T    (default 0.7)   --top-k K (default 0)   --top-p P (default 0.95)
  --backend gpu|cpu  (default gpu)
  --json             print one JSON object

The hardware-aware part (t(n) curves, picking the tree for the adapter) is not built yet.
`;

/** Run `profile`; returns the exit code. */
export async function runProfile(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        acceptance: { type: "boolean", default: false },
        model: { type: "string", default: DEFAULT_TARGET_DIR },
        draft: { type: "string", default: DEFAULT_DRAFT_DIR },
        temperature: { type: "string", default: "0.7" },
        "top-k": { type: "string", default: "0" },
        "top-p": { type: "string", default: "0.95" },
        backend: { type: "string", default: "gpu" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${USAGE}`);
  }
  if (values.help) throw new UsageError(USAGE, 0);
  if (!values.acceptance) {
    throw new UsageError(`profile: only --acceptance is available so far\n\n${USAGE}`);
  }
  if (!BACKENDS.includes(values.backend as Backend)) throw new UsageError(`--backend must be "gpu" or "cpu"`);
  const sampling = {
    temperature: Number(values.temperature),
    topK: Number(values["top-k"]),
    topP: Number(values["top-p"]),
  };
  try {
    validateSampling(sampling);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const targetFolder = await openModelFolder(values.model);
  const draftFolder = await openModelFolder(values.draft);
  const t = await loadModel(targetFolder, values.backend as Backend);
  const d = await loadModel(draftFolder, values.backend as Backend);
  const t0 = performance.now();
  const acc = await acceptanceFor({ targetFolder, draftFolder, target: t.model, draft: d.model }, sampling, {
    remeasure: true,
    log: (l) => console.error(l),
  });
  const ms = performance.now() - t0;
  const plan = planSequoia(acc, 256, 17);
  const sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256];
  const depths = [2, 3, 5, 9, 17];
  if (values.json) {
    console.log(JSON.stringify({
      sampling,
      acceptance: acc,
      measure_ms: ms,
      g: Object.fromEntries(depths.map((dd) => [dd - 1, sizes.map((n) => expectedTokens(plan, n, dd))])),
    }));
  } else {
    console.log(
      `acceptance p_1..p_${acc.length} at T=${sampling.temperature}: ${
        acc.map((x) => x.toFixed(3)).join(" ")
      }`,
    );
    console.log(`measured in ${(ms / 1000).toFixed(1)} s; stored in ${draftFolder.dir}/acceptance.json\n`);
    console.log(`G(n, d): expected tokens per step (rows: speculated depth d; columns: tree size n)\n`);
    console.log(`| d \\ n | ${sizes.join(" | ")} |`);
    console.log(`|---|${sizes.map(() => "---:").join("|")}|`);
    for (const dd of depths) {
      console.log(
        `| ${dd - 1} | ${
          sizes.map((n) => expectedTokens(plan, n, dd).toFixed(2).replace("-Infinity", "-")).join(" | ")
        } |`,
      );
    }
  }
  t.close();
  d.close();
  return 0;
}
