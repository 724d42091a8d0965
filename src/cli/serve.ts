/**
 * `deno task start`: load the model and serve the HTTP app.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, openModelFolder } from "../model/loader.ts";
import { type Backend, BACKENDS, loadModel, sharedGpu } from "./backend.ts";
import type { GpuLlama } from "../gpu/llama.ts";
import { acceptanceFor } from "../engine/decoder.ts";
import { AdaptiveSequoiaPlan } from "../spec/adaptive.ts";
import { type Method, METHODS, TREE_DEFAULTS } from "../spec/methods.ts";
import { planSequoia } from "../spec/sequoia_plan.ts";
import { rankTrees } from "../spec/tree_choice.ts";
import { loadOrMeasureCosts } from "./hardware_profile.ts";
import { createApp } from "../server/app.ts";
import { UsageError } from "./usage.ts";

const USAGE =
  `Usage: deno task start [--port N] [--host H] [--model DIR] [--draft DIR] [--method M] [--backend gpu|cpu]

  --port N     port (default $PORT or 8000; 0 = any free port)
  --host H     interface (default 127.0.0.1)
  --model DIR  Hugging Face Llama folder (default weights/tiny/target)
  --draft DIR  draft model for speculative methods (default weights/tiny/draft; "none" to serve AR only)
  --method M   default method of requests: auto (default: Sequoia when the startup profile predicts a
               speedup on this adapter, else ar), ar, chain, specinfer, sequoia, specexec
  --backend B  gpu (WebGPU, default) or cpu (the reference implementation)
  --reprofile  measure the adapter again instead of using the cached profile
`;

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
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${USAGE}`);
  }
  if (values.help) throw new UsageError(USAGE, 0);
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`--port must be 0..65535, got ${values.port}`);
  }
  if (!BACKENDS.includes(values.backend as Backend)) {
    throw new UsageError(`--backend must be "gpu" or "cpu", got ${JSON.stringify(values.backend)}`);
  }
  if (values.method !== "auto" && !METHODS.includes(values.method as Method)) {
    throw new UsageError(
      `--method must be auto or one of ${METHODS.join(", ")}, got ${JSON.stringify(values.method)}`,
    );
  }
  console.error(`loading ${values.model} ...`);
  const t0 = performance.now();
  const folder = await openModelFolder(values.model);
  const loaded = await loadModel(folder, values.backend as Backend);
  const model = loaded.model;
  const log = (l: string) => console.error(l);
  const backend = values.backend as Backend;
  const draftFolder = values.draft === "none" ? undefined : await openModelFolder(values.draft);
  const draftLoaded = draftFolder ? await loadModel(draftFolder, backend) : undefined;
  console.error(`loaded in ${(performance.now() - t0).toFixed(0)} ms (${loaded.device})`);
  // Startup profile (GPU): t(n) on this adapter (cached) + the acceptance vector for the default
  // sampling of requests -> Sequoia's tree, and whether speculation pays here at all.
  let method: Method = values.method === "auto" ? "ar" : values.method as Method;
  let tree: { treeSize?: number; depth?: number; budget?: number } = {};
  let acceptance: number[] | undefined;
  let adaptive: AdaptiveSequoiaPlan | undefined;
  let status: Record<string, unknown> | undefined;
  if (draftFolder && draftLoaded) {
    const pair = { targetFolder: folder, draftFolder, target: model, draft: draftLoaded.model };
    acceptance = await acceptanceFor(pair, { temperature: 0.7, topK: 0, topP: 1 }, { log });
    tree = { treeSize: TREE_DEFAULTS.sequoiaSize, depth: TREE_DEFAULTS.sequoiaDepth };
    if (backend === "gpu") {
      const gpu = await sharedGpu();
      const { costs, cached } = await loadOrMeasureCosts(gpu, {
        ...pair,
        target: model as GpuLlama,
        draft: draftLoaded.model as GpuLlama,
      }, {
        reprofile: values.reprofile,
        log,
      });
      const pick = rankTrees(planSequoia(acceptance, 256, 17), costs)[0];
      const bestK = costs.specexec?.slice().sort((a, b) => b.tokPerS - a.tokPerS)[0]?.budget;
      tree = { treeSize: pick.n, depth: pick.depth, budget: bestK };
      if (values.method === "auto") method = pick.speedup > 1 ? "sequoia" : "ar";
      status = { adapter: gpu.adapter, deno: Deno.version.deno, cached, costs, pick };
      log(
        `profile (${cached ? "cached" : "measured"}): sequoia n=${pick.n} depth=${pick.depth}, predicted ` +
          `${pick.speedup.toFixed(2)}x AR -> default method ${method}`,
      );
    }
    adaptive = new AdaptiveSequoiaPlan(acceptance, tree.treeSize!, tree.depth!);
  }
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
  });
  const ac = new AbortController();
  const server = Deno.serve({
    port,
    hostname: values.host,
    signal: ac.signal,
    onListen: ({ hostname, port }) => console.error(`listening on http://${hostname}:${port}`),
  }, app.fetch);
  const stop = () => ac.abort();
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
