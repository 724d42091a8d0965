/**
 * `deno task generate`: stream a completion of --prompt to stdout, or print one JSON object with --json
 * (keys in snake_case, like the HTTP API). The models and the decisions (Sequoia's tree, ...) come from
 * a {@link Runtime}; a prompt plus --max-tokens beyond the context is refused up front (exit 2).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { z } from "zod";
import type { GenerationStats } from "../decoding/stats.ts";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR } from "../model/folder.ts";
import { SAMPLING_DEFAULTS } from "../model/sampling.ts";
import { pagedModel } from "../model/capabilities.ts";
import { METHODS, needsDraftModel } from "../speculative/methods.ts";
import type { StepStats } from "../speculative/engine.ts";
import { Runtime } from "../runtime/runtime.ts";
import { ContextLengthError } from "../runtime/context_length.ts";
import { pagingReport } from "../gpu/paging/report.ts";
import { formatBytes } from "../util/bytes.ts";
import { PAGING_FLAGS, pagingBudgets } from "./paging_flags.ts";
import {
  BACKEND_FLAGS,
  type BackendFlags,
  backendFlags,
  backendUsage,
  checkPagingBackend,
} from "./backend_flags.ts";
import { UsageError, zodMessage } from "./usage.ts";

const SAMPLING = SAMPLING_DEFAULTS.cli;

const USAGE = `Usage: deno task generate --prompt TEXT [options]

  --prompt TEXT        text to continue (required)
  --max-tokens N       tokens to generate (default 128)
  --temperature T      0 = greedy (default ${SAMPLING.temperature})
  --top-k K            keep the K most likely tokens, 0 = off (default ${SAMPLING.topK})
  --top-p P            nucleus mass in (0, 1], 1 = off (default ${SAMPLING.topP})
  --seed S             sampling seed (default 0)
  --model PATH         Hugging Face Llama folder or .gguf file (default weights/tiny/target)
${
  backendUsage(23)
}  --method M           ar (default) | chain | specinfer | sequoia | specexec | lookup (no draft model:
                       trees copied from the prompt and the text so far)
  --draft PATH         draft folder or .gguf file for chain, specinfer, sequoia, specexec
                       (default weights/tiny/draft; ar and lookup load none)
  --tree-size N        sequoia: tree nodes incl. the root (default 32); lookup: most nodes (16)
  --depth D            speculated levels below the root (chain 4, specinfer 4, sequoia 8, lookup 8)
  --width W            specinfer: root children (4); specexec: children per expansion (8)
  --budget K           specexec: tree budget (default 128)
  --tokens-per-submission N   GPU: tokens decoded per submission / readback when streaming (default 8)
  --tokens-per-readback N     GPU with --json (nothing streamed): tokens per submission / readback (32)
  --steps-per-readback N      GPU with --json, draft and target on one device with one vocabulary: most
                              speculative steps chained per readback (default 8; 1: one readback a step)
  --pipeline on|off           GPU: submit the next decode batch before the last one's readback (on)
  --gpu-memory-budget B       GPU bytes for the target's weights (e.g. 256MB); when the target does not
                              fit, its decoder layers are streamed from disk through a ring of layer slots
  --host-memory-budget B      host RAM for caching streamed layers (default: all, up to half the free RAM)
  --json               print one object {text, tokens, stats} instead of streaming text
`;

const optionsSchema = z.object({
  prompt: z.string({ message: "--prompt is required" }).min(1, "--prompt must not be empty"),
  maxTokens: z.coerce.number().int().min(1).max(1_000_000),
  temperature: z.coerce.number().min(0).max(100),
  topK: z.coerce.number().int().min(0),
  topP: z.coerce.number().gt(0).max(1),
  seed: z.coerce.number().int(),
  model: z.string().min(1),
  tokensPerSubmission: z.coerce.number().int().min(1).max(256),
  tokensPerReadback: z.coerce.number().int().min(1).max(256),
  stepsPerReadback: z.coerce.number().int().min(1).max(64),
  pipeline: z.enum(["on", "off"], { message: "must be on or off" }),
  method: z.enum(METHODS, { message: `must be one of ${METHODS.join(", ")}` }),
  draft: z.string().min(1),
  treeSize: z.coerce.number().int().min(1).max(1024).optional(),
  depth: z.coerce.number().int().min(1).max(32).optional(),
  width: z.coerce.number().int().min(1).max(64).optional(),
  budget: z.coerce.number().int().min(1).max(2048).optional(),
  json: z.boolean(),
  gpuMemoryBudget: z.number().int().min(0).optional(),
  hostMemoryBudget: z.number().int().min(0).optional(),
});

/** Parsed `generate` options. */
export type GenerateCliOptions = z.infer<typeof optionsSchema> & BackendFlags;

/** Parse and validate `generate` arguments; throws {@link UsageError}. */
export function parseGenerateArgs(args: string[]): GenerateCliOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        prompt: { type: "string" },
        "max-tokens": { type: "string", default: "128" },
        temperature: { type: "string", default: String(SAMPLING.temperature) },
        "top-k": { type: "string", default: String(SAMPLING.topK) },
        "top-p": { type: "string", default: String(SAMPLING.topP) },
        seed: { type: "string", default: "0" },
        model: { type: "string", default: DEFAULT_TARGET_DIR },
        ...BACKEND_FLAGS,
        "tokens-per-submission": { type: "string", default: "8" },
        "tokens-per-readback": { type: "string", default: "32" },
        "steps-per-readback": { type: "string", default: "8" },
        pipeline: { type: "string", default: "on" },
        method: { type: "string", default: "ar" },
        draft: { type: "string", default: DEFAULT_DRAFT_DIR },
        "tree-size": { type: "string" },
        depth: { type: "string" },
        width: { type: "string" },
        budget: { type: "string" },
        json: { type: "boolean", default: false },
        ...PAGING_FLAGS,
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${USAGE}`);
  }
  if (values.help) throw new UsageError(USAGE, 0);
  const backend = backendFlags(values);
  const paging = pagingBudgets(values);
  checkPagingBackend(backend.backend, paging);
  const r = optionsSchema.safeParse({
    prompt: values.prompt,
    maxTokens: values["max-tokens"],
    temperature: values.temperature,
    topK: values["top-k"],
    topP: values["top-p"],
    seed: values.seed,
    model: values.model,
    tokensPerSubmission: values["tokens-per-submission"],
    tokensPerReadback: values["tokens-per-readback"],
    stepsPerReadback: values["steps-per-readback"],
    pipeline: values.pipeline,
    method: values.method,
    draft: values.draft,
    treeSize: values["tree-size"],
    depth: values.depth,
    width: values.width,
    budget: values.budget,
    json: values.json,
    ...paging,
  });
  if (!r.success) throw new UsageError(`${zodMessage(r.error)}\n\n${USAGE}`);
  return { ...r.data, ...backend };
}

/** `camelCase` keys as `snake_case`, like the HTTP API's JSON (one spelling per field). */
function snakeKeys(o: object): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(o).map(([k, v]) => [k.replace(/[A-Z]/g, (m) => "_" + m.toLowerCase()), v]),
  );
}

/** Run `generate`; returns the process exit code. */
export async function runGenerate(args: string[]): Promise<number> {
  const o = parseGenerateArgs(args);
  const log = (line: string) => console.error(line);
  const runtime = await Runtime.open({
    model: o.model,
    draft: needsDraftModel(o.method) ? o.draft : undefined,
    backend: o.backend,
    webgpu: o.webgpu,
    threads: o.threads,
    kvDtype: o.kvDtype,
    weightsDtype: o.weightsDtype,
    paging: { gpuMemoryBudget: o.gpuMemoryBudget, hostMemoryBudget: o.hostMemoryBudget },
    maxBatch: (o.budget ?? 0) + 1,
    log,
  });
  try {
    return await generate(runtime, o);
  } finally {
    runtime.close();
  }
}

async function generate(runtime: Runtime, o: GenerateCliOptions): Promise<number> {
  const log = (line: string) => console.error(line);
  const tok = runtime.target.folder.tokenizer;
  const prompt = tok.encode(o.prompt);
  try {
    runtime.checkContext(prompt.length, o.maxTokens, "--max-tokens");
  } catch (e) {
    if (e instanceof ContextLengthError) throw new UsageError(e.message);
    throw e;
  }
  const sampling = { temperature: o.temperature, topK: o.topK, topP: o.topP };
  // Sequoia on the GPU without an explicit shape: the hardware-aware pick for this adapter (cached).
  const plan = await runtime.plan(sampling, o.method, {
    tree: { treeSize: o.treeSize, depth: o.depth, width: o.width, budget: o.budget },
  });
  if (plan.pick) {
    const pick = plan.pick.pick;
    log(
      `sequoia tree for this adapter: n=${pick.n}, depth=${pick.depth} (predicted ${
        pick.speedup.toFixed(2)
      }x AR)`,
    );
  }
  const ids: number[] = [];
  const stream = tok.streamDecoder();
  const out = new TextEncoder();
  let stats: GenerationStats | undefined;
  const steps: StepStats[] = [];
  let finishReason = "";
  if (!o.json) await Deno.stdout.write(out.encode(o.prompt));
  const paged = pagedModel(runtime.target.model);
  await paged?.pagingIdle();
  const pagingBefore = paged?.pagingStats();
  const t0 = performance.now();
  const events = runtime.decode(plan.method, prompt, {
    tree: plan.tree,
    acceptance: plan.acceptance,
    maxTokens: o.maxTokens,
    sampling,
    seed: o.seed,
    tokensPerSubmission: o.tokensPerSubmission,
    // --json prints nothing until the end: the device may decode longer batches per readback.
    stream: !o.json,
    tokensPerReadback: o.tokensPerReadback,
    stepsPerReadback: o.stepsPerReadback,
    pipelined: o.pipeline === "on",
    // Sequoia re-plans its tree when the observed acceptance drifts from the stored vector.
    adaptive: plan.method === "sequoia" ? plan.adaptive : undefined,
    log,
  });
  for await (const ev of events) {
    if (ev.type === "token") {
      ids.push(ev.id);
      const piece = stream.push(ev.id);
      if (!o.json && piece) await Deno.stdout.write(out.encode(piece));
    } else if (ev.type === "step") {
      steps.push(ev.stats);
    } else if (ev.type === "done") {
      stats = ev.stats;
      finishReason = ev.finishReason;
    }
  }
  const tail = stream.flush();
  const wallMs = performance.now() - t0;
  await paged?.pagingIdle(); // refills already scheduled belong to this run (bench counts them too)
  const paging = paged && pagingBefore ? pagingReport(pagingBefore, paged.pagingStats()!, wallMs) : undefined;
  const device = runtime.target.device;
  const where = runtime.backendStatus();
  if (o.json) {
    console.log(JSON.stringify({
      text: tok.decode(ids),
      tokens: ids,
      finish_reason: finishReason,
      stats: {
        ...snakeKeys(stats!),
        backend: where.backend,
        threads: where.threads ?? undefined,
        device,
        backend_choice: where.choice ?? undefined,
        method: o.method,
        model: o.model,
        draft: runtime.draft ? o.draft : undefined,
        acceptance: plan.acceptance,
        paging,
        steps: steps.map(snakeKeys),
      },
    }));
  } else {
    await Deno.stdout.write(out.encode(tail + "\n"));
    const s = stats!;
    if (paging) {
      console.error(
        `[paged: ${paging.uploads} layer uploads, ${
          formatBytes(paging.bytes_uploaded)
        } at ${paging.upload_gb_per_s} GB/s, ` +
          `stalled ${paging.stall_ms.toFixed(0)} ms, overlap ${(paging.overlap * 100).toFixed(0)}%]`,
      );
    }
    console.error(
      `\n[${s.completionTokens} tokens, ${s.tokPerS.toFixed(1)} tok/s, prefill ${
        s.prefillMs.toFixed(0)
      } ms, ` +
        `${
          s.tokensPerStep.toFixed(2)
        } tokens/step, syncs ${s.syncs}, method ${o.method}, finish: ${finishReason}, ${device}]`,
    );
  }
  return 0;
}
