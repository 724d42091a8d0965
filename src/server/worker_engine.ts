/**
 * The server's {@link DecodeEngine}: the models load and run in a dedicated worker
 * (engine_worker.ts), so the main thread only parses HTTP, tokenizes and writes streams. Why: Deno's
 * WebGPU waits for the device on the calling thread (every readback polls and sleeps; one long prefill
 * or a 1024-node SpecExec tree is one wait), and the CPU backend computes synchronously. In the worker,
 * that blocks only the worker; /health, /ready, /metrics, 429s and disconnects are answered meanwhile.
 * The messages are in engine_protocol.ts.
 *
 * @module
 */

import type { SpeculativeEvent } from "../speculative/engine.ts";
import type { Method } from "../speculative/methods.ts";
import type { MethodDecision } from "../runtime/runtime.ts";
import type { ChooseRequest, DecodeEngine, EngineDecodeOptions } from "./engine.ts";
import type { BatchRecord } from "../batching/batcher.ts";
import {
  type EngineInfo,
  type EngineOpenRequest,
  fromWire,
  type FromWorker,
  toWire,
  type ToWorker,
} from "./engine_protocol.ts";

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
  /** Called once if the worker dies (an uncaught error): the engine is unusable from then on. */
  onCrash?: (e: Error) => void;
  /** Told of every batched forward the worker ran (batched streams; metrics). */
  onBatch?: (record: BatchRecord) => void;

  private constructor(private readonly worker: Worker, readonly info: EngineInfo) {
    this.live = info.liveAcceptance;
    worker.onmessage = (e: MessageEvent<FromWorker>) => this.receive(e.data);
    // A worker that dies fails its generations instead of leaving them waiting, and says so.
    worker.onerror = (e) => {
      e.preventDefault();
      if (this.crashed) return;
      this.crashed = new Error(`the engine worker crashed: ${e.message}`);
      console.error(`[server] ${this.crashed.message}`);
      for (const [id, p] of this.pending) p.push({ type: "error", id, error: toWire(this.crashed) });
      this.onClosed?.();
      this.onCrash?.(this.crashed);
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

  /** Generations the worker decodes at once (batched streams; 1 without). */
  get maxStreams(): number {
    return this.info.maxStreams;
  }

  /** False once the worker crashed. */
  get healthy(): boolean {
    return this.crashed === undefined;
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
    if (m.type === "acceptance") {
      this.live = m.acceptance;
      return;
    }
    if (m.type === "batch") {
      this.onBatch?.(m.record);
      return;
    }
    if (m.type === "end" && m.liveAcceptance) this.live = m.liveAcceptance;
    this.pending.get(m.id)?.push(m);
  }

  /**
   * `--method auto`: the worker chooses one generation's method (RuntimeEngine.choose), in turn with
   * the decodes it runs.
   */
  choose(prompt: number[], request: ChooseRequest): Promise<MethodDecision> {
    if (this.crashed) return Promise.reject(this.crashed);
    if (this.closed) return Promise.reject(new Error("the engine is closed"));
    const id = this.nextId++;
    return new Promise<MethodDecision>((resolve, reject) => {
      this.pending.set(id, {
        push: (m) => {
          this.pending.delete(id);
          if (m.type === "chosen") resolve(m.decision);
          else if (m.type === "error") reject(fromWire(m.error));
        },
      });
      this.worker.postMessage({ type: "choose", id, prompt, request } satisfies ToWorker);
    });
  }

  /**
   * One generation in the worker. Once `signal` aborts, the worker stops at its next step; events it
   * sent before it saw the cancel are dropped here (no token after a stop sequence or a disconnect),
   * except the final `done` with the run's stats.
   */
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
    let ended = false;
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
        if (m.type === "event") {
          if (signal.aborted && m.event.type !== "done") continue;
          yield m.event;
        } else if (m.type === "end") {
          ended = true;
          return;
        } else if (m.type === "error") {
          ended = true;
          throw fromWire(m.error);
        }
      }
    } finally {
      signal.removeEventListener("abort", cancel);
      // A consumer that stopped early (threw, or broke out) must not leave the worker generating.
      if (!ended && !this.crashed) cancel();
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
      const timer = setTimeout(done, this.crashed ? 0 : 5000);
      this.onClosed = done;
      if (!this.crashed) this.worker.postMessage({ type: "close" } satisfies ToWorker);
    });
    return this.closing;
  }
}
