/**
 * Every model load of the benchmarks, in one place: opening the pair's folders, loading the pair
 * resident or paged, its hardware profile (t(n) costs), its acceptance vector per sampling setting, and
 * Sequoia's hardware-aware tree pick. The pair itself loads through the shared {@link Runtime}; the AR
 * and kernel benchmarks load single models here too.
 *
 * @module
 */

import { type Backend, type LoadedModel, loadModel, sharedGpu } from "../runtime/backend.ts";
import type { HardwareCosts } from "../runtime/hardware_profile.ts";
import { profiledBackend, Runtime } from "../runtime/runtime.ts";
import { GpuLlama } from "../gpu/llama/model.ts";
import { minPagedBudget, weightSizes } from "../gpu/paging/plan.ts";
import { pagedModel } from "../model/capabilities.ts";
import type { CausalLM } from "../model/causal_lm.ts";
import {
  type Checkpoint,
  DEFAULT_DRAFT_DIR,
  DEFAULT_TARGET_DIR,
  type ModelFolder,
  openCheckpoint,
  openModelFolder,
} from "../model/folder.ts";
import type { SamplingParams } from "../model/sampling.ts";
import { pickSequoiaTree, type TreeChoice } from "../speculative/tree_choice.ts";
import type { Mode, ModeInfo } from "./report.ts";
import type { WeightsDtype } from "../model/weight_types.ts";

/** The pair's folders (weights, config, tokenizer), open for the whole benchmark. */
export interface PairFolders {
  targetFolder: ModelFolder;
  /** Absent with no draft model (`--draft none`: AR and lookup only). */
  draftFolder?: ModelFolder;
  /** Close both checkpoints. */
  close(): void;
}

/**
 * Open the target and draft (folders or GGUF files; default: the bundled tiny pair; `draftDir` null: no
 * draft).
 */
export async function openPair(
  dirs: { targetDir?: string; draftDir?: string | null } = {},
): Promise<PairFolders> {
  const targetFolder = await openModelFolder(dirs.targetDir ?? DEFAULT_TARGET_DIR);
  let draftFolder: ModelFolder | undefined;
  try {
    if (dirs.draftDir !== null) draftFolder = await openModelFolder(dirs.draftDir ?? DEFAULT_DRAFT_DIR);
  } catch (e) {
    targetFolder.checkpoint.close();
    throw e;
  }
  return {
    targetFolder,
    draftFolder,
    close: () => {
      targetFolder.checkpoint.close();
      draftFolder?.checkpoint.close();
    },
  };
}

/** The budget `paged` mode loads the target under: a quarter of its weights, or the least that can page. */
export function pagedBudget(
  folder: Checkpoint,
  want: WeightsDtype = "auto",
): { budget: number; weightBytes: number } {
  const w = weightSizes(folder.checkpoint, folder.config, want);
  const weightBytes = w.baseBytes + w.nLayers * w.layerBytes;
  return {
    budget: Math.max(Math.floor(weightBytes / 4), minPagedBudget(folder.checkpoint, folder.config, want)),
    weightBytes,
  };
}

/** The Sequoia tree the side-by-side run uses at one temperature, and the ranking it came from. */
export interface SequoiaChoice {
  pick: { n: number; depth: number };
  /** Every (n, d) by predicted tok/s: the cases' planner G(n, d) and the sweep's depths come from it. */
  ranked: TreeChoice[];
  /** The pick's predicted tok/s and speedup over AR; absent without a hardware profile. */
  predicted?: { tokPerS: number; speedup: number };
}

/** A loaded pair for one mode, with what the benchmarks ask of it. */
export interface BenchPair {
  target: CausalLM;
  /** Absent without a draft model (then only AR and lookup run, with no profile or acceptance vector). */
  draft?: CausalLM;
  /** Where the target runs, e.g. "gpu: llvmpipe (...), paged: ...". */
  device: string;
  /** The load as the report states it. */
  info: Omit<ModeInfo, "picks" | "costs">;
  /** The hardware profile's t(n) curves for this pair and mode (cached or measured); gpu and wasm. */
  costs?: HardwareCosts;
  /** The acceptance vector at these sampling settings (stored, or measured and stored); needs the draft. */
  acceptance(sampling: SamplingParams): Promise<number[]>;
  /** Sequoia's tree for an acceptance vector: the profiler's pick on these costs, else a default. */
  chooseSequoia(acceptance: number[]): SequoiaChoice;
  /** Paged: the host cache's budget and what it holds now; undefined when the target is resident. */
  hostCache(): ModeInfo["hostCache"];
  close(): void;
}

/** Without a hardware profile (the CPU reference) Sequoia runs this tree. */
const DEFAULT_TREE = { n: 8, depth: 3 };

/**
 * No hardware profile on the CPU reference: rank by G(n, d) under t(n) proportional to n, which orders trees by
 * the planner alone (the sweep's depths need a ranking even there).
 */
const PROPORTIONAL_COSTS = (() => {
  const sizes = [1, 2, 4, 8, 16, 32, 64];
  return { sizes, target: sizes, draft: sizes.map((n) => n / 8), sync: 0, arTokensPerSubmission: 1 };
})();

/**
 * Load the pair through the shared {@link Runtime} (the same startup path as serve, generate and
 * profile) with the target's weights held as `mode` says ("paged": under {@link pagedBudget}, streamed
 * layers cached in up to `hostMemoryBudget` bytes of host RAM: 0 reads them from disk at every forward,
 * undefined takes the loader's default), then its hardware profile when both run on gpu or wasm and there
 * is a draft. Progress goes to `log`.
 */
export async function loadPair(
  folders: PairFolders,
  o: {
    mode: Mode;
    backend: Backend;
    threads?: number;
    weightsDtype?: WeightsDtype;
    maxBatch: number;
    hostMemoryBudget?: number;
    log?: (line: string) => void;
  },
): Promise<BenchPair> {
  let gpuMemoryBudget: number | undefined, targetWeightBytes: number | undefined;
  if (o.mode === "paged") {
    ({ budget: gpuMemoryBudget, weightBytes: targetWeightBytes } = pagedBudget(
      folders.targetFolder,
      o.weightsDtype,
    ));
  }
  const rt = await Runtime.open({
    model: folders.targetFolder.path,
    draft: folders.draftFolder?.path,
    backend: o.backend,
    threads: o.threads,
    weightsDtype: o.weightsDtype,
    maxBatch: o.maxBatch,
    paging: o.mode === "paged" ? { gpuMemoryBudget, hostMemoryBudget: o.hostMemoryBudget } : {},
    log: o.log,
  });
  let costs: HardwareCosts | undefined;
  try {
    if (profiledBackend(o.backend) && rt.draft) costs = (await rt.hardwareCosts()).costs;
  } catch (e) {
    rt.close();
    throw e;
  }
  const target = rt.target;
  const p = pagedModel(target.model)?.paging;
  return {
    target: target.model,
    draft: rt.draft?.model,
    device: target.device,
    info: {
      mode: o.mode,
      device: target.device,
      backend: o.backend,
      gpuMemoryBudget,
      targetWeightBytes,
      plan: p &&
        {
          residentLayers: p.residentLayers,
          ringSlots: p.ringSlots,
          layerBytes: p.layerBytes,
          bytesPerForward: p.bytesPerForward,
        },
    },
    costs,
    acceptance: async (sampling) => (await rt.acceptance(sampling)).acceptance,
    chooseSequoia: (acceptance) => {
      if (!costs) {
        return { pick: DEFAULT_TREE, ranked: pickSequoiaTree(acceptance, PROPORTIONAL_COSTS).ranked };
      }
      const { pick, ranked } = pickSequoiaTree(acceptance, costs);
      return {
        pick: { n: pick.n, depth: pick.depth },
        ranked,
        predicted: { tokPerS: pick.tokPerS, speedup: pick.speedup },
      };
    },
    hostCache: () => {
      const st = pagedModel(target.model)?.pagingStats();
      return st && {
        budget: o.hostMemoryBudget,
        cachedLayers: st.hostCachedLayers,
        cachedBytes: st.hostCachedBytes,
        streamedLayers: folders.targetFolder.config.nLayers - st.plan.residentLayers,
      };
    },
    close: () => rt.close(),
  };
}

/** One model alone on `backend` (the AR benchmark runs each model by itself). */
export function loadAlone(folder: ModelFolder, backend: Backend, threads?: number): Promise<LoadedModel> {
  return loadModel(folder, backend, { threads });
}

/** The target alone on the GPU, resident, for the kernel benchmark's forward timings. */
export async function loadGpuTarget(
  targetDir = DEFAULT_TARGET_DIR,
  weightsDtype?: WeightsDtype,
): Promise<{ model: GpuLlama; folder: Checkpoint; close(): void }> {
  const folder = await openCheckpoint(targetDir);
  const model = await GpuLlama.load(await sharedGpu(), folder, { weightsDtype });
  return {
    model,
    folder,
    close: () => {
      model.dispose();
      folder.checkpoint.close();
    },
  };
}
