/**
 * llama.cpp as a peer row of the bench: AR decode tok/s of the same GGUF through node-llama-cpp's prebuilt
 * binaries (tools/llama_cpp/, installed apart from the project by `bash tools/llama_cpp/install.sh`), run
 * with Node as a child process. Never fails the bench: a missing install, model, prompt file or Node, a crash
 * or a timeout comes back as an `unavailable` row that says why.
 *
 * @module
 */

/** Options of {@link benchLlamaCpp}; every field has a default. */
export interface LlamaCppBenchOptions {
  /** llama.cpp's backend: "cpu" (ggml CPU) or "vulkan" (ggml Vulkan, e.g. on Mesa's lavapipe). */
  backend?: "cpu" | "vulkan";
  /** CPU threads (2). */
  threads?: number;
  /** Decode tokens per timed run, prefill excluded (64). */
  tokens?: number;
  /** Timed runs after one untimed warm-up; tok/s is their median (3). */
  runs?: number;
  /** The GGUF (weights/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf). */
  model?: string;
  /** A golden.json-shaped file; its first prompt's ids are the bench prompt (tests/fixtures/smollm2/golden.json). */
  prompts?: string;
  /** The tool folder (tools/llama_cpp). */
  toolDir?: string;
  /** The Node executable ($NODE or "node"). */
  node?: string;
  /** Kill the run after this long (600 s). */
  timeoutMs?: number;
}

/** A measured row. */
export interface LlamaCppRow {
  backend: "cpu" | "vulkan";
  threads: number;
  tokPerS: number;
  /** Every timed run's tok/s. */
  runsTokPerS: number[];
  decodeTokens: number;
  promptTokens: number;
  /** Median prefill seconds (not in tokPerS). */
  prefillS: number;
  /** "node-llama-cpp 3.22.1, llama.cpp v0.5.0 (prebuilt)". */
  version: string;
  /** Vulkan devices llama.cpp used (empty for the CPU). */
  devices: string[];
}

/** Why there is no row; `unavailable` starts with "unavailable: ". */
export interface LlamaCppUnavailable {
  backend: "cpu" | "vulkan";
  threads: number;
  unavailable: string;
}

export type LlamaCppResult = LlamaCppRow | LlamaCppUnavailable;

/** True when `r` is a measured row. */
export function isLlamaCppRow(r: LlamaCppResult): r is LlamaCppRow {
  return !("unavailable" in r);
}

/**
 * The tool folder, the fetched model and the reference prompts belong to a checkout, not to the compiled
 * binary: they are found from the working directory (the repository root, where `deno task` runs).
 */
const fromRoot = (p: string) => `${Deno.cwd()}/${p}`;

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs tools/llama_cpp/reference.mjs in bench mode (no greedy, no tokenization) and returns its row, or why
 * there is none.
 */
export async function benchLlamaCpp(
  options: LlamaCppBenchOptions = {},
): Promise<LlamaCppResult> {
  const backend = options.backend ?? "cpu";
  const threads = options.threads ?? 2;
  const toolDir = options.toolDir ?? fromRoot("tools/llama_cpp");
  const model = options.model ??
    fromRoot("weights/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
  const prompts = options.prompts ??
    fromRoot("tests/fixtures/smollm2/golden.json");
  const node = options.node ?? Deno.env.get("NODE") ?? "node";
  const no = (why: string): LlamaCppUnavailable => ({
    backend,
    threads,
    unavailable: `unavailable: ${why}`,
  });

  if (!(await exists(`${toolDir}/node_modules/node-llama-cpp/package.json`))) {
    return no(
      `${toolDir} is not installed (run: bash tools/llama_cpp/install.sh)`,
    );
  }
  if (!(await exists(model))) {
    return no(`no model at ${model} (run: deno task models)`);
  }
  if (!(await exists(prompts))) return no(`no prompt file at ${prompts}`);

  const args = [
    `${toolDir}/reference.mjs`,
    "--backends",
    backend,
    "--threads",
    String(threads),
    "--model",
    model,
    "--prompts",
    prompts,
    "--greedy",
    "0",
    "--tokenize",
    "false",
    "--bench-tokens",
    String(options.tokens ?? 64),
    "--bench-runs",
    String(options.runs ?? 3),
  ];
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(node, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(options.timeoutMs ?? 600_000),
    }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return no(`no Node executable "${node}" (set NODE)`);
    }
    return no(
      `could not run ${node}: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  const stderr = new TextDecoder().decode(out.stderr).trim().split("\n").slice(
    -3,
  ).join(" | ");
  if (out.signal) {
    return no(
      `llama.cpp ${backend} killed by ${out.signal} (timeout?) ${stderr}`
        .trim(),
    );
  }
  if (!out.success) return no(`reference.mjs exited ${out.code}: ${stderr}`);
  try {
    const result = JSON.parse(new TextDecoder().decode(out.stdout));
    const b = result.backends?.[0];
    if (!b) return no("reference.mjs returned no backend");
    if (b.error) return no(`llama.cpp ${backend} failed: ${b.error}`);
    if (!b.bench || !Number.isFinite(b.bench.tokPerS)) {
      return no("reference.mjs returned no bench numbers");
    }
    return {
      backend,
      threads: b.threads,
      tokPerS: b.bench.tokPerS,
      runsTokPerS: b.bench.runsTokPerS,
      decodeTokens: b.bench.decodeTokens,
      promptTokens: b.bench.promptTokens,
      prefillS: b.bench.prefillS,
      version:
        `node-llama-cpp ${b.version.nodeLlamaCpp}, llama.cpp ${b.version.llamaCppRelease} (${b.version.buildType})`,
      devices: b.devices ?? [],
    };
  } catch (e) {
    return no(
      `unreadable output of reference.mjs: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
}
