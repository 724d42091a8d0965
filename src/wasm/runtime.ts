/**
 * The wasm backend's runtime: the compiled kernels (kernels/llama.wasm), one shared memory, a bump
 * allocator over it, and the threads that run each forward together. One runtime per model: its
 * weights, KV cache and scratch live in its memory, and dispose() ends its threads.
 *
 * Threads: thread 0 is the caller's (a forward is a synchronous call); threads 1..N-1 are Workers that
 * instantiate the same module over the same memory, each with its own stack, and wait in the kernels'
 * worker_loop for jobs (spinning briefly, then sleeping on an atomic).
 *
 * @module
 */

import { CTX_FIELDS, LAYER_FIELDS, POOL_FIELDS, StructView } from "./layout.ts";

/** What llama.wasm exports (addresses are wasm32 byte offsets into the memory). */
export interface KernelExports {
  /** Fill the kernels' tables (once per memory, before anything else). */
  init(): void;
  ctx_size(): number;
  layer_size(): number;
  pool_size(): number;
  forward(pool: number, ctx: number): void;
  stop_workers(pool: number): void;
  worker_loop(pool: number, tid: number, seen: number): void;
  k_rmsnorm(x: number, w: number, n: number, d: number, eps: number, out: number): void;
  k_quantize(x: number, n: number, cols: number, xq: number, xd: number, xs: number): void;
  k_matmul(
    type: number,
    w: number,
    rows: number,
    cols: number,
    x: number,
    xq: number,
    xd: number,
    xs: number,
    n: number,
    out: number,
    accum: number,
  ): void;
  k_rope(x: number, n: number, heads: number, hd: number, cos: number, sin: number): void;
  k_attention(
    q: number,
    k: number,
    v: number,
    mask: number,
    n: number,
    slots: number,
    heads: number,
    kvHeads: number,
    hd: number,
    scores: number,
    acc: number,
    out: number,
  ): void;
  k_swiglu(g: number, u: number, n: number, out: number): void;
  k_exp(x: number): number;
  __stack_pointer: WebAssembly.Global;
  __heap_base: WebAssembly.Global;
}

const PAGE = 65536;
/** wasm32's limit: 4 GiB. */
export const MAX_WASM_BYTES = 65536 * PAGE;
/** Stack of each worker thread (the kernels keep a few hundred bytes of locals). */
const WORKER_STACK = 256 * 1024;

let kernelFile: Uint8Array<ArrayBuffer> | undefined;
let compiled: Promise<WebAssembly.Module> | undefined;
let kernelHash: string | undefined;

/** llama.wasm's bytes, read once per process (93 KB; both the hash and the compile need them). */
function kernelBytes(): Uint8Array<ArrayBuffer> {
  kernelFile ??= Deno.readFileSync(new URL("./kernels/llama.wasm", import.meta.url));
  return kernelFile;
}

/**
 * A short hash (FNV-1a, 32 bits, hex) of llama.wasm: caches of measured timings (the hardware profile)
 * key on it, so rebuilt kernels are measured again.
 */
export function kernelId(): string {
  if (kernelHash) return kernelHash;
  const bytes = kernelBytes();
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  kernelHash = (h >>> 0).toString(16).padStart(8, "0");
  return kernelHash;
}

/** The compiled kernels (compiled once per process; the file is committed, built by scripts/build_wasm.sh). */
export function kernelModule(): Promise<WebAssembly.Module> {
  compiled ??= WebAssembly.compile(kernelBytes());
  return compiled;
}

/** The default thread count: the cores this process may use. */
export function defaultThreads(): number {
  return Math.max(1, navigator.hardwareConcurrency || 1);
}

/** The process's shared runtimes by thread count (see {@link WasmRuntime.shared}). */
const sharedRuntimes = new Map<number, Promise<WasmRuntime>>();

/** One memory, its allocator and its threads. */
export class WasmRuntime {
  /** Holders of this runtime; {@link release} by the last ends it. */
  private refs = 1;
  private top: number;
  private workers: Worker[] = [];
  private disposed = false;
  private readyAt = 0;
  private threadsReady = false;
  private failure: string | undefined;

  private constructor(
    readonly memory: WebAssembly.Memory,
    readonly exports: KernelExports,
    private readonly module: WebAssembly.Module,
    /** Threads that run each forward, the caller's included. */
    readonly threads: number,
    /** Address of the Pool struct. */
    readonly pool: number,
    heapBase: number,
  ) {
    this.top = heapBase;
  }

  /**
   * Compile (once), make the memory and start `threads - 1` workers (not waited for: see
   * {@link ensureThreads}).
   */
  static async create(threads = 1): Promise<WasmRuntime> {
    if (!Number.isInteger(threads) || threads < 1 || threads > 64) {
      throw new RangeError(`wasm backend: threads must be an integer in [1, 64], got ${threads}`);
    }
    const module = await kernelModule();
    const memory = new WebAssembly.Memory({ initial: 32, maximum: 65536, shared: true });
    const instance = await WebAssembly.instantiate(module, { env: { memory } });
    const exports = instance.exports as unknown as KernelExports;
    exports.init();
    for (
      const [name, size, fields] of [
        ["Ctx", exports.ctx_size(), CTX_FIELDS],
        ["Layer", exports.layer_size(), LAYER_FIELDS],
        ["Pool", exports.pool_size(), POOL_FIELDS],
      ] as const
    ) {
      if (size !== 4 * fields.length) {
        throw new Error(
          `llama.wasm: struct ${name} is ${size} bytes but layout.ts lists ${fields.length} fields`,
        );
      }
    }
    const heapBase = Number(exports.__heap_base.value);
    const rt = new WasmRuntime(memory, exports, module, threads, 0, heapBase);
    const pool = rt.alloc(4 * POOL_FIELDS.length);
    (rt as { pool: number }).pool = pool;
    const pv = new StructView(memory, pool, POOL_FIELDS);
    pv.setInt("n_threads", threads);
    rt.startWorkers(pv.getInt("job_gen"));
    return rt;
  }

  /**
   * Start the worker threads without waiting for them: a Worker started from a Worker takes ~0.5 s to
   * run its first line in Deno 2.9 (the server's models load in the engine worker), so the threads come
   * up while the weights load, and {@link ensureThreads} waits for any still missing before the first
   * forward. Each thread counts itself in at `readyAt` right before entering the kernels' job loop.
   */
  private startWorkers(seen: number): void {
    this.readyAt = this.alloc(4, 4);
    for (let tid = 1; tid < this.threads; tid++) {
      const stack = this.alloc(WORKER_STACK, 16);
      const w = new Worker(new URL("./thread_worker.ts", import.meta.url), { type: "module" });
      this.workers.push(w);
      w.onerror = (e) => {
        e.preventDefault();
        this.failure ??= `wasm thread ${tid}: ${e.message}`;
      };
      w.postMessage({
        module: this.module,
        memory: this.memory,
        pool: this.pool,
        tid,
        seen,
        stackTop: stack + WORKER_STACK,
        readyAt: this.readyAt,
      });
    }
  }

  /**
   * Block until every worker thread is in its job loop (a forward's barriers need all of them): returns
   * at once after the first time; throws when a thread failed or did not start within `timeoutMs`.
   */
  ensureThreads(timeoutMs = 30_000): void {
    if (this.threadsReady) return;
    if (this.disposed) throw new Error("wasm backend: the runtime is disposed");
    const count = new Int32Array(this.memory.buffer, this.readyAt, 1);
    const deadline = performance.now() + timeoutMs;
    for (let c = Atomics.load(count, 0); c < this.threads - 1; c = Atomics.load(count, 0)) {
      if (this.failure) throw new Error(this.failure);
      if (performance.now() > deadline) {
        throw new Error(
          `wasm backend: ${this.threads - 1 - c} of ${this.threads - 1} worker threads did not start within ${
            timeoutMs / 1000
          } s`,
        );
      }
      Atomics.wait(count, 0, c, 20);
    }
    this.threadsReady = true;
  }

  /** Allocate `bytes` (zeroed: fresh memory, never reused), aligned; grows the memory as needed. */
  alloc(bytes: number, align = 64): number {
    const at = Math.ceil(this.top / align) * align;
    const end = at + bytes;
    if (end > MAX_WASM_BYTES) {
      throw new RangeError(
        `wasm backend: ${
          Math.ceil(end / 2 ** 20)
        } MiB needed for weights, KV cache and scratch, over wasm32's ` +
          `4096 MiB limit (use a smaller --context or quantized weights)`,
      );
    }
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
    this.top = end;
    return at;
  }

  /** Bytes allocated so far. */
  get used(): number {
    return this.top;
  }

  /** A view of `n` floats at `ptr`. */
  f32(ptr: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, n);
  }

  /** A view of `n` bytes at `ptr`. */
  u8(ptr: number, n: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr, n);
  }

  /** A view of `n` int32 at `ptr`. */
  i32(ptr: number, n: number): Int32Array {
    return new Int32Array(this.memory.buffer, ptr, n);
  }

  /** A view of `n` int16 at `ptr`. */
  i16(ptr: number, n: number): Int16Array {
    return new Int16Array(this.memory.buffer, ptr, n);
  }

  /** Copy `bytes` into fresh memory; returns the address. */
  upload(bytes: Uint8Array, align = 64): number {
    const at = this.alloc(bytes.byteLength, align);
    this.u8(at, bytes.byteLength).set(bytes);
    return at;
  }

  /**
   * The process's runtime for `threads` threads, shared by every model loaded with that count (the
   * target and the draft): one set of worker threads, so the draft's forwards do not compete for the
   * cores with the target's spinning threads (on 2 cores that cost a speculative step ~5 ms). The caller
   * holds one reference and gives it back with {@link release}. Memory is never reused: a model's bytes
   * return when the last holder releases the runtime.
   */
  static async shared(threads = 1): Promise<WasmRuntime> {
    let p = sharedRuntimes.get(threads);
    if (p) {
      const rt = await p;
      if (!rt.disposed) {
        rt.refs++;
        return rt;
      }
    }
    p = WasmRuntime.create(threads);
    sharedRuntimes.set(threads, p);
    p.catch(() => sharedRuntimes.delete(threads));
    const rt = await p;
    rt.onDispose = () => {
      if (sharedRuntimes.get(threads) === p) sharedRuntimes.delete(threads);
    };
    return rt;
  }

  private onDispose?: () => void;

  /** Give back one reference; the last ends the threads. */
  release(): void {
    if (this.disposed) return;
    if (--this.refs <= 0) this.dispose();
  }

  /** End the worker threads now, whoever else holds the runtime (the memory goes with the last reference). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.workers.length) this.exports.stop_workers(this.pool);
    for (const w of this.workers) w.terminate();
    this.workers = [];
    this.onDispose?.();
  }
}
