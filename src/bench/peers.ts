/**
 * `deno task bench --peers`: autoregressive decoding of a real model (default: SmolLM2-135M-Instruct,
 * `deno task models`) by this engine and by llama.cpp on the same GGUF, the same prompt ids and the same
 * token count, in one run: this engine on the GPU (8 and 1 tokens per submission) and the CPU reference,
 * llama.cpp's CPU backend (2 threads) and, with `vulkan`, its Vulkan backend. Beside each row: the bytes
 * of weights it reads per token and what that is in GB/s, next to the adapter's streaming-read bandwidth
 * measured in the same run.
 *
 * @module
 */

import { generateAutoregressive } from "../decoding/autoregressive.ts";
import type { GenerationStats } from "../decoding/stats.ts";
import { openModelFolder } from "../model/folder.ts";
import { GgufFile } from "../model/gguf.ts";
import { GREEDY } from "../model/sampling.ts";
import { type Backend, sharedGpu } from "../runtime/backend.ts";
import { syncCost } from "../runtime/hardware_profile.ts";
import { PipelineCache } from "../gpu/pipelines.ts";
import { Recorder, UniformArena } from "../gpu/recorder.ts";
import { formatBytes } from "../util/bytes.ts";
import { median } from "../util/stats.ts";
import { streamingReadMs } from "./kernels.ts";
import { benchLlamaCpp, isLlamaCppRow, type LlamaCppResult } from "./llama_cpp.ts";
import { loadAlone } from "./pair.ts";

/**
 * The default model (fetched by `deno task models`) and prompt set (the transformers reference prompts),
 * relative to the working directory: both belong to a checkout, not to the compiled binary.
 */
export const PEER_DEFAULTS = {
  model: "weights/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
  prompts: "tests/fixtures/smollm2/golden.json",
} as const;

/** Options of {@link benchPeers}. */
export interface PeerBenchOptions {
  /** The GGUF both engines load. */
  model: string;
  /** A golden.json-shaped file: its first prompt's ids are the prompt (llama.cpp's row uses the same). */
  prompts: string;
  /** Tokens decoded per timed run (prefill excluded). */
  tokens: number;
  /** Timed runs after one warm-up; tok/s is their median. */
  runs: number;
  /** Also run llama.cpp's Vulkan backend (slow on lavapipe: ~1.5 min). */
  vulkan: boolean;
  /** Where the JSON goes (none when undefined). */
  jsonPath?: string;
}

/** One row of the comparison. */
export interface PeerRow {
  engine: string;
  tokPerS?: number;
  /** Weight bytes one decoded token reads. */
  bytesPerToken?: number;
  /** bytesPerToken x tok/s. */
  gbps?: number;
  /** Whether the row reads through the WebGPU adapter (its streaming read is the yardstick only then). */
  onAdapter?: boolean;
  note?: string;
}

/** Bytes of every weight tensor as the GGUF file stores them (what llama.cpp reads per token). */
async function fileWeightBytes(path: string): Promise<number> {
  const f = await GgufFile.open(path);
  try {
    return [...f.tensors.values()].reduce((a, t) => a + t.byteLength, 0);
  } finally {
    f.close();
  }
}

/** Run the comparison; prints Markdown and returns the rows. */
export async function benchPeers(o: PeerBenchOptions): Promise<PeerRow[]> {
  const golden = JSON.parse(await Deno.readTextFile(o.prompts));
  const prompt: number[] = golden.prompts[0].ids;
  const folder = await openModelFolder(o.model);
  const rows: PeerRow[] = [];
  const gpu = await sharedGpu();
  const ctx = { rec: new Recorder(gpu, new UniformArena(gpu)), pipelines: new PipelineCache(gpu) };
  const streamMs = await streamingReadMs(gpu, ctx, 64 << 20, (await syncCost(gpu)).submitMs);
  const streamGbps = (64 << 20) / (streamMs / 1000) / 1e9;
  const configs: { backend: Backend; per: number }[] = [
    { backend: "gpu", per: 8 },
    { backend: "gpu", per: 1 },
    { backend: "cpu", per: 1 },
  ];
  for (const cfg of configs) {
    const loaded = await loadAlone(folder, cfg.backend);
    const perRun: GenerationStats[] = [];
    // The CPU reference is slow (a few tok/s): one timed run of a quarter of the tokens.
    const runs = cfg.backend === "cpu" ? 1 : o.runs;
    const tokens = cfg.backend === "cpu" ? Math.max(4, o.tokens >> 2) : o.tokens;
    for (let r = 0; r <= runs; r++) { // run 0 is the warm-up
      const gen = generateAutoregressive(loaded.model, prompt, {
        maxTokens: tokens,
        sampling: GREEDY,
        seed: 0,
        tokensPerSubmission: cfg.per,
      });
      for await (const ev of gen) if (ev.type === "done" && r > 0) perRun.push(ev.stats);
    }
    loaded.close();
    const tokPerS = median(perRun.map((s) => s.tokPerS));
    const bytesPerToken = loaded.weightBytes;
    rows.push({
      engine: `specdec ${cfg.backend === "gpu" ? `WebGPU, ${cfg.per}/submission` : "CPU reference"}`,
      tokPerS,
      bytesPerToken,
      gbps: (bytesPerToken * tokPerS) / 1e9,
      onAdapter: cfg.backend === "gpu",
    });
  }
  folder.checkpoint.close();
  const fileBytes = await fileWeightBytes(o.model);
  const peers: LlamaCppResult[] = [
    await benchLlamaCpp({
      backend: "cpu",
      threads: 2,
      tokens: o.tokens,
      runs: o.runs,
      model: o.model,
      prompts: o.prompts,
    }),
  ];
  if (o.vulkan) {
    peers.push(
      await benchLlamaCpp({
        backend: "vulkan",
        threads: 2,
        tokens: 32,
        runs: 2,
        model: o.model,
        prompts: o.prompts,
      }),
    );
  }
  for (const p of peers) {
    rows.push(
      isLlamaCppRow(p)
        ? {
          engine: `llama.cpp ${p.backend} (${p.threads} threads)`,
          tokPerS: p.tokPerS,
          bytesPerToken: fileBytes,
          gbps: (fileBytes * p.tokPerS) / 1e9,
          note: p.version,
        }
        : { engine: `llama.cpp ${p.backend} (${p.threads} threads)`, note: p.unavailable },
    );
  }
  console.log(
    `Deno ${Deno.version.deno}; ${gpu.adapter.description || gpu.adapter.vendor}; model ${o.model}; ` +
      `prompt "${
        golden.prompts[0].name
      }" (${prompt.length} ids), ${o.tokens} greedy tokens, median of ${o.runs} run(s); ` +
      `streaming read ${streamGbps.toFixed(2)} GB/s\n`,
  );
  console.log("| engine | tok/s | weights read per token | GB/s of weights | % of streaming read | note |");
  console.log("|---|---:|---:|---:|---:|---|");
  for (const r of rows) {
    const cells = r.tokPerS === undefined ? ["", "", "", ""] : [
      r.tokPerS.toFixed(1),
      formatBytes(r.bytesPerToken!),
      r.gbps!.toFixed(2),
      // Host-side rows read RAM directly: the adapter's streaming read is no yardstick for them.
      r.onAdapter ? `${(100 * r.gbps! / streamGbps).toFixed(0)}%` : "-",
    ];
    console.log(`| ${r.engine} | ${cells.join(" | ")} | ${r.note ?? ""} |`);
  }
  if (o.jsonPath) {
    await Deno.writeTextFile(
      o.jsonPath,
      JSON.stringify(
        { deno: Deno.version.deno, model: o.model, streamGbps, tokens: o.tokens, rows },
        null,
        2,
      ),
    );
  }
  return rows;
}
