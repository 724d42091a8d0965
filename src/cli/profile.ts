/**
 * `deno task profile`: the hardware profile of this adapter on the gpu or wasm backend (cached) with the
 * acceptance vector, and the trees and SpecExec budget a {@link Runtime} picks from them. `--acceptance`: measure the acceptance
 * vector of a model pair at given sampling settings (progress on stderr), store it (beside the draft,
 * or in $SPECDEC_CACHE_DIR), print it with the planner's G(n, d).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR } from "../model/folder.ts";
import { SAMPLING_DEFAULTS, type SamplingParams, validateSampling } from "../model/sampling.ts";
import { pagedModel } from "../model/capabilities.ts";
import { expectedTokens, type SequoiaPlan } from "../speculative/sequoia_plan.ts";
import { planForPick } from "../speculative/tree_choice.ts";
import type { PagingBudgets } from "../runtime/backend.ts";
import { Runtime } from "../runtime/runtime.ts";
import { UsageError } from "./usage.ts";
import { formatBytes } from "../util/bytes.ts";
import { PAGING_FLAGS, pagingBudgets } from "./paging_flags.ts";
import {
  BACKEND_FLAGS,
  type BackendFlags,
  backendFlags,
  backendUsage,
  checkPagingBackend,
} from "./backend_flags.ts";

const SAMPLING = SAMPLING_DEFAULTS.cli;

const USAGE = `Usage: deno task profile [--acceptance] [options]

  (default)          measure t_target(n), t_draft(n) and the sync cost on this adapter and backend (gpu
                     or wasm; cached beside the draft; --reprofile forces a new measurement), combine
                     them with the acceptance vector (stored, or measured now) and pick Sequoia's tree
                     size and depth
  --acceptance       only (re-)measure the acceptance vector and store it beside the draft
  --reprofile        ignore the cached hardware profile
  --model PATH       target folder or .gguf file (default weights/tiny/target)
  --draft PATH       draft folder or .gguf file (default weights/tiny/draft)
  --temperature T    (default ${SAMPLING.temperature})   --top-k K (default ${SAMPLING.topK})   --top-p P (default ${SAMPLING.topP})
${
  backendUsage(21)
}  --gpu-memory-budget B   profile the target paged under B bytes of GPU weight memory (its own
                          cached profile: t(n) is nearly flat when streaming weights dominates)
  --host-memory-budget B  host RAM for caching streamed layers
  --json             print one JSON object
`;

/** Run `profile`; returns the exit code. */
export async function runProfile(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        acceptance: { type: "boolean", default: false },
        reprofile: { type: "boolean", default: false },
        model: { type: "string", default: DEFAULT_TARGET_DIR },
        draft: { type: "string", default: DEFAULT_DRAFT_DIR },
        temperature: { type: "string", default: String(SAMPLING.temperature) },
        "top-k": { type: "string", default: String(SAMPLING.topK) },
        "top-p": { type: "string", default: String(SAMPLING.topP) },
        ...BACKEND_FLAGS,
        json: { type: "boolean", default: false },
        ...PAGING_FLAGS,
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${USAGE}`);
  }
  if (values.help) throw new UsageError(USAGE, 0);
  const backend = backendFlags(values);
  const paging = pagingBudgets(values);
  checkPagingBackend(backend.backend, paging);
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
  const models = { model: values.model, draft: values.draft };
  if (!values.acceptance) {
    if (backend.backend === "cpu") {
      throw new UsageError(
        "profile: the hardware profile measures the gpu or wasm backend, not --backend cpu",
      );
    }
    return await hardwareProfile(models, sampling, {
      json: values.json,
      reprofile: values.reprofile,
      ...backend,
      ...paging,
    });
  }
  const log = (l: string) => console.error(l);
  const runtime = await Runtime.open({ ...models, ...backend, log });
  try {
    const t0 = performance.now();
    const { acceptance: acc, path } = await runtime.acceptance(sampling, { remeasure: true });
    const ms = performance.now() - t0;
    const plan = planForPick(acc);
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
      console.log(
        `measured in ${(ms / 1000).toFixed(1)} s; ${path ? `stored in ${path}` : "not stored"}\n`,
      );
      printGTable(plan, sizes, depths);
    }
  } finally {
    runtime.close();
  }
  return 0;
}

async function hardwareProfile(
  models: { model: string; draft: string },
  sampling: SamplingParams,
  o: { json: boolean; reprofile: boolean } & BackendFlags & PagingBudgets,
): Promise<number> {
  const log = (l: string) => console.error(l);
  const t0 = performance.now();
  const runtime = await Runtime.open({
    ...models,
    backend: o.backend,
    webgpu: o.webgpu,
    threads: o.threads,
    weightsDtype: o.weightsDtype,
    paging: { gpuMemoryBudget: o.gpuMemoryBudget, hostMemoryBudget: o.hostMemoryBudget },
    reprofile: o.reprofile,
    log,
  });
  try {
    const device = await runtime.profileDevice();
    const where = runtime.backendStatus();
    const paging = pagedModel(runtime.target.model)?.paging;
    if (paging) {
      log(
        `target paged: ${paging.residentLayers} resident layers + ${paging.ringSlots}-slot ring, ${
          formatBytes(paging.bytesPerForward)
        } streamed per forward`,
      );
    }
    const { costs, cached } = await runtime.hardwareCosts();
    const { acceptance } = await runtime.acceptance(sampling);
    const { pick, ranked, plan } = await runtime.sequoiaPick(sampling);
    const { budgets, best: bestK } = await runtime.specExecBudgets(sampling);
    const seconds = (performance.now() - t0) / 1000;
    if (o.json) {
      console.log(
        JSON.stringify({
          adapter: device.adapter,
          backend: where.backend,
          threads: where.threads,
          device: where.device,
          backend_choice: where.choice,
          deno: Deno.version.deno,
          paging,
          cached,
          seconds,
          costs,
          acceptance,
          sampling,
          pick,
          ranked: ranked.slice(0, 10),
          specexec: budgets,
          specexec_budget: bestK.budget,
        }),
      );
      return 0;
    }
    console.log(
      `adapter: ${device.adapter.description || device.adapter.vendor}; backend ${runtime.target.device}; ` +
        `profile ${cached ? "from cache" : "measured"} (${seconds.toFixed(1)} s)`,
    );
    console.log(
      runtime.backend === "gpu"
        ? `sync (GPU->CPU readback): ${costs.sync.toFixed(2)} ms\n`
        : "sync: none (the wasm backend's logits are in memory when its forward returns)\n",
    );
    console.log("| n | t_target(n) ms | t_draft(n) ms |");
    console.log("|---:|---:|---:|");
    costs.sizes.forEach((n, i) =>
      console.log(`| ${n} | ${costs.target[i].toFixed(2)} | ${costs.draft[i].toFixed(2)} |`)
    );
    console.log(
      `\nacceptance at T=${sampling.temperature}: ${
        acceptance.slice(0, 8).map((x) => x.toFixed(3)).join(" ")
      } ...\n`,
    );
    printGTable(plan, [1, 2, 4, 8, 16, 32, 64, 128, 256], [2, 3, 5, 9, 17]);
    console.log("\nBest trees for this adapter (predicted):\n");
    console.log("| n | depth | G(n, d) tokens/step | step ms | tok/s | vs AR |");
    console.log("|---:|---:|---:|---:|---:|---:|");
    for (const r of ranked.slice(0, 8)) {
      console.log(
        `| ${r.n} | ${r.depth} | ${r.tokensPerStep.toFixed(2)} | ${r.stepMs.toFixed(1)} | ${
          r.tokPerS.toFixed(1)
        } | ${r.speedup.toFixed(2)}x |`,
      );
    }
    console.log(
      `\npick: --tree-size ${pick.n} --depth ${pick.depth} (predicted ${pick.tokPerS.toFixed(1)} tok/s, ` +
        `${pick.speedup.toFixed(2)}x the AR baseline's ${pick.arTokPerS.toFixed(1)} tok/s)` +
        (pick.speedup < 1 ? "; speculation does not pay on this adapter: use --method ar" : ""),
    );
    console.log(
      `specexec: --budget ${bestK.budget} (measured ${bestK.tokPerS.toFixed(1)} tok/s, ` +
        `${bestK.tokensPerStep.toFixed(2)} tokens/step, among K = ${
          budgets.map((b) => b.budget).join(", ")
        })`,
    );
    return 0;
  } finally {
    runtime.close();
  }
}

/** Print G(n, d) as a Markdown table (rows: speculated depth = planner levels - 1; columns: tree size). */
function printGTable(plan: SequoiaPlan, sizes: number[], levels: number[]): void {
  console.log(`G(n, d): expected tokens per step (rows: speculated depth d; columns: tree size n)\n`);
  console.log(`| d \\ n | ${sizes.join(" | ")} |`);
  console.log(`|---|${sizes.map(() => "---:").join("|")}|`);
  for (const l of levels) {
    const row = sizes.map((n) => expectedTokens(plan, n, l).toFixed(2).replace("-Infinity", "-"));
    console.log(`| ${l - 1} | ${row.join(" | ")} |`);
  }
}
