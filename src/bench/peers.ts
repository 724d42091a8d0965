/**
 * `deno task bench --peers`: autoregressive decoding of a real model (default: SmolLM2-135M-Instruct,
 * `deno task models`) by this engine and by llama.cpp on the same GGUF, the same prompt ids and the same
 * token count, in one run: this engine on the GPU (8 and 1 tokens per submission), on the wasm backend
 * and llama.cpp's CPU backend at the same thread counts (1 and 2 by default), the CPU reference and,
 * with `vulkan`, llama.cpp's Vulkan backend. Beside each row: the bytes of weights it reads per token
 * and what that is in GB/s, next to the adapter's streaming-read bandwidth measured in the same run.
 *
 * The prompt: the prompt file's first ids (SmolLM2's golden.json) when they fit the model's vocabulary,
 * else the first prompt of bench/prompts.json in the model's own tokenizer (the tiny model), written to
 * a temporary golden-shaped file for llama.cpp.
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
import { loadWasmModel } from "../wasm/load.ts";
import { defaultThreads } from "../wasm/runtime.ts";

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
  /** Thread counts of the wasm and llama.cpp CPU rows (default 1 and 2, at most the machine's cores). */
  threads?: number[];
  /** Leave out the GPU and CPU-reference rows (the CPU-side comparison only). */
  cpuOnly?: boolean;
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
  const folder = await openModelFolder(o.model);
  const golden = JSON.parse(await Deno.readTextFile(o.prompts));
  let prompt: number[] = golden.prompts[0].ids;
  let promptName: string = golden.prompts[0].name;
  let promptFile = o.prompts;
  if (prompt.some((id) => id >= folder.config.vocabSize)) {
    const text: string = JSON.parse(await Deno.readTextFile("bench/prompts.json")).prompts[0];
    prompt = folder.tokenizer.encode(text);
    promptName = JSON.stringify(text);
    promptFile = await Deno.makeTempFile({ suffix: ".json" });
    await Deno.writeTextFile(promptFile, JSON.stringify({ prompts: [{ name: promptName, ids: prompt }] }));
  }
  const threads = (o.threads ?? [1, 2]).filter((t) => t <= Math.max(1, defaultThreads()));
  const rows: PeerRow[] = [];
  const gpu = o.cpuOnly ? undefined : await sharedGpu();
  let streamGbps = NaN;
  if (gpu) {
    const ctx = { rec: new Recorder(gpu, new UniformArena(gpu)), pipelines: new PipelineCache(gpu) };
    const streamMs = await streamingReadMs(gpu, ctx, 64 << 20, (await syncCost(gpu)).submitMs);
    streamGbps = (64 << 20) / (streamMs / 1000) / 1e9;
  }
  // AR decode of `model` (timed runs after a warm-up; tok/s median).
  const decode = async (
    model: Parameters<typeof generateAutoregressive>[0],
    per: number,
    runs: number,
    tokens: number,
  ) => {
    const perRun: GenerationStats[] = [];
    for (let r = 0; r <= runs; r++) { // run 0 is the warm-up
      const gen = generateAutoregressive(model, prompt, {
        maxTokens: tokens,
        sampling: GREEDY,
        seed: 0,
        tokensPerSubmission: per,
      });
      for await (const ev of gen) if (ev.type === "done" && r > 0) perRun.push(ev.stats);
    }
    return median(perRun.map((s) => s.tokPerS));
  };
  for (const t of threads) {
    const model = await loadWasmModel(folder, { threads: t, capacity: prompt.length + o.tokens + 8 });
    try {
      const tokPerS = await decode(model, 1, o.runs, o.tokens);
      rows.push({
        engine: `specdec wasm (${t} thread${t === 1 ? "" : "s"})`,
        tokPerS,
        bytesPerToken: model.w.bytes,
        gbps: (model.w.bytes * tokPerS) / 1e9,
        note: `matrices ${[
          ...new Set(model.w.layers.flatMap((l) => Object.values(l.matrices).map((m) => m.type))),
        ]}, head ${model.w.lmHead.type}`,
      });
    } finally {
      model.dispose();
    }
  }
  const configs: { backend: Backend; per: number }[] = gpu
    ? [
      { backend: "gpu", per: 8 },
      { backend: "gpu", per: 1 },
      { backend: "cpu", per: 1 },
    ]
    : [];
  for (const cfg of configs) {
    const loaded = await loadAlone(folder, cfg.backend);
    // The CPU reference is slow (a few tok/s): one timed run of a quarter of the tokens.
    const runs = cfg.backend === "cpu" ? 1 : o.runs;
    const tokens = cfg.backend === "cpu" ? Math.max(4, o.tokens >> 2) : o.tokens;
    const tokPerS = await decode(loaded.model, cfg.per, runs, tokens);
    loaded.close();
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
  const peers: LlamaCppResult[] = [];
  for (const t of threads) {
    peers.push(
      await benchLlamaCpp({
        backend: "cpu",
        threads: t,
        tokens: o.tokens,
        runs: o.runs,
        model: o.model,
        prompts: promptFile,
      }),
    );
  }
  if (o.vulkan) {
    peers.push(
      await benchLlamaCpp({
        backend: "vulkan",
        threads: 2,
        tokens: 32,
        runs: 2,
        model: o.model,
        prompts: promptFile,
      }),
    );
  }
  for (const p of peers) {
    rows.push(
      isLlamaCppRow(p)
        ? {
          engine: `llama.cpp ${p.backend} (${p.threads} thread${p.threads === 1 ? "" : "s"})`,
          tokPerS: p.tokPerS,
          bytesPerToken: fileBytes,
          gbps: (fileBytes * p.tokPerS) / 1e9,
          note: p.version,
        }
        : {
          engine: `llama.cpp ${p.backend} (${p.threads} thread${p.threads === 1 ? "" : "s"})`,
          note: p.unavailable,
        },
    );
  }
  console.log(
    `Deno ${Deno.version.deno}; ${gpu ? gpu.adapter.description || gpu.adapter.vendor : "no GPU rows"}; ` +
      `model ${o.model}; prompt ${promptName} (${prompt.length} ids), ${o.tokens} greedy tokens, median of ` +
      `${o.runs} run(s)${gpu ? `; streaming read ${streamGbps.toFixed(2)} GB/s` : ""}\n`,
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
