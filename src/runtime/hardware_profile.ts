/**
 * Measuring what the tree choice needs on the running backend — t_target(n), t_draft(n) and the sync
 * cost — and caching it beside the draft model (or in `$SPECDEC_CACHE_DIR`, see cache_dir.ts), keyed by
 * backend, adapter (the wasm backend's: this CPU and its thread count), Deno version and both models, so
 * a restart reuses it and a gpu profile is never used for wasm or the other way round.
 *
 * The same profile.json also holds `backends`, the `--backend auto` decisions (backend_choice.ts); each
 * writer keeps the other's section.
 *
 * @module
 */

import type { AdapterDescription, Gpu } from "../gpu/device.ts";
import { GpuLlama } from "../gpu/llama/model.ts";
import type { CausalLM, ForwardInput } from "../model/causal_lm.ts";
import { isDeviceSampler, type Paged } from "../model/capabilities.ts";
import { loadWasmModel } from "../wasm/load.ts";
import { kernelId } from "../wasm/runtime.ts";
import type { Backend } from "./backend.ts";
import { SAMPLING_DEFAULTS, type SamplingParams } from "../model/sampling.ts";
import { acceptanceTexts } from "./acceptance.ts";
import { decode } from "../speculative/decode.ts";
import type { ModelFolder } from "../model/folder.ts";
import { modelId } from "./acceptance_store.ts";
import { costAt, type MeasuredCosts } from "../speculative/tree_choice.ts";
import { median } from "../util/stats.ts";
import { cacheFiles, InvalidCacheFile, readCacheJson, writeAtomic } from "./cache_dir.ts";
import type { MatmulChoice } from "../gpu/matmul_tiled.ts";
import { isCurrentChoice, measureMatmulChoice } from "../gpu/matmul_choice.ts";
import { weightsDtypeOf } from "../model/capabilities.ts";
import { weightsSuffix } from "../model/weight_types.ts";

/** What a cached profile is valid for. */
export interface ProfileKey {
  /** Absent in files from before the wasm backend: "gpu". */
  backend?: Backend;
  /** vendor|architecture|device|description of the adapter (wasm: of this CPU). */
  adapter: string;
  /** wasm: threads per forward. */
  threads?: number;
  deno: string;
  target: string;
  draft: string;
  /** How the target's weights are held: "resident", or "paged r<resident layers> s<ring slots>". */
  paging?: string;
}

/** The name of this machine's CPU (Linux: /proc/cpuinfo's model name), else its architecture. */
export function cpuName(): string {
  try {
    const m = Deno.readTextFileSync("/proc/cpuinfo").match(/^model name\s*:\s*(.+)$/m);
    if (m) return m[1].trim();
  } catch {
    // not Linux, or no read permission
  }
  return Deno.build.arch;
}

/**
 * The wasm backend's "adapter" for the profile: this CPU (its name and cores) and the threads a forward
 * runs on, and the kernels' build. Profiles measured at another thread count or with other kernels are
 * not reused.
 */
export class WasmHost {
  /** The discriminant of {@link ProfileDevice}. */
  readonly kind = "wasm";
  readonly adapter: AdapterDescription;

  constructor(readonly threads: number, cpu = cpuName()) {
    this.adapter = {
      vendor: "wasm",
      architecture: Deno.build.arch,
      // The kernels' hash: a rebuilt llama.wasm is measured again.
      device: `${navigator.hardwareConcurrency || 1} cores, kernels ${kernelId()}`,
      description: `wasm SIMD128 on ${cpu}, ${threads} thread${threads === 1 ? "" : "s"}`,
      isFallbackAdapter: false,
    };
  }
}

/** Where a profile is measured: the WebGPU device, or the wasm backend on this CPU. */
export type ProfileDevice = Gpu | WasmHost;

/** True when `device` is the wasm backend's host (else a WebGPU device). */
export function isWasmHost(device: ProfileDevice): device is WasmHost {
  // `in` first: a WebGPU device has no `kind` (and the tests' stand-ins expose only `adapter`).
  return "kind" in device && (device as WasmHost).kind === "wasm";
}

/** The backend a profile device measures. */
export function profileBackend(device: ProfileDevice): "gpu" | "wasm" {
  return isWasmHost(device) ? "wasm" : "gpu";
}

/** SpecExec at one budget, measured briefly. */
export interface BudgetRow {
  budget: number;
  tokPerS: number;
  tokensPerStep: number;
}

/** Measured costs plus SpecExec's measured budgets. */
export interface HardwareCosts extends MeasuredCosts {
  specexec?: BudgetRow[];
  /**
   * The target's matmul kernel per n bucket (gpu/matmul_choice.ts), measured before t(n) and applied
   * to the target; absent in profiles from before it (those keep the row-walking kernel their t(n) was
   * measured with), on the wasm backend and for paged targets.
   */
  matmul?: MatmulChoice;
}

interface ProfileEntry extends HardwareCosts {
  key: ProfileKey;
  measured_at: string;
}

/**
 * SpecExec's tokens per step has no closed form (its tree follows the draft's own probabilities), so
 * its budget is chosen by measurement: a short greedy-or-sampled run per budget on one held-out prompt.
 */
export async function measureSpecExecBudgets(
  device: ProfileDevice,
  pair: { targetFolder: ModelFolder; draftFolder: ModelFolder; draft: CausalLM; target?: CausalLM },
  sampling: SamplingParams,
  log?: (l: string) => void,
  // A paged target's forward costs about the same for any n (it is bound by streaming the weights), so
  // its useful budgets are larger.
  budgets = pagingOf(pair.target) ? [64, 128, 256] : [32, 64, 128],
): Promise<BudgetRow[]> {
  // The draft's own held-out prompts when it ships them (the pair's acceptance is measured there too).
  const [prompt] = await acceptanceTexts(
    pair.targetFolder,
    1,
    12,
    log && ((l) => log(`  ${l}`)),
    pair.draftFolder.dir,
  );
  const rows: BudgetRow[] = [];
  for (let budget of budgets) {
    // The loaded target serves when its batch holds the tree (the wasm backend's always does); a paged
    // one always does (a second paged copy would double the GPU and host budgets), its budget capped at
    // what one forward can verify.
    const maxBatch = pair.target?.maxBatch;
    const reuse = pair.target && (maxBatch === undefined || maxBatch > budget || pagingOf(pair.target));
    if (reuse && maxBatch !== undefined) budget = Math.min(budget, maxBatch - 1);
    const t = reuse
      ? pair.target!
      : isWasmHost(device)
      ? await loadWasmModel(pair.targetFolder, { threads: device.threads })
      : await GpuLlama.load(device, pair.targetFolder, {
        ...(pair.target instanceof GpuLlama ? pair.target.options : {}),
        maxBatch: Math.max(256, budget + 1),
      });
    if (!reuse && t instanceof GpuLlama && pair.target instanceof GpuLlama) {
      t.useMatmulChoice(pair.target.matmulChoice); // the kernels the profile measured
    }
    let st: { tokPerS: number; tokensPerStep: number } | undefined;
    const events = decode("specexec", t, pair.draft, prompt, {
      tree: { budget },
      maxTokens: 16,
      sampling,
      seed: 1,
      eosIds: [],
    });
    try {
      for await (const ev of events) if (ev.type === "done") st = ev.stats;
    } finally {
      if (!reuse) t.dispose();
    }
    rows.push({ budget, tokPerS: st!.tokPerS, tokensPerStep: st!.tokensPerStep });
    log?.(
      `  specexec K=${budget}: ${st!.tokPerS.toFixed(1)} tok/s, ${st!.tokensPerStep.toFixed(2)} tokens/step`,
    );
  }
  return rows;
}

/** The acceptance vector of the host-time probe (any plausible one: the time depends on the tree's size). */
const HOST_PROBE_ACCEPTANCE = [0.6, 0.15, 0.08, 0.05, 0.03, 0.02, 0.01, 0.01];

/**
 * The host time a decode spends beyond its forwards ({@link MeasuredCosts.host}): one short AR run and
 * Sequoia runs at two tree sizes on a held-out prompt, each compared with what its forwards cost by
 * `costs` (the measured t(n)); clamped at 0.
 */

export async function measureHostOverhead(
  pair: { targetFolder: ModelFolder; target: CausalLM; draft: CausalLM },
  costs: MeasuredCosts,
  log?: (l: string) => void,
): Promise<NonNullable<MeasuredCosts["host"]>> {
  const [prompt] = await acceptanceTexts(pair.targetFolder, 1, 12, log && ((l) => log(`  ${l}`)));
  // The forwards' cost as the prediction computes it (rankTrees), so host time is what it leaves out.
  const at = (ms: number[], n: number) => costAt(costs.sizes, ms, n);
  const run = async (method: "ar" | "sequoia", tree?: { treeSize: number; depth: number }) => {
    let st: { tokPerS: number; tokensPerStep: number } | undefined;
    // A short warm-up first: the first run of a method's code compiles it (JIT), which is no step cost.
    for (const maxTokens of [8, 32]) {
      const events = decode(method, pair.target, method === "ar" ? undefined : pair.draft, prompt, {
        tree: tree ?? {},
        acceptance: HOST_PROBE_ACCEPTANCE,
        maxTokens,
        sampling: SAMPLING_DEFAULTS.profile,
        seed: 1,
        eosIds: [],
      });
      for await (const ev of events) if (ev.type === "done") st = ev.stats;
    }
    // Milliseconds per step (an AR step is one token).
    return (1000 * st!.tokensPerStep) / st!.tokPerS;
  };
  const sync = costs.sync / costs.arTokensPerSubmission;
  const ar = Math.max(0, (await run("ar")) - at(costs.target, 1) - sync);
  const steps: [number, number][] = [];
  for (const [n, d] of [[4, 2], [16, 3]]) {
    const forwards = at(costs.target, n) + d * at(costs.draft, Math.ceil(n / d)) + costs.sync;
    steps.push([n, Math.max(0, (await run("sequoia", { treeSize: n, depth: d })) - forwards)]);
  }
  const b = Math.max(0, (steps[1][1] - steps[0][1]) / (steps[1][0] - steps[0][0]));
  const a = Math.max(0, steps[0][1] - b * steps[0][0]);
  log?.(`  host time: AR ${ar.toFixed(2)} ms/token, speculative step ${a.toFixed(2)} + ${b.toFixed(3)} n ms`);
  return { ar, step: [a, b] };
}

/** A model's paging plan, read as a plain property (undefined: resident, or a backend that cannot page). */
function pagingOf(m: CausalLM | undefined): Paged["paging"] {
  return (m as Partial<Paged> | undefined)?.paging;
}

/** An adapter's identity in cache keys: vendor|architecture|device|description. */
export function adapterId(a: AdapterDescription): string {
  // Dawn's measurements are its own (other kernels' code, other sync costs); Deno's keys stay as they were.
  const parts = [a.vendor, a.architecture, a.device, a.description];
  return (a.webgpu === "dawn" ? [...parts, "dawn"] : parts).join("|");
}

/** The cache key for this backend and adapter, Deno and model pair. */
export async function profileKey(
  device: ProfileDevice,
  targetFolder: ModelFolder,
  draftFolder: ModelFolder,
  target?: CausalLM,
): Promise<ProfileKey> {
  const p = pagingOf(target);
  const backend = profileBackend(device);
  return {
    backend,
    adapter: adapterId(device.adapter),
    ...(isWasmHost(device) ? { threads: device.threads } : {}),
    deno: Deno.version.deno,
    target: await modelId(targetFolder) + weightsSuffix(weightsDtypeOf(target)),
    draft: await modelId(draftFolder),
    paging: p ? `paged r${p.residentLayers} s${p.ringSlots}` : "resident",
  };
}

const sameKey = (a: ProfileKey, b: ProfileKey) =>
  (a.backend ?? "gpu") === (b.backend ?? "gpu") && a.adapter === b.adapter && a.threads === b.threads &&
  a.deno === b.deno && a.target === b.target && a.draft === b.draft &&
  (a.paging ?? "resident") === (b.paging ?? "resident");

/** One file's entries ([] when it does not exist); throws {@link InvalidCacheFile} naming it. */
async function readEntries(path: string): Promise<ProfileEntry[]> {
  const j = await readCacheJson(path) as { entries?: unknown } | undefined;
  if (j === undefined) return [];
  const entries = j && typeof j === "object" ? j.entries : undefined;
  const valid = (e: Partial<ProfileEntry> | null) =>
    !!e && typeof e === "object" && !!e.key && Array.isArray(e.sizes) && Array.isArray(e.target) &&
    Array.isArray(e.draft) && typeof e.sync === "number";
  if (!Array.isArray(entries) || !entries.every(valid)) {
    throw new InvalidCacheFile(path, "not a valid profile file (entries of sizes, target, draft, sync, key)");
  }
  return entries;
}

/** Median wall time of an empty submission + onSubmittedWorkDone, and of a 4-byte readback. */
export async function syncCost(gpu: Gpu): Promise<{ submitMs: number; readbackMs: number }> {
  const buf = gpu.createBuffer("sync probe", 4);
  const a: number[] = [], b: number[] = [];
  for (let i = 0; i < 12; i++) {
    let t = performance.now();
    gpu.device.queue.submit([gpu.device.createCommandEncoder().finish()]);
    await gpu.device.queue.onSubmittedWorkDone();
    a.push(performance.now() - t);
    t = performance.now();
    await gpu.read(buf, 4);
    b.push(performance.now() - t);
  }
  buf.destroy();
  return { submitMs: median(a.slice(2)), readbackMs: median(b.slice(2)) };
}

/**
 * One forward of `input` as a verification runs it: on a device, every row's argmax picked there (only
 * ids read back); elsewhere, every row's logits.
 */
export async function verifyForward(model: CausalLM, input: ForwardInput): Promise<void> {
  if (isDeviceSampler(model)) await model.forwardIds(input, { kind: "argmax" });
  else await model.forward(input);
}

/** Median compute time (ms) of one forward of n tokens after `past` cached ones, sync excluded. */
export async function forwardMs(
  model: CausalLM,
  n: number,
  past: number,
  sync: number,
  reps: number,
): Promise<number> {
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    model.kv.truncate(0);
    await model.forward({
      tokens: new Int32Array(past).fill(5),
      positions: Int32Array.from({ length: past }, (_, i) => i),
      logitRows: [past - 1],
    });
    const t0 = performance.now();
    await verifyForward(model, {
      tokens: new Int32Array(n).fill(7),
      positions: Int32Array.from({ length: n }, (_, i) => past + i),
    });
    samples.push(Math.max(0.01, performance.now() - t0 - sync));
  }
  model.kv.truncate(0);
  return median(samples);
}

/**
 * Measure t_target(n), t_draft(n) for n = 1, 2, 4, ... maxN and the sync cost (0 on the wasm backend:
 * its forward returns when the logits are in memory, and AR has no submissions to batch).
 */
export async function measureCosts(
  device: ProfileDevice,
  target: CausalLM,
  draft: CausalLM,
  opts: { maxN: number; log?: (l: string) => void },
): Promise<MeasuredCosts> {
  const wasm = isWasmHost(device);
  const sync = wasm ? 0 : (await syncCost(device)).readbackMs;
  const sizes: number[] = [];
  const most = Math.min(opts.maxN, target.maxBatch ?? Infinity, draft.maxBatch ?? Infinity);
  for (let n = 1; n <= most; n *= 2) sizes.push(n);
  const capacity = Math.min(target.kv.capacity, draft.kv.capacity);
  const past = Math.min(64, capacity - sizes[sizes.length - 1] - 1);
  const t: number[] = [], d: number[] = [];
  // Warm-up, unmeasured: the wasm backend's kernels start in V8's baseline compiler and reach optimized
  // code after a few forwards (t(1) of the tiny target 3-5 ms before, 0.9 ms after); the GPU's pipelines
  // compile on first use.
  if (wasm) { for (const m of [target, draft]) await forwardMs(m, 1, past, sync, 8); }
  for (const n of sizes) {
    // n = 1 sets the AR baseline every prediction is compared with: measure it most carefully.
    const reps = n === 1 ? 7 : n <= 16 ? 3 : 2;
    t.push(await forwardMs(target, n, past, sync, reps));
    d.push(await forwardMs(draft, n, past, sync, reps));
    opts.log?.(`  n=${n}: target ${t[t.length - 1].toFixed(1)} ms, draft ${d[d.length - 1].toFixed(1)} ms`);
  }
  return { sizes, target: t, draft: d, sync, arTokensPerSubmission: wasm ? 1 : 8 };
}

/**
 * Measure the matmul kernel choice for a resident GPU target (gpu/matmul_choice.ts, ~3 s at most) and
 * apply it; undefined (nothing changed) on the wasm backend, for other models and for paged targets.
 */
export async function chooseMatmul(
  device: ProfileDevice,
  target: CausalLM,
  log?: (l: string) => void,
): Promise<MatmulChoice | undefined> {
  if (isWasmHost(device) || !(target instanceof GpuLlama)) return undefined;
  const uses = await target.matmulUses();
  if (!uses) return undefined;
  const choice = await measureMatmulChoice(device, uses, { log });
  target.useMatmulChoice(choice);
  return choice;
}

/** Where the hardware profile of a draft is read from and written to (see cache_dir.ts). */
export function profileFiles(draftDir: string, cacheDir?: string | null) {
  return cacheFiles(draftDir, "profile.json", cacheDir);
}

/**
 * The cached costs for `key` (from the cache directory's profile.json, then the draft's), or a fresh
 * measurement, cached in the cache directory when one is in force, else beside the draft. An unusable
 * cache file (e.g. truncated) is named in a warning on `log` before the minutes of re-profiling.
 */
export async function loadOrMeasureCosts(
  device: ProfileDevice,
  pair: { targetFolder: ModelFolder; draftFolder: ModelFolder; target: CausalLM; draft: CausalLM },
  opts: { reprofile?: boolean; maxN?: number; log?: (l: string) => void; cacheDir?: string | null } = {},
): Promise<{ costs: HardwareCosts; cached: boolean; key: ProfileKey }> {
  const key = await profileKey(device, pair.targetFolder, pair.draftFolder, pair.target);
  const files = profileFiles(pair.draftFolder.dir, opts.cacheDir);
  const invalid: InvalidCacheFile[] = [];
  const read = async (path: string) => {
    try {
      return await readEntries(path);
    } catch (e) {
      if (!(e instanceof InvalidCacheFile)) throw e;
      invalid.push(e);
      return [];
    }
  };
  if (!opts.reprofile) {
    for (const path of files.read) {
      const hit = (await read(path)).find((e) => sameKey(e.key, key));
      // A choice measured with other matmul kernels: its t(n) no longer holds either.
      if (hit && hit.matmul !== undefined && !isCurrentChoice(hit.matmul)) {
        opts.log?.(`the matmul kernels changed since ${path} was measured: profiling again`);
        break;
      }
      if (hit) {
        if (hit.matmul && pair.target instanceof GpuLlama) pair.target.useMatmulChoice(hit.matmul);
        return { costs: hit, cached: true, key };
      }
    }
    for (const e of invalid) {
      opts.log?.(
        `warning: ${e.message}; ignoring it: the hardware profile is re-measured (this takes a while)` +
          (e.path === files.write ? " and the file rewritten" : ""),
      );
    }
  }
  opts.log?.(`profiling ${device.adapter.description || device.adapter.vendor} ...`);
  const matmul = await chooseMatmul(device, pair.target, opts.log);
  const measured = await measureCosts(device, pair.target, pair.draft, {
    maxN: opts.maxN ?? (pagingOf(pair.target) ? 256 : 128),
    log: opts.log,
  });
  const costs: HardwareCosts = {
    ...measured,
    ...(matmul ? { matmul } : {}),
    host: await measureHostOverhead(pair, measured, opts.log),
    specexec: await measureSpecExecBudgets(device, pair, SAMPLING_DEFAULTS.profile, opts.log),
  };
  // Keep the other keys' entries of the file written (an unusable one is replaced).
  const kept = (await read(files.write)).filter((e) => !sameKey(e.key, key));
  kept.push({ ...costs, key, measured_at: new Date().toISOString() });
  try {
    await writeProfileSection(files.write, "entries", kept);
  } catch (e) {
    // A read-only model folder (e.g. the weights embedded in the compiled binary) only loses the cache.
    opts.log?.(`profile not cached: cannot write ${files.write}: ${(e as Error).message}`);
  }
  return { costs, cached: false, key };
}

/**
 * Write `items` as one section of the profile file at `path` ("entries": t(n) profiles; "backends": the
 * auto backend decisions; "webgpu": the auto WebGPU implementation decisions), keeping the other sections
 * as the file has them (none when it is unreadable).
 */
export async function writeProfileSection(
  path: string,
  section: "entries" | "backends" | "webgpu",
  items: unknown[],
): Promise<void> {
  let old: { entries?: unknown; backends?: unknown; webgpu?: unknown } = {};
  try {
    const j = await readCacheJson(path);
    if (j && typeof j === "object" && !Array.isArray(j)) old = j;
  } catch (e) {
    if (!(e instanceof InvalidCacheFile)) throw e; // unusable: replaced
  }
  const file: Record<string, unknown> = {
    version: 1,
    entries: Array.isArray(old.entries) ? old.entries : [],
  };
  if (Array.isArray(old.backends)) file.backends = old.backends;
  if (Array.isArray(old.webgpu)) file.webgpu = old.webgpu;
  file[section] = items;
  await writeAtomic(path, JSON.stringify(file, null, 2) + "\n");
}
