/**
 * Paging at a real size: a 1B-shaped random target (scripts/make_random_model.ts) decoded under a GPU
 * memory budget, with the upload bandwidth the ring reached next to this machine's plain copy bandwidth
 * (a host memcpy, and writeBuffer into a GPU buffer). {@link benchPagedAtSize} ends a full paged
side-by-side run with it (`deno task bench`, unless --quick, --resident-only or --skip-1b).
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import { GpuLlama } from "../gpu/llama/model.ts";
import { minPagedBudget } from "../gpu/paging/plan.ts";
import { type PagingReport, pagingReport } from "../gpu/paging/report.ts";
import { formatBytes } from "../util/bytes.ts";
import { openCheckpoint } from "../model/folder.ts";
import { llamaConfig, makeRandomModel, PRESETS } from "../model/random_model.ts";
import { median } from "../util/stats.ts";
import { sharedGpu } from "../runtime/backend.ts";

/** What {@link probePagedModel} measured. */
export interface OffloadProbe {
  model: string;
  preset: string;
  modelBytes: number;
  budget: number;
  hostBudget: number;
  tokens: number;
  tokPerS: number;
  msPerToken: number;
  paging: PagingReport;
  /** Host memcpy GB/s (256 MB Uint8Array.set, median of 3). */
  memcpyGBps: number;
  /** queue.writeBuffer into one GPU buffer, GB/s (median of 3, includes the submit that applies it). */
  writeBufferGBps: number;
  /** Resident set size at the end, bytes (on a software adapter it includes the "GPU" buffers). */
  rssBytes: number;
}

/** Host memcpy and writeBuffer bandwidth on this machine (GB/s). */
export async function copyBandwidth(
  gpu: Gpu,
  bytes = 256 * 1024 * 1024,
): Promise<{ memcpy: number; write: number }> {
  const src = new Uint8Array(bytes).fill(7), dst = new Uint8Array(bytes);
  const memcpy: number[] = [], write: number[] = [];
  const buf = gpu.createBuffer("copy bandwidth probe", Math.min(bytes, gpu.limits.maxBufferSize));
  const n = Math.min(bytes, buf.size);
  for (let r = 0; r < 3; r++) {
    let t = performance.now();
    dst.set(src);
    memcpy.push(bytes / (performance.now() - t) / 1e6);
    await gpu.device.queue.onSubmittedWorkDone();
    t = performance.now();
    gpu.device.queue.writeBuffer(buf, 0, src, 0, n);
    gpu.device.queue.submit([]);
    await gpu.device.queue.onSubmittedWorkDone();
    write.push(n / (performance.now() - t) / 1e6);
  }
  buf.destroy();
  return { memcpy: median(memcpy), write: median(write) };
}

/**
 * Make (once, into `dir`) a random model of `preset` and decode `tokens` tokens greedily with its
 * target paged under `budget` bytes, raised to the least budget that pages this shape when it is
 * below (host cache `hostBudget`). Token ids only: no tokenizer involved.
 */
export async function probePagedModel(
  gpu: Gpu,
  o: {
    dir: string;
    preset: string;
    budget: number;
    hostBudget: number;
    tokens: number;
    log?: (l: string) => void;
  },
): Promise<OffloadProbe> {
  let exists = false;
  try {
    exists = (await Deno.stat(`${o.dir}/config.json`)).isFile;
  } catch {
    // not made yet
  }
  if (!exists) {
    o.log?.(`making a ${o.preset}-shaped random model in ${o.dir} (once) ...`);
    await makeRandomModel(o.dir, llamaConfig(PRESETS[o.preset]), { dtype: "F16", seed: 1, shardBytes: 2e9 });
  }
  const ckpt = await openCheckpoint(o.dir);
  const modelBytes = ckpt.checkpoint.names().reduce((a, n) => a + ckpt.checkpoint.get(n)!.byteLength, 0);
  const floor = minPagedBudget(ckpt.checkpoint, ckpt.config);
  const budget = Math.max(o.budget, floor);
  if (budget > o.budget) {
    o.log?.(
      `  a ${formatBytes(o.budget)} budget cannot page the ${o.preset} shape (its embeddings, LM head and ` +
        `two layer slots need ${floor} bytes): using ${floor} bytes`,
    );
  }
  const m = await GpuLlama.load(gpu, ckpt, {
    gpuMemoryBudget: budget,
    hostMemoryBudget: o.hostBudget,
    maxBatch: 16,
    capacity: 256,
  });
  try {
    if (!m.paging) throw new RangeError(`${o.dir}: a budget of ${budget} bytes holds the whole model`);
    const prompt = Int32Array.from({ length: 8 }, (_, i) => 10 + i);
    let last = (await m.forwardIds(
      { tokens: prompt, positions: Int32Array.from(prompt, (_, i) => i), logitRows: [7] },
      { kind: "argmax" },
    ))[0];
    await m.pagingIdle();
    const before = m.pagingStats()!;
    const t0 = performance.now();
    for (let i = 0; i < o.tokens; i++) {
      // One token per submission: a paged forward streams every layer anyway.
      last = (await m.decodeSteps(last, 1, { kind: "argmax" }))[0];
    }
    const ms = performance.now() - t0;
    await m.pagingIdle();
    const paging = pagingReport(before, m.pagingStats()!, ms);
    const bw = await copyBandwidth(gpu);
    return {
      model: o.dir,
      preset: o.preset,
      modelBytes,
      budget,
      hostBudget: o.hostBudget,
      tokens: o.tokens,
      tokPerS: o.tokens / (ms / 1000),
      msPerToken: ms / o.tokens,
      paging,
      memcpyGBps: bw.memcpy,
      writeBufferGBps: bw.write,
      rssBytes: Deno.memoryUsage().rss,
    };
  } finally {
    m.dispose();
    ckpt.checkpoint.close();
  }
}

/**
 * Paging at a real size: a 1B-shaped random target (made once under `outDir`) under a 256 MB budget
 * (or the least that pages), streamed from disk and from the host cache; upload GB/s beside this
 * machine's memcpy and writeBuffer bandwidth. Printed as a table and written to offload_1b.json.
 */
export async function benchPagedAtSize(outDir: string): Promise<OffloadProbe[]> {
  const gpu = await sharedGpu();
  const dir = `${outDir}/random-1b`;
  const log = (l: string) => console.error(l);
  const rows: OffloadProbe[] = [];
  for (const hostBudget of [0, 4e9]) {
    rows.push(await probePagedModel(gpu, { dir, preset: "1b", budget: 256e6, hostBudget, tokens: 4, log }));
  }
  console.log(
    `\n### Paging at size: 1B-shaped random target (${formatBytes(rows[0].modelBytes)} of F16 weights)\n`,
  );
  console.log(
    "| host cache | GPU budget | ring | tok/s | ms/token | upload GB/s | overlap | stall ms/token | RSS |",
  );
  console.log("|---|---:|---|---:|---:|---:|---:|---:|---:|");
  for (const r of rows) {
    const p = r.paging;
    console.log(
      `| ${r.hostBudget ? "RAM" : "none (disk)"} | ${
        formatBytes(r.budget)
      } | ${p.resident_layers} resident + ${p.ring_slots} x ${formatBytes(p.layer_bytes)} | ${
        r.tokPerS.toFixed(2)
      } | ${r.msPerToken.toFixed(0)} | ${p.upload_gb_per_s.toFixed(2)} | ${(p.overlap * 100).toFixed(0)}% | ${
        (p.stall_ms / r.tokens).toFixed(0)
      } | ${formatBytes(r.rssBytes)} |`,
    );
  }
  console.log(
    `\nPlain copy bandwidth on this machine: memcpy ${rows[0].memcpyGBps.toFixed(2)} GB/s, ` +
      `writeBuffer into a GPU buffer ${rows[0].writeBufferGBps.toFixed(2)} GB/s (256 MB, incl. its submit).`,
  );
  await Deno.mkdir(outDir, { recursive: true });
  await Deno.writeTextFile(`${outDir}/offload_1b.json`, JSON.stringify(rows, null, 2) + "\n");
  return rows;
}
