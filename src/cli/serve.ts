/**
 * `deno task start`: parse the flags, open the engine worker (a {@link Runtime} there: models, startup
 * profile, default method) and serve the HTTP app until a signal.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_DRAFT_DIR, DEFAULT_TARGET_DIR, type ModelFolder, openModelFolder } from "../model/folder.ts";
import { SAMPLING_DEFAULTS } from "../model/sampling.ts";
import { type Method, METHODS } from "../speculative/methods.ts";
import { createApp, DEFAULT_MAX_QUEUE } from "../server/app.ts";
import { Scheduler } from "../server/queue.ts";
import { ServerMetrics } from "../server/metrics.ts";
import type { BatchRecord } from "../batching/batcher.ts";
import { parseBytes } from "../util/bytes.ts";
import type { DecodeEngine } from "../server/engine.ts";
import type { EngineInfo, EngineOpenRequest } from "../server/engine_protocol.ts";
import { RuntimeEngine } from "../server/runtime_engine.ts";
import { WorkerEngine } from "../server/worker_engine.ts";
import { UsageError } from "./usage.ts";
import { PAGING_FLAGS, pagingBudgets } from "./paging_flags.ts";
import { BACKEND_FLAGS, backendFlags, backendUsage, checkPagingBackend } from "./backend_flags.ts";
import { resolveBackend } from "../runtime/backend_choice.ts";
import { resolveWebGpu } from "../runtime/webgpu_choice.ts";

/** ms a drained server keeps answering 503 before it closes its connections (see serve's stop). */
const LINGER_MS = 500;

/** Where the models run: a worker (the HTTP thread never waits on the device) or the HTTP thread. */
const ENGINES = ["worker", "inline"] as const;

const USAGE = `Usage: deno task start [options]

  --port N            port (default $PORT or 8000; 0 = any free port)
  --host H            interface (default 127.0.0.1)
  --model PATH        Hugging Face Llama folder or .gguf file (default weights/tiny/target)
  --draft PATH        draft folder or .gguf file for speculative methods (default weights/tiny/draft;
                      "none": no draft model, so only ar and lookup run)
  --method M          default method of requests: auto (default: Sequoia when the startup profile predicts
                      a speedup on this adapter, else ar; never lookup), ar, chain, specinfer, sequoia,
                      specexec, lookup (draft-free: trees copied from the prompt and the text so far)
${
  backendUsage(22)
}  --reprofile         measure the adapter again instead of using the cached profile (and backend choice)
  --api-key KEY       require "Authorization: Bearer KEY" on /v1/* and /metrics (default $SPECDEC_API_KEY)
  --queue-depth N     generations that may wait behind the running ones; more get 429 (default ${DEFAULT_MAX_QUEUE})
  --max-batch N       batched streams: up to N generations decode at once, their forwards (AR tokens,
                      prefill chunks, speculative trees; the draft's too) run as one batched forward
                      (wasm and cpu backends, auto picks wasm; default 1: one at a time). Each stream
                      holds a KV cache
  --kv-budget B       bytes for the KV caches of --max-batch streams and the one the server measures on
                      (default 2GB): a stream holds min(context, (B - context x bytes per token) /
                      (N x bytes per token)) tokens; a longer request gets 400
  --drain-timeout S   on SIGINT/SIGTERM, let queued work finish for up to S seconds, then cancel it
                      (default 30; a second signal cancels at once)
  --body-timeout S    a request body must arrive within S seconds of its headers, else 408 (default 30;
                      0 = no limit). Deno.serve has no header-read or keep-alive idle timeout: put a
                      proxy (deploy/nginx) in front to bound those
  --engine E          worker (default): the models run in a worker thread, so /health, /ready, /metrics
                      and 429s answer while the device works; inline: on the HTTP thread (a long
                      prefill or a big tree then delays every other answer)
  --gpu-memory-budget B   GPU bytes for the target's weights (e.g. 256MB); a target that does not fit
                          streams its decoder layers from disk through a ring of layer slots
  --host-memory-budget B  host RAM for caching streamed layers (default: all, up to half the free RAM)
`;

function intOption(name: string, v: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be ${min}..${max}, got ${v}`);
  }
  return n;
}

/** Run the server until SIGINT/SIGTERM; returns the exit code. */
export async function runServe(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        port: { type: "string", default: Deno.env.get("PORT") ?? "8000" },
        host: { type: "string", default: "127.0.0.1" },
        model: { type: "string", default: DEFAULT_TARGET_DIR },
        ...BACKEND_FLAGS,
        draft: { type: "string", default: DEFAULT_DRAFT_DIR },
        method: { type: "string", default: "auto" },
        reprofile: { type: "boolean", default: false },
        "api-key": { type: "string", default: Deno.env.get("SPECDEC_API_KEY") },
        "queue-depth": { type: "string", default: String(DEFAULT_MAX_QUEUE) },
        "max-batch": { type: "string", default: "1" },
        "kv-budget": { type: "string" },
        "drain-timeout": { type: "string", default: "30" },
        "body-timeout": { type: "string", default: "30" },
        engine: { type: "string", default: "worker" },
        ...PAGING_FLAGS,
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${USAGE}`);
  }
  if (values.help) throw new UsageError(USAGE, 0);
  const port = intOption("port", values.port, 0, 65535);
  const maxQueue = intOption("queue-depth", values["queue-depth"], 0, 100_000);
  const streams = intOption("max-batch", values["max-batch"], 1, 256);
  if (values["kv-budget"] !== undefined && streams === 1) {
    throw new UsageError("--kv-budget sizes the caches of --max-batch N streams: give --max-batch N > 1");
  }
  let kvBytes: number | undefined;
  try {
    kvBytes = values["kv-budget"] === undefined ? undefined : parseBytes("--kv-budget", values["kv-budget"]);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const drainS = Number(values["drain-timeout"]);
  if (!(drainS >= 0 && drainS <= 86_400)) {
    throw new UsageError(`--drain-timeout must be 0..86400 seconds, got ${values["drain-timeout"]}`);
  }
  const bodyS = Number(values["body-timeout"]);
  if (!(bodyS >= 0 && bodyS <= 3600)) {
    throw new UsageError(`--body-timeout must be 0..3600 seconds, got ${values["body-timeout"]}`);
  }
  if (values["api-key"] === "") throw new UsageError("--api-key must not be empty");
  const flags = backendFlags(values);
  const threads = flags.threads;
  let backend = flags.backend;
  if (streams > 1 && backend === "auto") {
    // Only the wasm and cpu backends hold several sequences; auto would otherwise pick by t(1) alone.
    console.error(`--max-batch ${streams}: batched streams run on the wasm backend (--backend auto)`);
    backend = "wasm";
  }
  const paging = pagingBudgets(values);
  checkPagingBackend(backend, paging);
  if (values.method !== "auto" && !METHODS.includes(values.method as Method)) {
    throw new UsageError(
      `--method must be auto or one of ${METHODS.join(", ")}, got ${JSON.stringify(values.method)}`,
    );
  }
  const draft = values.draft === "none" ? undefined : values.draft;
  const t0 = performance.now();
  if (!ENGINES.includes(values.engine as typeof ENGINES[number])) {
    throw new UsageError(`--engine must be "worker" or "inline", got ${JSON.stringify(values.engine)}`);
  }
  // auto with the engine in a worker: decide here, on the main thread, so that the worker touches WebGPU
  // only when it runs on it (terminating a worker that holds a WebGPU adapter and the wasm backend's
  // nested thread workers crashed Deno 2.9.6 at exit in ~5-15% of runs).
  // --webgpu auto likewise: measured (or read from the cache) here, the worker gets the implementation.
  const webgpu = backend === "wasm" || backend === "cpu"
    ? undefined
    : (await resolveWebGpu(flags.webgpu, values.model, {
      weightsDtype: flags.weightsDtype,
      reprofile: values.reprofile,
      log: (l) => console.error(`  ${l}`),
    })).webgpu;
  const decided = backend === "auto" && values.engine === "worker"
    ? (await resolveBackend("auto", values.model, {
      threads,
      weightsDtype: flags.weightsDtype,
      paging,
      reprofile: values.reprofile,
      log: (l) => console.error(`  ${l}`),
    })).decision
    : undefined;
  const request: EngineOpenRequest = {
    model: values.model,
    draft,
    backend,
    webgpu,
    threads,
    weightsDtype: flags.weightsDtype,
    decided,
    paging,
    kvDtype: flags.kvDtype,
    reprofile: values.reprofile,
    method: values.method as Method | "auto",
    sampling: SAMPLING_DEFAULTS.profile,
    ...(streams > 1 ? { batch: { streams, ...(kvBytes ? { kvBytes } : {}) } } : {}),
  };
  const metrics = new ServerMetrics();
  const onBatch = (r: BatchRecord) => metrics.observeBatch(r);
  const engine = values.engine === "worker"
    ? Object.assign(await WorkerEngine.open(request), { onBatch })
    : await RuntimeEngine.open(request, onBatch);
  try {
    const folder = await openModelFolder(values.model);
    folder.checkpoint.close(); // only the tokenizer is needed here; the worker reads the weights
    return await serve(engine, folder, t0, {
      port,
      host: values.host,
      maxQueue,
      drainS,
      bodyS,
      apiKey: values["api-key"],
      metrics,
    });
  } finally {
    await engine.close();
  }
}

/**
 * Serve the engine until SIGINT/SIGTERM. The startup profile (GPU), made in the worker: t(n) on this
 * adapter (cached) + the acceptance vector for the default sampling of requests -> Sequoia's tree, and
 * whether speculation pays here at all.
 */
async function serve(
  engine: DecodeEngine & { readonly info: EngineInfo; onCrash?: (e: Error) => void },
  folder: ModelFolder,
  t0: number,
  o: {
    port: number;
    host: string;
    maxQueue: number;
    drainS: number;
    bodyS: number;
    apiKey?: string;
    metrics: ServerMetrics;
  },
): Promise<number> {
  const info = engine.info;
  const method = info.defaultMethod === "auto"
    ? `auto (chosen per request; ${info.method} at the startup sampling)`
    : info.method;
  if (info.pick) {
    console.error(
      `  sequoia n=${info.pick.n} depth=${info.pick.depth}, predicted ${
        info.pick.speedup.toFixed(2)
      }x AR -> default method ${method}`,
    );
  }
  const scheduler = new Scheduler({ maxQueue: o.maxQueue, maxRunning: engine.maxStreams ?? 1 });
  const app = createApp({
    name: folder.path.split("/").filter(Boolean).pop() ?? "model",
    tokenizer: folder.tokenizer,
    engine,
    defaultMethod: info.defaultMethod,
    tree: info.tree,
    acceptance: info.acceptance,
    status: info.status,
    backend: info.backend,
  }, { scheduler, metrics: o.metrics, apiKey: o.apiKey, bodyTimeoutMs: o.bodyS * 1000 });
  // Deno.serve (2.9) takes no header-read, keep-alive idle or body timeout (measured: a connection that
  // sends half its headers, or idles after a response, stays open > 70 s). The body limit is the app's
  // (--body-timeout: 408); headers and idle connections are bounded by a proxy in front (deploy/nginx).
  const server = Deno.serve({
    port: o.port,
    hostname: o.host,
    onListen: ({ hostname, port }) =>
      console.error(
        `ready in ${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s: listening on http://${hostname}:${port} (${info.backend.device}; default method ${method}, ` +
          `${
            scheduler.maxRunning > 1
              ? `batched streams: ${scheduler.maxRunning} at once, ${info.context} tokens each; `
              : ""
          }queue depth ${o.maxQueue}${o.apiKey ? ", API key required" : ""})`,
      ),
  }, app.fetch);
  // First signal: drain (no new generations, /ready 503, queued work finishes for up to --drain-timeout,
  // then is cancelled at its next step), then close the listener. A second signal cancels at once.
  let signals = 0;
  const stop = () => {
    if (++signals > 1) {
      console.error("cancelling in-flight generations");
      scheduler.cancelAll();
      return;
    }
    const busy = scheduler.running + scheduler.waiting;
    console.error(
      `shutting down: draining ${busy} generation(s) for up to ${o.drainS} s (signal again to cancel)`,
    );
    scheduler.drain(o.drainS * 1000).then(async (finished) => {
      if (!finished) console.error("drain timed out: cancelled the rest");
      // Linger a moment answering 503 with "Connection: close": a balancer's requests on connections kept
      // alive from before the drain get an answer (and it takes the replica out of rotation) instead of
      // meeting a connection the shutdown closes under them (nginx: "upstream prematurely closed").
      if (signals === 1) await new Promise((r) => setTimeout(r, LINGER_MS));
      await server.shutdown();
    });
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  // A crashed engine worker cannot be recovered in place: fail what runs, stop listening and exit 1, so
  // a supervisor (Kubernetes, systemd, the container runtime) restarts the process instead of a live
  // /health hiding a replica that answers every generation with 500.
  let crashed = false;
  engine.onCrash = () => {
    crashed = true;
    scheduler.cancelAll();
    server.shutdown();
  };
  await server.finished;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  return crashed ? 1 : 0;
}
