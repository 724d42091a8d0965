/**
 * What every stage of the GPU check (gpu_check.ts) is given, and the timing helpers they share.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import type * as ops from "../gpu/ops.ts";
import { PipelineCache } from "../gpu/pipelines.ts";
import { Recorder, UniformArena } from "../gpu/recorder.ts";
import { sharedGpu } from "../runtime/backend.ts";
import { timeOps } from "./kernels.ts";

/** What a stage is given: its mode, a scratch folder, and where its figures go. */
export interface StageContext {
  /** Tiny sizes everywhere (seconds on llvmpipe): a smoke run of every code path. */
  quick: boolean;
  /** Scratch folder for generated models: never under the output folder (that comes back from the device). */
  workDir: string;
  /** Record one figure (any JSON value); the stage file is rewritten at once. */
  put(key: string, value: unknown): Promise<void>;
  /** A progress line (stdout, prefixed with the stage name). */
  log(line: string): void;
  /** The data of the stages that ran before this one (e.g. stream's GB/s for the model stages). */
  previous: Record<string, Record<string, unknown> | undefined>;
  /** Write a GGUF of a safetensors folder (scripts/convert_gguf.ts, injected by the CLI: scripts/ sits above src/). */
  toGguf?: (folder: string, out: string, type: "Q8_0") => Promise<void>;
}

/** A fresh op context on the shared device. */
export async function opContext(): Promise<{ gpu: Gpu; ctx: ops.OpContext }> {
  const gpu = await sharedGpu();
  return { gpu, ctx: { rec: new Recorder(gpu, new UniformArena(gpu)), pipelines: new PipelineCache(gpu) } };
}

/**
 * Median ms of one repetition of `record` (timeOps of kernels.ts) after one unmeasured run, so the
 * pipeline's compilation does not size the repetitions; up to `maxReps` repetitions per sample.
 */
export async function timeRecorded(
  gpu: Gpu,
  ctx: ops.OpContext,
  record: () => Promise<void>,
  submitMs: number,
  maxReps = 400,
): Promise<number> {
  await record();
  await ctx.rec.submit("compile");
  await gpu.device.queue.onSubmittedWorkDone();
  return await timeOps(gpu, ctx, record, submitMs, undefined, maxReps);
}
