/**
 * A {@link Runtime} opened for serving, as a {@link DecodeEngine} in this thread: models loaded, the
 * server-scope startup plan made (acceptance, hardware profile, Sequoia's tree, SpecExec's budget,
 * default method), and what the HTTP side needs to know about it ({@link EngineInfo}). With
 * `--method auto` it chooses each request's method ({@link RuntimeEngine.choose}). The engine worker runs
 * one; `serve --engine inline` runs one on the HTTP thread.
 *
 * @module
 */

import { Progress } from "../runtime/progress.ts";
import { type MethodDecision, Runtime, startupStageCount } from "../runtime/runtime.ts";
import type { AdaptiveSequoiaPlan } from "../speculative/adaptive.ts";
import { type ChooseRequest, LocalEngine } from "./engine.ts";
import type { EngineInfo, EngineOpenRequest } from "./engine_protocol.ts";
import type { BatchRecord } from "../batching/batcher.ts";
import { StreamPool } from "../batching/stream_pool.ts";
import { isMultiSequence } from "../model/capabilities.ts";
import { rankTrees } from "../speculative/tree_choice.ts";

/** A {@link LocalEngine} over an opened runtime; `close` releases the runtime. */
export class RuntimeEngine extends LocalEngine {
  private constructor(
    private readonly runtime: Runtime,
    readonly info: EngineInfo,
    plan: Awaited<ReturnType<Runtime["plan"]>>,
    pool: StreamPool | undefined,
    batchNodes: ((streams: number) => number) | undefined,
  ) {
    super(runtime.target.model, runtime.draft?.model, plan.adaptive, {
      tokenizer: runtime.target.folder.tokenizer,
      pool,
      batchNodes,
    });
  }

  /**
   * Open the models of `r` (startup stages on stderr) and make the server's plan. With `r.batch`, the
   * generations decode on leased sequences (1 ..) of the pair; `onBatch` hears of every batched forward.
   */
  static async open(r: EngineOpenRequest, onBatch?: (b: BatchRecord) => void): Promise<RuntimeEngine> {
    const progress = new Progress(
      startupStageCount({ draft: r.draft, backend: r.backend, webgpu: r.webgpu }),
      (l) => console.error(l),
    );
    const runtime = await Runtime.open({
      model: r.model,
      draft: r.draft,
      backend: r.backend,
      webgpu: r.webgpu,
      threads: r.threads,
      weightsDtype: r.weightsDtype,
      decided: r.decided,
      paging: r.paging,
      kvDtype: r.kvDtype,
      reprofile: r.reprofile,
      cacheDir: r.cacheDir,
      batch: r.batch,
      log: (l) => console.error(`  ${l}`),
      stages: progress,
    });
    try {
      const plan = await runtime.plan(r.sampling, r.method, { scope: "server" });
      const pick = plan.pick?.pick;
      const t = runtime.target.model, d = runtime.draft?.model;
      // Sequence 0 stays the runtime's own (its measurements for auto run on the models' `kv`).
      const pool = isMultiSequence(t) && (d === undefined || isMultiSequence(d))
        ? new StreamPool(t, d, { first: 1, onBatch })
        : undefined;
      const info: EngineInfo = {
        context: pool?.context ?? runtime.context,
        maxStreams: pool?.size ?? 1,
        hasDraft: runtime.draft !== undefined,
        backend: runtime.backendStatus(),
        method: plan.method,
        defaultMethod: r.method,
        tree: plan.tree,
        acceptance: plan.acceptance,
        // Plain data (it crosses to the HTTP thread): the adapter facts and costs are plain already.
        status: plan.status ? JSON.parse(JSON.stringify(plan.status)) : undefined,
        pick: pick && { n: pick.n, depth: pick.depth, speedup: pick.speedup },
        liveAcceptance: plan.adaptive?.acceptance,
      };
      // Greedy speculation in a batch: the nodes per stream that pay for B streams (from the same profile).
      let batchNodes: ((streams: number) => number) | undefined;
      if (pool && plan.pick) {
        const { costs } = await runtime.hardwareCosts();
        const sequoia = plan.pick.plan, memo = new Map<number, number>();
        batchNodes = (streams) => {
          if (!memo.has(streams)) {
            const best = rankTrees(sequoia, costs, streams)[0];
            memo.set(streams, !best || best.speedup < 1 ? 1 : best.n);
          }
          return memo.get(streams)!;
        };
      }
      return new RuntimeEngine(runtime, info, plan, pool, batchNodes);
    } catch (e) {
      runtime.close();
      throw e;
    }
  }

  /**
   * `--method auto` for one generation (Runtime.choose): lookup's budget, when the request gives none, is
   * the server's tree size, as for a request that names lookup. Callers serialize it with the decodes
   * (it may measure an acceptance vector on the models).
   */
  choose(prompt: number[], request: ChooseRequest): Promise<MethodDecision> {
    return this.runtime.choose(prompt, request.sampling, {
      tree: request.tree,
      exclude: request.exclude,
      lookupBudget: this.info.tree.treeSize,
    });
  }

  protected override adaptiveFor(plan: string | undefined): AdaptiveSequoiaPlan | undefined {
    return (plan === undefined ? undefined : this.runtime.autoAdaptive(plan)) ?? super.adaptiveFor(plan);
  }

  override close(): void {
    this.runtime.close();
  }
}
