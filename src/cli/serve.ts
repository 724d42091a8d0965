/**
 * `deno task start`: load the model and serve the HTTP app.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, openModelFolder } from "../model/folder.ts";
import { type Backend, BACKENDS, loadModel, sharedGpu } from "../runtime/backend.ts";
import type { GpuLlama } from "../gpu/llama/model.ts";
import { acceptanceFor } from "../runtime/acceptance.ts";
import { AdaptiveSequoiaPlan } from "../speculative/adaptive.ts";
import { type Method, METHODS, TREE_DEFAULTS } from "../speculative/methods.ts";
import { planSequoia } from "../speculative/sequoia_plan.ts";
import { rankTrees } from "../speculative/tree_choice.ts";
import { loadOrMeasureCosts } from "../runtime/hardware_profile.ts";
import { createApp, DEFAULT_MAX_QUEUE } from "../server/app.ts";
import { Scheduler } from "../server/queue.ts";
import { UsageError } from "./usage.ts";
import { PAGING_FLAGS, pagingBudgets } from "./paging_flags.ts";

const USAGE = `Usage: deno task start [options]

  --port N            port (default $PORT or 8000; 0 = any free port)
  --host H            interface (default 127.0.0.1)
  --model DIR         Hugging Face Llama folder (default weights/tiny/target)
  --draft DIR         draft model for speculative methods (default weights/tiny/draft; "none" to serve AR only)
  --method M          default method of requests: auto (default: Sequoia when the startup profile predicts
                      a speedup on this adapter, else ar), ar, chain, specinfer, sequoia, specexec
  --backend B         gpu (WebGPU, default) or cpu (the reference implementation)
  --reprofile         measure the adapter again instead of using the cached profile
  --api-key KEY       require "Authorization: Bearer KEY" on /v1/* and /metrics (default $SPECDEC_API_KEY)
  --queue-depth N     generations that may wait behind the running one; more get 429 (default ${DEFAULT_MAX_QUEUE})
  --drain-timeout S   on SIGINT/SIGTERM, let queued work finish for up to S seconds, then cancel it
                      (default 30; a second signal cancels at once)
  --gpu-memory-budget B   GPU bytes for the target's weights (e.g. 256MB); a target that does not fit
                          streams its decoder layers from disk through a ring of layer slots
  --host-memory-budget B  host RAM for caching streamed layers (default: all, up to half the free RAM)
`;

/** Startup progress on stderr: numbered stages with their time. */
class Progress {
  private i = 0;
  private readonly t0 = performance.now();
  constructor(private readonly total: number) {}

  /** Run one stage; prints "[i/n] what ..." then its outcome and duration. */
  async stage<T>(what: string, fn: () => Promise<T>, outcome: (v: T) => string = () => "done"): Promise<T> {
    const n = ++this.i;
    console.error(`[${n}/${this.total}] ${what} ...`);
    const t = performance.now();
    const v = await fn();
    console.error(`[${n}/${this.total}] ${what}: ${outcome(v)} (${(performance.now() - t).toFixed(0)} ms)`);
    return v;
  }

  /** Seconds since startup. */
  get elapsed(): string {
    return ((performance.now() - this.t0) / 1000).toFixed(1);
  }
}

function intOption(name: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be ${min}..${max}, got ${v}`);
  }
  return n;
}

/** Run the server until SIGINT/SIGTERM; returns the exit code. */
export async function runServe(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        port: { type: "string", default: Deno.env.get("PORT") ?? "8000" },
        host: { type: "string", default: "127.0.0.1" },
        model: { type: "string", default: DEFAULT_TARGET_DIR },
        backend: { type: "string", default: "gpu" },
        draft: { type: "string", default: DEFAULT_DRAFT_DIR },
        method: { type: "string", default: "auto" },
        reprofile: { type: "boolean", default: false },
        "api-key": { type: "string", default: Deno.env.get("SPECDEC_API_KEY") },
        "queue-depth": { type: "string", default: String(DEFAULT_MAX_QUEUE) },
        "drain-timeout": { type: "string", default: "30" },
        ...PAGING_FLAGS,
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${USAGE}`);
  }
  if (values.help) throw new UsageError(USAGE, 0);
  const port = intOption("port", values.port, 0, 65535);
  const maxQueue = intOption("queue-depth", values["queue-depth"], 0, 100_000);
  const drainS = Number(values["drain-timeout"]);
  if (!(drainS >= 0 && drainS <= 86_400)) {
    throw new UsageError(`--drain-timeout must be 0..86400 seconds, got ${values["drain-timeout"]}`);
  }
  if (values["api-key"] === "") throw new UsageError("--api-key must not be empty");
  if (!BACKENDS.includes(values.backend as Backend)) {
    throw new UsageError(`--backend must be "gpu" or "cpu", got ${JSON.stringify(values.backend)}`);
  }
  if (values.method !== "auto" && !METHODS.includes(values.method as Method)) {
    throw new UsageError(
      `--method must be auto or one of ${METHODS.join(", ")}, got ${JSON.stringify(values.method)}`,
    );
  }
  const backend = values.backend as Backend;
  const paging = pagingBudgets(values);
  const log = (l: string) => console.error(`  ${l}`);
  const withDraft = values.draft !== "none";
  const progress = new Progress(withDraft ? (backend === "gpu" ? 4 : 3) : 1);
  // The budget is the target's (the draft is small and always resident).
  const load = async (dir: string, opts: Parameters<typeof loadModel>[2] = {}) => {
    const folder = await openModelFolder(dir);
    return { folder, loaded: await loadModel(folder, backend, opts) };
  };
  const described = (m: Awaited<ReturnType<typeof load>>) =>
    `${m.folder.config.nLayers} layers, width ${m.folder.config.hiddenSize} on ${m.loaded.device}`;
  const target = await progress.stage(`target ${values.model}`, () => load(values.model, paging), described);
  const { folder, loaded } = target;
  const model = loaded.model;
  const draftPart = withDraft
    ? await progress.stage(`draft ${values.draft}`, () => load(values.draft), described)
    : undefined;
  const draftFolder = draftPart?.folder, draftLoaded = draftPart?.loaded;
  // Startup profile (GPU): t(n) on this adapter (cached) + the acceptance vector for the default
  // sampling of requests -> Sequoia's tree, and whether speculation pays here at all.
  let method: Method = values.method === "auto" ? "ar" : values.method as Method;
  let tree: { treeSize?: number; depth?: number; budget?: number } = {};
  let acceptance: number[] | undefined;
  let adaptive: AdaptiveSequoiaPlan | undefined;
  let status: Record<string, unknown> | undefined;
  if (draftFolder && draftLoaded) {
    const pair = { targetFolder: folder, draftFolder, target: model, draft: draftLoaded.model };
    const acc = await progress.stage(
      "acceptance vector (T=0.7)",
      () => acceptanceFor(pair, { temperature: 0.7, topK: 0, topP: 1 }, { log }),
      (v) => `p1 = ${v[0].toFixed(3)}`,
    );
    acceptance = acc;
    tree = { treeSize: TREE_DEFAULTS.sequoiaSize, depth: TREE_DEFAULTS.sequoiaDepth };
    if (backend === "gpu") {
      const gpu = await sharedGpu();
      const { costs, cached } = await progress.stage(
        "hardware profile",
        () =>
          loadOrMeasureCosts(gpu, {
            ...pair,
            target: model as GpuLlama,
            draft: draftLoaded.model as GpuLlama,
          }, {
            reprofile: values.reprofile,
            log,
          }),
        (r) => r.cached ? "cached" : "measured",
      );
      const pick = rankTrees(planSequoia(acc, 256, 17), costs)[0];
      const bestK = costs.specexec?.slice().sort((a, b) => b.tokPerS - a.tokPerS)[0]?.budget;
      tree = { treeSize: pick.n, depth: pick.depth, budget: bestK };
      if (values.method === "auto") method = pick.speedup > 1 ? "sequoia" : "ar";
      const paged = (model as GpuLlama).paging;
      status = {
        adapter: gpu.adapter,
        deno: Deno.version.deno,
        cached,
        costs,
        pick,
        paging: paged ?? "resident",
      };
      log(
        `sequoia n=${pick.n} depth=${pick.depth}, predicted ${
          pick.speedup.toFixed(2)
        }x AR -> default method ${method}`,
      );
    }
    adaptive = new AdaptiveSequoiaPlan(acc, tree.treeSize!, tree.depth!);
  }
  const scheduler = new Scheduler({ maxQueue });
  const app = createApp({
    name: folder.dir.split("/").filter(Boolean).pop() ?? "model",
    model,
    tokenizer: folder.tokenizer,
    draft: draftLoaded?.model,
    defaultMethod: method,
    tree,
    acceptance,
    adaptive,
    status,
  }, { scheduler, apiKey: values["api-key"] });
  const server = Deno.serve({
    port,
    hostname: values.host,
    onListen: ({ hostname, port }) =>
      console.error(
        `ready in ${progress.elapsed} s: listening on http://${hostname}:${port} (default method ${method}, ` +
          `queue depth ${maxQueue}${values["api-key"] ? ", API key required" : ""})`,
      ),
  }, app.fetch);
  // First signal: drain (no new generations, /ready 503, queued work finishes for up to --drain-timeout,
  // then is cancelled at its next step), then close the listener. A second signal cancels at once.
  let signals = 0;
  const stop = () => {
    if (++signals > 1) {
      console.error("cancelling in-flight generations");
      scheduler.cancelAll();
      return;
    }
    const busy = scheduler.running + scheduler.waiting;
    console.error(
      `shutting down: draining ${busy} generation(s) for up to ${drainS} s (signal again to cancel)`,
    );
    scheduler.drain(drainS * 1000).then(async (finished) => {
      if (!finished) console.error("drain timed out: cancelled the rest");
      await server.shutdown();
    });
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  loaded.close();
  draftLoaded?.close();
  draftFolder?.checkpoint.close();
  folder.checkpoint.close();
  return 0;
}
