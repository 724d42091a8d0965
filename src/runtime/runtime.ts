/**
 * The one owner of every startup decision, shared by serve, generate and profile (and bench): open the
 * model folders, choose the backend (`auto`: the faster of wasm and gpu, see backend_choice.ts), load
 * the target (with its paging budgets) and the draft on it, read or measure the hardware profile of that
 * backend and the acceptance vector (cached; see cache_dir.ts), pick Sequoia's tree and SpecExec's
 * budget for this adapter, choose the default method, choose a request's method under `--method auto`
 * from predicted speeds ({@link Runtime.choose}, method_choice.ts), and decode.
 *
 * Commands only parse flags, open a {@link Runtime}, print and pick exit codes; the lower-level
 * functions it composes (loadModel, loadOrMeasureCosts, acceptanceFor, ...) stay exported for bench and
 * tests.
 *
 * @module
 */

import { type ModelFolder, openModelFolder } from "../model/folder.ts";
import type { CausalLM } from "../model/causal_lm.ts";
import type { KvDtype } from "../gpu/ops.ts";
import { pagedModel } from "../model/capabilities.ts";
import type { SamplingParams } from "../model/sampling.ts";
import { AdaptiveSequoiaPlan } from "../speculative/adaptive.ts";
import { decode } from "../speculative/decode.ts";
import { type Method, needsDraftModel, TREE_DEFAULTS, type TreeOptions } from "../speculative/methods.ts";
import type { SequoiaPlan } from "../speculative/sequoia_plan.ts";
import { pickSequoiaTree, type TreeChoice } from "../speculative/tree_choice.ts";
import { LOOKUP_DEFAULTS, replayLookup } from "../speculative/drafters/lookup.ts";
import type { SpeculativeEvent } from "../speculative/engine.ts";
import {
  type Backend,
  type BackendChoice,
  defaultThreads,
  type LoadedModel,
  loadModel,
  type PagingBudgets,
  sharedGpu,
} from "./backend.ts";
import { type BackendDecision, chooseBackend, describeDecision, type T1 } from "./backend_choice.ts";
import { streamCapacity } from "./stream_capacity.ts";
import { type AcceptanceResult, loadOrMeasureAcceptance } from "./acceptance.ts";
import { acceptanceFiles } from "./acceptance_store.ts";
import {
  type BudgetRow,
  forwardMs,
  type HardwareCosts,
  isWasmHost,
  loadOrMeasureCosts,
  measureSpecExecBudgets,
  type ProfileDevice,
  type ProfileKey,
  syncCost,
  WasmHost,
} from "./hardware_profile.ts";
import {
  type AutoMethod,
  chooseMethod,
  type Exclusion,
  type MethodChoice,
  type ProfileCosts,
} from "./method_choice.ts";
import { resolveCacheDir } from "./cache_dir.ts";
import { describeWebGpu, resolveWebGpu } from "./webgpu_choice.ts";
import type { WebGpuChoice } from "../gpu/webgpu_impl.ts";
import { checkContext } from "./context_length.ts";
import { SILENT_STAGES, type Stages } from "./progress.ts";
import type { WeightsDtype } from "../model/weight_types.ts";

/** How to open a runtime. */
export interface RuntimeOptions {
  /** Target model folder (Hugging Face Llama layout). */
  model: string;
  /** Draft model folder for the speculative methods; omitted: autoregressive only. */
  draft?: string;
  /** Where both run; "auto": the faster of wasm and gpu here (measured once, cached). */
  backend: BackendChoice;
  /** wasm: threads per forward (default: this machine's cores). */
  threads?: number;
  /**
   * gpu (and auto): the WebGPU implementation (gpu/webgpu_impl.ts), made this process's before anything
   * touches WebGPU; "auto" measures both (runtime/webgpu_choice.ts, a startup stage). Default: the
   * process's (`$SPECDEC_WEBGPU`, else deno).
   */
  webgpu?: WebGpuChoice;
  /**
   * With backend "auto": a decision already made by the caller (resolveBackend; the server makes it on
   * its main thread so that its engine worker touches WebGPU only when it runs on it), used as it is.
   */
  decided?: BackendDecision;
  /** The target's weight budgets (the draft is small and always resident). */
  paging?: PagingBudgets;
  /** gpu: KV cache element type of both models (default "f32"). */
  kvDtype?: KvDtype;
  /** What type the target's matrices load as (`--weights-dtype`; the draft keeps its own `load_as`). */
  weightsDtype?: WeightsDtype;
  /** Most tokens one target forward must take (e.g. SpecExec's budget + 1); at least 256 on the GPU. */
  maxBatch?: number;
  /**
   * Batched streams: `streams` generations decode at once, their forwards batched (wasm and cpu); the
   * models hold a KV cache per stream plus one, each of the slots `kvBytes` leaves (stream_capacity.ts).
   */
  batch?: { streams: number; kvBytes?: number };
  /** Measure the adapter again instead of using the cached hardware profile (and backend choice). */
  reprofile?: boolean;
  /** Where profile.json / acceptance.json are cached (default `$SPECDEC_CACHE_DIR`; null: beside the draft). */
  cacheDir?: string | null;
  /** Progress of measurements and warnings (e.g. a truncated cache file). */
  log?: (line: string) => void;
  /** Reporter of the startup stages (default: silent). */
  stages?: Stages;
}

/** One opened, loaded model. */
export interface RuntimeModel {
  folder: ModelFolder;
  model: CausalLM;
  /** Where it runs, e.g. "gpu: llvmpipe (LLVM 15.0.6, 256 bits)", "wasm: 2 threads, SIMD128". */
  device: string;
}

/** Where the models run, as the server's status and generate's stats report it (plain data). */
export interface BackendStatus {
  backend: Backend;
  /** wasm: threads per forward (null on the other backends). */
  threads: number | null;
  /** The target's device line. */
  device: string;
  /** How `--backend auto` decided (null when a backend was named). */
  choice: { basis: string; t1_ms?: T1 } | null;
}

/** Sequoia's hardware-aware pick with the table it was ranked from. */
export interface SequoiaPick {
  pick: TreeChoice;
  ranked: TreeChoice[];
  plan: SequoiaPlan;
}

/** SpecExec's measured budgets and the fastest. */
export interface SpecExecChoice {
  budgets: BudgetRow[];
  best: BudgetRow;
}

/**
 * What a plan covers. "generation": one generation with its method (only what that method uses is read
 * or measured). "server": every method a request may ask for (acceptance, profile, Sequoia's tree and
 * SpecExec's budget), plus the status the server reports.
 */
export type PlanScope = "generation" | "server";

/** The decisions for decoding at one sampling setting. */
export interface RuntimePlan {
  /** The method chosen ("auto" resolved). */
  method: Method;
  /** Tree settings to decode with (explicit ones kept, the rest picked for this adapter). */
  tree: TreeOptions;
  /** The acceptance vector, when the plan needed one. */
  acceptance?: number[];
  /** Sequoia's pick on this adapter, when it decided the tree (gpu or wasm, no explicit shape). */
  pick?: SequoiaPick;
  /** SpecExec's measured budgets (server scope on gpu or wasm, when the profile has them). */
  specexec?: SpecExecChoice;
  /** Sequoia's self-re-planning tree, whenever Sequoia may run. */
  adaptive?: AdaptiveSequoiaPlan;
  /** The startup profile the server reports (server scope on gpu or wasm). */
  status?: Record<string, unknown>;
}

/** What {@link Runtime.choose} decided for one request (plain data). */
export interface MethodDecision {
  method: AutoMethod;
  /** The winner's tree settings (the request's own fields included): decode with these. */
  tree: TreeOptions;
  /** Sequoia: the acceptance vector at the request's temperature (see {@link autoSampling}). */
  acceptance?: number[];
  /** Sequoia: the key of the per-temperature plan whose self-re-planning tree it decodes with. */
  plan?: string;
  /** The predictions and the reason. */
  choice: MethodChoice;
}

/** What a request leaves to {@link Runtime.choose}: its own tree fields and the methods it rules out. */
export interface ChooseOptions {
  /** The request's explicit tree fields (predictions are made at them). */
  tree?: TreeOptions;
  /** Methods the request rules out (e.g. a tree field they do not read). */
  exclude?: readonly Exclusion[];
  /** Lookup's node budget when the request gives none (the server's tree size; default 16). */
  lookupBudget?: number;
}

/** Largest temperature auto measures an acceptance vector at (hotter requests use this one's). */
const AUTO_MAX_TEMPERATURE = 2;

/**
 * The sampling setting auto measures and caches acceptance at for a request's: its temperature rounded
 * to 0.1 and capped at 2, top-k 0, top-p 1 (acceptance moves mostly with temperature). A grid, so that a
 * client sending many temperatures costs at most 21 measurements, each once.
 */
export function autoSampling(s: SamplingParams): SamplingParams {
  const t = Math.round(Math.min(s.temperature, AUTO_MAX_TEMPERATURE) * 10) / 10;
  return { temperature: t, topK: 0, topP: 1 };
}

/** Auto's state at one sampling setting: the acceptance vector, the planner's table, Sequoia's live tree. */
interface AutoPlan {
  acceptance: number[];
  plan: SequoiaPlan;
  adaptive: AdaptiveSequoiaPlan;
}

/** Batch sizes of the target-only profile auto measures without a draft (lookup's default budget: 16). */
const TARGET_ONLY_SIZES = [1, 2, 4, 8, 16];

/** Options of one {@link Runtime.decode}: those of `decode`, EOS ids defaulting to the tokenizer's. */
export type RuntimeDecodeOptions = Omit<Parameters<typeof decode>[4], "eosIds"> & { eosIds?: number[] };

/** The fastest measured SpecExec budget, or undefined when none was measured. */
export function bestBudget(rows: BudgetRow[] | undefined): BudgetRow | undefined {
  return rows?.slice().sort((a, b) => b.tokPerS - a.tokPerS)[0];
}

/** Backends with a hardware profile (t(n) measured for Sequoia's planner); the CPU reference has none. */
export function profiledBackend(b: BackendChoice): boolean {
  return b !== "cpu";
}

/** Startup stages {@link Runtime.open} and a server-scope {@link Runtime.plan} report, for a progress total. */
export function startupStageCount(
  o: { draft?: string; backend: BackendChoice; webgpu?: WebGpuChoice },
): number {
  // auto picks gpu or wasm: both profiled; --webgpu auto measures both implementations
  const choose = (o.backend === "auto" ? 1 : 0) +
    (o.webgpu === "auto" && o.backend !== "wasm" && o.backend !== "cpu" ? 1 : 0);
  return choose + (o.draft === undefined ? 1 : profiledBackend(o.backend) ? 4 : 3);
}

const samplingKey = (s: SamplingParams) => `${s.temperature}|${s.topK}|${s.topP}`;

/** Loaded target (and draft) with the startup decisions made on them. */
export class Runtime {
  private readonly acceptances = new Map<string, Promise<AcceptanceResult>>();
  private costs?: Promise<{ costs: HardwareCosts; cached: boolean; key: ProfileKey }>;
  /** Auto's per-temperature plans (by samplingKey of autoSampling), and those resolved (for decode). */
  private readonly autoPlans = new Map<string, Promise<AutoPlan>>();
  private readonly autoResolved = new Map<string, AutoPlan>();
  private targetCosts?: Promise<ProfileCosts>;
  private closed = false;

  private constructor(
    private readonly options: RuntimeOptions,
    /** The backend both models run on ("auto" resolved). */
    readonly backend: Backend,
    /** How auto decided (undefined when a backend was named). */
    readonly backendChoice: BackendDecision | undefined,
    /** The target model. */
    readonly target: RuntimeModel,
    /** The draft model, when one was asked for. */
    readonly draft: RuntimeModel | undefined,
    private readonly loaded: LoadedModel[],
  ) {}

  /**
   * Open and load the target, then the draft (each one startup stage); with backend "auto", choose the
   * backend first (a stage of its own; without a stage reporter the decision goes to `log`).
   */
  static async open(options: RuntimeOptions): Promise<Runtime> {
    const stages = options.stages ?? SILENT_STAGES;
    const threads = options.threads ?? defaultThreads();
    const folders: ModelFolder[] = [];
    const loaded: LoadedModel[] = [];
    const described = (m: RuntimeModel) =>
      `${m.folder.config.nLayers} layers, width ${m.folder.config.hiddenSize} on ${m.device}`;
    const open = async (dir: string) => {
      const folder = await openModelFolder(dir);
      folders.push(folder);
      return folder;
    };
    let backend: Backend;
    let choice: BackendDecision | undefined;
    const load = async (
      dir: string | ModelFolder,
      opts: Parameters<typeof loadModel>[2],
      ready?: LoadedModel,
    ): Promise<RuntimeModel> => {
      const folder = typeof dir === "string" ? await open(dir) : dir;
      const m = ready ?? await loadModel(folder, backend, { ...opts, threads });
      if (!ready) loaded.push(m);
      return { folder, model: m.model, device: m.device };
    };
    try {
      let targetFolder: ModelFolder | string = options.model;
      if (options.webgpu && options.backend !== "wasm" && options.backend !== "cpu") {
        const webgpu = options.webgpu;
        const d = webgpu === "auto"
          ? await stages.stage("webgpu auto", () =>
            resolveWebGpu(webgpu, options.model, {
              weightsDtype: options.weightsDtype,
              reprofile: options.reprofile,
              cacheDir: options.cacheDir,
              log: options.log,
            }), describeWebGpu)
          : await resolveWebGpu(webgpu, options.model);
        if (webgpu === "auto" && stages === SILENT_STAGES) options.log?.(`webgpu auto: ${describeWebGpu(d)}`);
      }
      if (options.backend === "auto") {
        const folder = targetFolder = await open(options.model);
        choice = await stages.stage(
          "backend auto",
          async () => {
            if (options.decided) return { ...options.decided, loaded: undefined };
            const d = await chooseBackend(folder, {
              threads,
              paging: options.paging,
              maxBatch: options.maxBatch,
              weightsDtype: options.weightsDtype,
              reprofile: options.reprofile,
              cacheDir: options.cacheDir,
              log: options.log,
            });
            if (d.loaded) loaded.push(d.loaded);
            return d;
          },
          describeDecision,
        );
        if (stages === SILENT_STAGES) options.log?.(`backend auto: ${describeDecision(choice)}`);
        backend = choice.backend;
      } else {
        backend = options.backend;
      }
      // Batched streams: every model holds streams + 1 caches of the capacity the KV budget leaves.
      let seqs: { sequences: number; streamCapacity: number } | undefined;
      let draftFolder: ModelFolder | string | undefined = options.draft;
      if (options.batch && options.batch.streams > 1) {
        const tf = typeof targetFolder === "string" ? targetFolder = await open(targetFolder) : targetFolder;
        const df = options.draft === undefined ? undefined : draftFolder = await open(options.draft);
        const { sequences, streamCapacity: perStream } = streamCapacity(
          tf.config,
          df?.config,
          options.batch.streams,
          options.batch.kvBytes,
        );
        seqs = { sequences, streamCapacity: perStream };
        if (choice?.loaded) {
          // The backend choice's copy holds one sequence.
          choice.loaded.close();
          loaded.splice(loaded.indexOf(choice.loaded), 1);
          choice = { ...choice, loaded: undefined };
        }
      }
      const target = await stages.stage(
        `target ${options.model}`,
        () =>
          load(
            targetFolder,
            {
              ...options.paging,
              maxBatch: options.maxBatch,
              weightsDtype: options.weightsDtype,
              ...seqs,
              kvDtype: options.kvDtype,
            },
            options.kvDtype === "f16" ? undefined : choice?.loaded, // the choice's copy has an f32 cache
          ),
        described,
      );
      const draft = draftFolder === undefined ? undefined : await stages.stage(
        `draft ${options.draft}`,
        () => load(draftFolder!, { ...seqs, kvDtype: options.kvDtype }),
        described,
      );
      return new Runtime(options, backend, choice, target, draft, loaded);
    } catch (e) {
      for (const m of loaded) m.close();
      for (const f of folders) f.checkpoint.close();
      throw e;
    }
  }

  /** wasm: threads per forward (undefined on the other backends). */
  get threads(): number | undefined {
    return this.backend === "wasm" ? this.options.threads ?? defaultThreads() : undefined;
  }

  /** Where the models run and how that was decided, as plain data. */
  backendStatus(): BackendStatus {
    const c = this.backendChoice;
    return {
      backend: this.backend,
      threads: this.threads ?? null,
      device: this.target.device,
      choice: c ? { basis: c.basis, ...(c.t1 ? { t1_ms: c.t1 } : {}) } : null,
    };
  }

  /** What the hardware profile is measured on: the shared GPU, or this CPU at the wasm thread count. */
  async profileDevice(): Promise<ProfileDevice> {
    if (!profiledBackend(this.backend)) {
      throw new RangeError(`the hardware profile measures the gpu or wasm backend, not ${this.backend}`);
    }
    return this.backend === "gpu" ? await sharedGpu() : new WasmHost(this.threads!);
  }

  /** The cache directory in force (undefined: caches beside the draft). */
  get cacheDir(): string | undefined {
    return resolveCacheDir(this.options.cacheDir);
  }

  /** The target's context length in tokens (prompt + generated). */
  get context(): number {
    return this.target.model.config.maxPositions;
  }

  /** Throws a ContextLengthError (naming `param`) when the prompt plus `maxTokens` exceed the context. */
  checkContext(promptTokens: number, maxTokens: number, param = "max_tokens"): void {
    checkContext(promptTokens, maxTokens, this.context, param);
  }

  /** Where acceptance vectors are stored when measured. */
  get acceptancePath(): string {
    return acceptanceFiles(this.requireDraft().folder.dir, this.options.cacheDir).write;
  }

  private requireDraft(): RuntimeModel {
    if (!this.draft) throw new RangeError("this runtime has no draft model");
    return this.draft;
  }

  private pair() {
    const d = this.requireDraft();
    return {
      targetFolder: this.target.folder,
      draftFolder: d.folder,
      target: this.target.model,
      draft: d.model,
    };
  }

  /** The acceptance vector at `sampling` (stored, or measured now and stored); needs the draft. */
  acceptance(sampling: SamplingParams, opts: { remeasure?: boolean } = {}): Promise<AcceptanceResult> {
    const key = samplingKey(sampling);
    let r = opts.remeasure ? undefined : this.acceptances.get(key);
    if (!r) {
      r = loadOrMeasureAcceptance(this.pair(), sampling, {
        remeasure: opts.remeasure,
        log: this.options.log,
        cacheDir: this.options.cacheDir,
      });
      this.acceptances.set(key, r);
      r.catch(() => this.acceptances.delete(key)); // a failure is not remembered
    }
    return r;
  }

  /**
   * t_target(n), t_draft(n), the sync cost and SpecExec's budgets on this backend and adapter (cached);
   * gpu and wasm only.
   */
  hardwareCosts(): Promise<{ costs: HardwareCosts; cached: boolean; key: ProfileKey }> {
    if (!this.costs) {
      const pair = this.pair();
      this.costs = this.profileDevice().then((device) =>
        loadOrMeasureCosts(device, pair, {
          reprofile: this.options.reprofile,
          log: this.options.log,
          cacheDir: this.options.cacheDir,
        })
      );
      this.costs.catch(() => (this.costs = undefined));
    }
    return this.costs;
  }

  /** SpecExec's budgets from the profile, measured now at `sampling` when the profile lacks them. */
  async specExecBudgets(sampling: SamplingParams): Promise<SpecExecChoice> {
    const { costs } = await this.hardwareCosts();
    const budgets = costs.specexec ??
      await measureSpecExecBudgets(await this.profileDevice(), this.pair(), sampling, this.options.log);
    return { budgets, best: bestBudget(budgets)! };
  }

  /** Sequoia's hardware-aware tree for `sampling` on this adapter. */
  async sequoiaPick(sampling: SamplingParams): Promise<SequoiaPick> {
    const { acceptance } = await this.acceptance(sampling);
    return pickSequoiaTree(acceptance, (await this.hardwareCosts()).costs);
  }

  /**
   * Decide how to decode at `sampling` with `method` ("auto": Sequoia where this adapter's pick predicts a
   * speedup over AR, else ar; ar without a draft or on the CPU reference: the startup decision, reported at
   * server scope, where each request's method is then chosen by {@link Runtime.choose}). Explicit
   * `tree` settings are kept; Sequoia's shape is picked for the adapter only when neither its size nor
   * its depth is given. Without a draft only ar and lookup can run (lookup's budget: `tree.treeSize`).
   */
  async plan(
    sampling: SamplingParams,
    method: Method | "auto",
    opts: { scope?: PlanScope; tree?: TreeOptions } = {},
  ): Promise<RuntimePlan> {
    const scope = opts.scope ?? "generation";
    const explicit = opts.tree ?? {};
    if (!this.draft) {
      if (method !== "auto" && needsDraftModel(method)) {
        throw new RangeError(`method "${method}" needs a draft model`);
      }
      return { method: method === "auto" ? "ar" : method, tree: { ...explicit } };
    }
    const stages = this.options.stages ?? SILENT_STAGES;
    const profiled = profiledBackend(this.backend);
    const sequoiaMayRun = scope === "server" || method === "sequoia" || method === "auto";
    if (!sequoiaMayRun) return { method: method as Method, tree: { ...explicit } };
    const { acceptance } = await stages.stage(
      `acceptance vector (T=${sampling.temperature})`,
      () => this.acceptance(sampling),
      (r) => `p1 = ${r.acceptance[0].toFixed(3)}`,
    );
    const plan: RuntimePlan = {
      method: method === "auto" ? "ar" : method,
      tree: { ...explicit },
      acceptance,
    };
    if (scope === "server") {
      plan.tree = { treeSize: TREE_DEFAULTS.sequoiaSize, depth: TREE_DEFAULTS.sequoiaDepth, ...explicit };
    }
    const shapeGiven = explicit.treeSize !== undefined || explicit.depth !== undefined;
    if (profiled && (scope === "server" || !shapeGiven)) {
      const { costs, cached } = await stages.stage(
        "hardware profile",
        () => this.hardwareCosts(),
        (r) => r.cached ? "cached" : "measured",
      );
      const pick = pickSequoiaTree(acceptance, costs);
      plan.pick = pick;
      plan.tree = { ...plan.tree, treeSize: pick.pick.n, depth: pick.pick.depth };
      if (scope === "server") {
        const best = bestBudget(costs.specexec);
        plan.tree.budget = explicit.budget ?? best?.budget;
        if (best) plan.specexec = { budgets: costs.specexec!, best };
        plan.status = {
          adapter: (await this.profileDevice()).adapter,
          backend: this.backend,
          threads: this.threads ?? null,
          deno: Deno.version.deno,
          cached,
          costs,
          pick: pick.pick,
          paging: pagedModel(this.target.model)?.paging ?? "resident",
        };
      }
      if (method === "auto") plan.method = pick.pick.speedup > 1 ? "sequoia" : "ar";
    }
    plan.adaptive = new AdaptiveSequoiaPlan(
      acceptance,
      plan.tree.treeSize ?? TREE_DEFAULTS.sequoiaSize,
      plan.tree.depth ?? TREE_DEFAULTS.sequoiaDepth,
    );
    if (scope === "server" && plan.pick && !shapeGiven) {
      // The startup measurement is auto's plan at its temperature: kept, not measured again, and its
      // self-re-planning tree is the one requests that name sequoia share.
      const key = samplingKey(autoSampling(sampling));
      if (!this.autoPlans.has(key)) {
        const auto = { acceptance, plan: plan.pick.plan, adaptive: plan.adaptive };
        this.autoPlans.set(key, Promise.resolve(auto));
        this.autoResolved.set(key, auto);
      }
    }
    return plan;
  }

  /**
   * Auto's plan at `sampling`'s grid point ({@link autoSampling}): its acceptance vector (stored, or
   * measured now, once per temperature: slow), the planner's table and a self-re-planning tree at the
   * hardware-aware pick. Needs the draft and a profiled backend.
   */
  private autoPlan(sampling: SamplingParams): Promise<AutoPlan> {
    const s = autoSampling(sampling);
    const key = samplingKey(s);
    let p = this.autoPlans.get(key);
    if (!p) {
      p = (async () => {
        const { acceptance } = await this.acceptance(s);
        const pick = pickSequoiaTree(acceptance, (await this.hardwareCosts()).costs);
        const auto = {
          acceptance,
          plan: pick.plan,
          adaptive: new AdaptiveSequoiaPlan(acceptance, pick.pick.n, pick.pick.depth),
        };
        this.autoResolved.set(key, auto);
        return auto;
      })();
      this.autoPlans.set(key, p);
      p.catch(() => this.autoPlans.delete(key)); // a failure is not remembered
    }
    return p;
  }

  /** The self-re-planning Sequoia tree of auto's plan `key` ({@link MethodDecision.plan}), once made. */
  autoAdaptive(key: string): AdaptiveSequoiaPlan | undefined {
    return this.autoResolved.get(key)?.adaptive;
  }

  /**
   * The costs auto predicts with: the hardware profile with a draft; without one, t_target(n) for
   * n = 1..16 measured here once (a few forwards per size, not cached on disk); undefined on the CPU
   * reference (no profile).
   */
  private async autoCosts(): Promise<ProfileCosts | undefined> {
    if (!profiledBackend(this.backend)) return undefined;
    if (this.draft) return (await this.hardwareCosts()).costs;
    if (!this.targetCosts) {
      this.targetCosts = this.measureTargetCosts();
      this.targetCosts.catch(() => (this.targetCosts = undefined));
    }
    return this.targetCosts;
  }

  private async measureTargetCosts(): Promise<ProfileCosts> {
    const device = await this.profileDevice();
    const wasm = isWasmHost(device);
    const model = this.target.model;
    const sync = wasm ? 0 : (await syncCost(device)).readbackMs;
    const sizes = TARGET_ONLY_SIZES.filter((n) => n <= (model.maxBatch ?? Infinity));
    const past = Math.min(64, model.kv.capacity - sizes[sizes.length - 1] - 1);
    // Warm-up, unmeasured (the wasm kernels reach optimized code after a few forwards; GPU pipelines
    // compile on first use).
    await forwardMs(model, 1, past, sync, wasm ? 8 : 2);
    const target: number[] = [];
    for (const n of sizes) target.push(await forwardMs(model, n, past, sync, n === 1 ? 5 : 2));
    this.options.log?.(
      `auto: the target's t(n) for lookup's prediction: ${
        sizes.map((n, i) => `t(${n}) = ${target[i].toFixed(1)} ms`).join(", ")
      }`,
    );
    return { sizes, target, sync, arTokensPerSubmission: wasm ? 1 : 8 };
  }

  /**
   * `--method auto` for one request: predict each method's tok/s for `prompt` at `sampling` and take the
   * fastest (method_choice.ts). Sequoia's prediction uses the acceptance vector at the request's
   * temperature (grid: {@link autoSampling}; measured once per grid point when not stored, which is
   * slow); SpecExec's, the profile's measured budgets; lookup's, a replay of the prompt
   * (replayLookup). Without a draft only ar and lookup are candidates; on the CPU reference (no profile)
   * nothing is predicted: ar, or the first method the request allows.
   */
  async choose(
    prompt: readonly number[],
    sampling: SamplingParams,
    o: ChooseOptions = {},
  ): Promise<MethodDecision> {
    const tree = o.tree ?? {};
    const exclude: Exclusion[] = [...(o.exclude ?? [])];
    if (!this.draft) {
      exclude.push({ method: "sequoia", why: "no draft model" }, {
        method: "specexec",
        why: "no draft model",
      });
    }
    const costs = await this.autoCosts();
    const ruledOut = (m: AutoMethod) => exclude.some((e) => e.method === m);
    const auto = costs && this.draft && !ruledOut("sequoia") ? await this.autoPlan(sampling) : undefined;
    const specexec = (costs as HardwareCosts | undefined)?.specexec;
    if (costs && this.draft && !specexec?.length && !ruledOut("specexec")) {
      exclude.push({ method: "specexec", why: "no SpecExec budget measured" });
    }
    const choice = chooseMethod({
      costs,
      sequoia: auto && {
        acceptance: auto.acceptance,
        plan: auto.plan,
        tree: { treeSize: tree.treeSize, depth: tree.depth },
      },
      specexec: specexec?.length ? { budgets: specexec, budget: tree.budget } : undefined,
      lookup: costs && !ruledOut("lookup")
        ? replayLookup(prompt, {
          budget: tree.treeSize ?? o.lookupBudget ?? LOOKUP_DEFAULTS.budget,
          depth: tree.depth ?? LOOKUP_DEFAULTS.depth,
        })
        : undefined,
      exclude,
    });
    const sequoia = choice.method === "sequoia" && auto;
    return {
      method: choice.method,
      tree: choice.tree,
      ...(sequoia ? { acceptance: auto.acceptance, plan: samplingKey(autoSampling(sampling)) } : {}),
      choice,
    };
  }

  /** One generation with `method` on the loaded pair (see speculative/decode.ts). */
  decode(method: Method, prompt: number[], o: RuntimeDecodeOptions): AsyncGenerator<SpeculativeEvent> {
    return decode(method, this.target.model, this.draft?.model, prompt, {
      ...o,
      eosIds: o.eosIds ?? this.target.folder.tokenizer.eosIds,
    });
  }

  /** Release both models, their devices' buffers and the checkpoints (idempotent). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of this.loaded) m.close();
    this.target.folder.checkpoint.close();
    this.draft?.folder.checkpoint.close();
  }
}
