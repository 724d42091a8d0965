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

/** A {@link LocalEngine} over an opened runtime; `close` releases the runtime. */
export class RuntimeEngine extends LocalEngine {
  private constructor(
    private readonly runtime: Runtime,
    readonly info: EngineInfo,
    plan: Awaited<ReturnType<Runtime["plan"]>>,
  ) {
    super(runtime.target.model, runtime.draft?.model, plan.adaptive, {
      tokenizer: runtime.target.folder.tokenizer,
    });
  }

  /** Open the models of `r` (startup stages on stderr) and make the server's plan. */
  static async open(r: EngineOpenRequest): Promise<RuntimeEngine> {
    const progress = new Progress(
      startupStageCount({ draft: r.draft, backend: r.backend }),
      (l) => console.error(l),
    );
    const runtime = await Runtime.open({
      model: r.model,
      draft: r.draft,
      backend: r.backend,
      threads: r.threads,
      decided: r.decided,
      paging: r.paging,
      reprofile: r.reprofile,
      cacheDir: r.cacheDir,
      log: (l) => console.error(`  ${l}`),
      stages: progress,
    });
    try {
      const plan = await runtime.plan(r.sampling, r.method, { scope: "server" });
      const pick = plan.pick?.pick;
      const info: EngineInfo = {
        context: runtime.context,
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
      return new RuntimeEngine(runtime, info, plan);
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
