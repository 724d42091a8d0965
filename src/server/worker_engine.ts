/**
 * The server's {@link DecodeEngine}: the models load and run in a dedicated worker
 * (engine_worker.ts), so the main thread only parses HTTP, tokenizes and writes streams. Why: Deno's
 * WebGPU waits for the device on the calling thread (every readback polls and sleeps; one long prefill
 * or a 1024-node SpecExec tree is one wait), and the CPU backend computes synchronously. In the worker,
 * that blocks only the worker; /health, /ready, /metrics, 429s and disconnects are answered meanwhile.
 *
 * Protocol (structured-clone messages): main -> worker `open`, `decode`, `cancel`, `close`; worker ->
 * main `ready` | `failed` once, then per generation `event`* followed by `end` or `error`.
 *
 * @module
 */

import { CheckpointError } from "../model/safetensors.ts";
import type { SamplingParams } from "../model/sampling.ts";
import type { PagingBudgets } from "../runtime/backend.ts";
import type { Backend } from "../runtime/backend.ts";
import type { SpeculativeEvent } from "../speculative/engine.ts";
import type { Method, TreeOptions } from "../speculative/methods.ts";
import type { DecodeEngine, EngineDecodeOptions } from "./engine.ts";

/** What the worker opens: the Runtime's options (plain data) and the server-scope plan to make. */
export interface EngineOpenRequest {
  model: string;
  draft?: string;
  backend: Backend;
  paging?: PagingBudgets;
  reprofile: boolean;
  /** The --method flag ("auto": the startup profile decides). */
  method: Method | "auto";
  /** The sampling the startup plan is made for (the server's default request). */
  sampling: SamplingParams;
}

/** What the worker reports once the models are loaded and the plan made. */
export interface EngineInfo {
  context: number;
  hasDraft: boolean;
  /** The plan's method ("auto" resolved). */
  method: Method;
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
  | { type: "cancel"; id: number }
  | { type: "close" };

/** Messages from the worker. */
export type FromWorker =
  | { type: "ready"; info: EngineInfo }
  | { type: "failed"; error: WireError }
  | { type: "event"; id: number; event: SpeculativeEvent }
  | { type: "end"; id: number; liveAcceptance?: number[] }
  | { type: "error"; id: number; error: WireError }
  | { type: "closed" };

/** An Error for `e`, in a form that survives postMessage (name, message, stack). */
export function toWire(e: unknown): WireError {
  return e instanceof Error
    ? { name: e.name, message: e.message, stack: e.stack }
    : { name: "Error", message: String(e) };
}

/** The Error a {@link WireError} stands for (a CheckpointError is rebuilt: the HTTP layer maps it to 503). */
export function fromWire(w: WireError): Error {
  const e = w.name === "CheckpointError" ? new CheckpointError(w.message) : new Error(w.message);
  e.name = w.name;
  if (w.stack) e.stack = `${w.stack}\n    (in the engine worker)`;
  return e;
}

/** One generation's stream of events from the worker. */
interface Pending {
  push(m: FromWorker): void;
}

/** A {@link DecodeEngine} whose models live in a worker; made by {@link WorkerEngine.open}. */
export class WorkerEngine implements DecodeEngine {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private live?: number[];
  private closed = false;
  private crashed?: Error;
  private closing?: Promise<void>;
  private onClosed?: () => void;

  private constructor(private readonly worker: Worker, readonly info: EngineInfo) {
    this.live = info.liveAcceptance;
    worker.onmessage = (e: MessageEvent<FromWorker>) => this.receive(e.data);
    // A worker that dies (an uncaught error) fails its generations instead of leaving them waiting.
    worker.onerror = (e) => {
      e.preventDefault();
      this.crashed = new Error(`the engine worker crashed: ${e.message}`);
      console.error(`[server] ${this.crashed.message}`);
      for (const [id, p] of this.pending) p.push({ type: "error", id, error: toWire(this.crashed) });
      this.onClosed?.();
    };
  }

  /**
   * Start the worker, load the models and make the startup plan there; resolves once it is ready.
   * A failure (a bad model path, no adapter) rejects with the worker's error, and the worker is ended.
   */
  static open(request: EngineOpenRequest): Promise<WorkerEngine> {
    const worker = new Worker(new URL("./engine_worker.ts", import.meta.url), { type: "module" });
    return new Promise<WorkerEngine>((resolve, reject) => {
      worker.onmessage = (e: MessageEvent<FromWorker>) => {
        if (e.data.type === "ready") resolve(new WorkerEngine(worker, e.data.info));
        else if (e.data.type === "failed") {
          worker.terminate();
          reject(fromWire(e.data.error));
        }
      };
      worker.onerror = (e) => {
        e.preventDefault();
        worker.terminate();
        reject(new Error(`the engine worker failed to start: ${e.message}`));
      };
      worker.postMessage({ type: "open", request } satisfies ToWorker);
    });
  }

  get context(): number {
    return this.info.context;
  }

  get hasDraft(): boolean {
    return this.info.hasDraft;
  }

  liveAcceptance(): number[] | undefined {
    return this.live;
  }

  private receive(m: FromWorker): void {
    if (m.type === "closed") {
      this.onClosed?.();
      return;
    }
    if (m.type === "ready" || m.type === "failed") return;
    if (m.type === "end" && m.liveAcceptance) this.live = m.liveAcceptance;
    this.pending.get(m.id)?.push(m);
  }

  async *decode(
    method: Method,
    prompt: number[],
    options: EngineDecodeOptions,
    signal: AbortSignal,
  ): AsyncGenerator<SpeculativeEvent> {
    if (this.crashed) throw this.crashed;
    if (this.closed) throw new Error("the engine is closed");
    const id = this.nextId++;
    const queue: FromWorker[] = [];
    let wake: (() => void) | undefined;
    this.pending.set(id, {
      push: (m) => {
        queue.push(m);
        wake?.();
      },
    });
    const cancel = () => this.worker.postMessage({ type: "cancel", id } satisfies ToWorker);
    signal.addEventListener("abort", cancel, { once: true });
    try {
      this.worker.postMessage({ type: "decode", id, method, prompt, options } satisfies ToWorker);
      if (signal.aborted) cancel();
      for (;;) {
        while (queue.length === 0) await new Promise<void>((r) => (wake = r));
        wake = undefined;
        const m = queue.shift()!;
        if (m.type === "event") yield m.event;
        else if (m.type === "end") return;
        else if (m.type === "error") throw fromWire(m.error);
      }
    } finally {
      signal.removeEventListener("abort", cancel);
      this.pending.delete(id);
    }
  }

  /** Release the models in the worker, then end it (waits up to 5 s for the worker to clean up). */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.closing = new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.worker.terminate();
        resolve();
      };
      const timer = setTimeout(done, 5000);
      this.onClosed = done;
      this.worker.postMessage({ type: "close" } satisfies ToWorker);
    });
    return this.closing;
  }
}
