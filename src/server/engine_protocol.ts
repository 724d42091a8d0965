/**
 * The engine worker's protocol (structured-clone messages) and the facts it reports: main -> worker
 * `open`, `decode`, `choose`, `cancel`, `close`; worker -> main `ready` | `failed` once, then per
 * generation `event`* followed by `end` or `error`, per `choose` one `chosen` or `error`. Shared by the client (worker_engine.ts), the worker
 * (engine_worker.ts) and the in-thread runtime engine (runtime_engine.ts).
 *
 * @module
 */

import { CheckpointError } from "../model/safetensors.ts";
import type { SamplingParams } from "../model/sampling.ts";
import type { BackendChoice, PagingBudgets } from "../runtime/backend.ts";
import type { BackendDecision } from "../runtime/backend_choice.ts";
import type { BackendStatus, MethodDecision } from "../runtime/runtime.ts";
import type { SpeculativeEvent } from "../speculative/engine.ts";
import type { Method, TreeOptions } from "../speculative/methods.ts";
import type { ChooseRequest, EngineDecodeOptions } from "./engine.ts";
import type { BatchRecord } from "../batching/batcher.ts";
import type { KvDtype } from "../gpu/ops.ts";
import type { WeightsDtype } from "../model/weight_types.ts";
import type { WebGpuChoice } from "../gpu/webgpu_impl.ts";

/** What the worker opens: the Runtime's options (plain data) and the server-scope plan to make. */
export interface EngineOpenRequest {
  model: string;
  draft?: string;
  /** "auto": the faster of wasm and gpu here (see runtime/backend_choice.ts). */
  backend: BackendChoice;
  /** wasm: threads per forward (default: this machine's cores). */
  threads?: number;
  /** gpu: the WebGPU implementation (the server resolves auto on its main thread; see RuntimeOptions). */
  webgpu?: WebGpuChoice;
  /** What type the target's matrices load as (`--weights-dtype`, default "auto"). */
  weightsDtype?: WeightsDtype;
  /** With backend "auto": the decision the opener already made (see RuntimeOptions.decided). */
  decided?: BackendDecision;
  paging?: PagingBudgets;
  /** gpu: KV cache element type (default "f32"). */
  kvDtype?: KvDtype;
  reprofile: boolean;
  /** The --method flag ("auto": each request's method is chosen from predicted speeds). */
  method: Method | "auto";
  /** The sampling the startup plan is made for (the server's default request). */
  sampling: SamplingParams;
  /** Where profile.json / acceptance.json are cached (default `$SPECDEC_CACHE_DIR`, see RuntimeOptions). */
  cacheDir?: string;
  /** Batched streams (`--max-batch N`, `--kv-budget`); absent or 1 stream: one generation at a time. */
  batch?: { streams: number; kvBytes?: number };
}

/** What the worker reports once the models are loaded and the plan made. */
export interface EngineInfo {
  /** Tokens one generation may hold (prompt + generated): the context, or a stream's KV capacity. */
  context: number;
  /** Generations that decode at once (batched streams; 1 without). */
  maxStreams: number;
  hasDraft: boolean;
  /** Where the models run ("auto" resolved), for /v1/status. */
  backend: BackendStatus;
  /** The startup plan's method ("auto" resolved at the startup sampling). */
  method: Method;
  /** The method of a request that names none: "auto" (chosen per request) or the --method flag's. */
  defaultMethod: Method | "auto";
  tree: TreeOptions;
  acceptance?: number[];
  status?: Record<string, unknown>;
  /** Sequoia's pick on this adapter, for the startup log. */
  pick?: { n: number; depth: number; speedup: number };
  /** The adaptive plan's acceptance at startup. */
  liveAcceptance?: number[];
}

/** An error as it crosses the boundary. */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
}

/** Messages to the worker. */
export type ToWorker =
  | { type: "open"; request: EngineOpenRequest }
  | { type: "decode"; id: number; method: Method; prompt: number[]; options: EngineDecodeOptions }
  | { type: "choose"; id: number; prompt: number[]; request: ChooseRequest }
  | { type: "cancel"; id: number }
  | { type: "close" };

/** Messages from the worker. */
export type FromWorker =
  | { type: "ready"; info: EngineInfo }
  | { type: "failed"; error: WireError }
  | { type: "event"; id: number; event: SpeculativeEvent }
  | { type: "end"; id: number; liveAcceptance?: number[] }
  /** The answer to a `choose`. */
  | { type: "chosen"; id: number; decision: MethodDecision }
  /** The shared adaptive plan re-planned (its new acceptance vector, for /v1/status). */
  | { type: "acceptance"; acceptance: number[] }
  /** One batched forward ran (batched streams; metrics). */
  | { type: "batch"; record: BatchRecord }
  | { type: "error"; id: number; error: WireError }
  | { type: "closed" };

/** An Error for `e`, in a form that survives postMessage (name, message, stack). */
export function toWire(e: unknown): WireError {
  return e instanceof Error
    ? { name: e.name, message: e.message, stack: e.stack }
    : { name: "Error", message: String(e) };
}

/**
 * The Error a {@link WireError} stands for: a CheckpointError (the HTTP layer maps it to 503) and an
 * AbortError (a DOMException, as cancellation checks expect) are rebuilt with their types.
 */
export function fromWire(w: WireError): Error {
  if (w.name === "AbortError") return new DOMException(w.message, "AbortError");
  const e = w.name === "CheckpointError" ? new CheckpointError(w.message) : new Error(w.message);
  e.name = w.name;
  if (w.stack) e.stack = `${w.stack}\n    (in the engine worker)`;
  return e;
}
