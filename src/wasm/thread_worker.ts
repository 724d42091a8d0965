/**
 * A wasm backend thread (runtime.ts): instantiates the kernels over the shared memory with its own
 * stack, counts itself in (an atomic add the runtime waits on: messages between nested Workers are
 * slow), and runs jobs in worker_loop until the runtime stops it.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import type { KernelExports } from "./runtime.ts";

interface Start {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  pool: number;
  tid: number;
  seen: number;
  stackTop: number;
  /** Address of the int32 every thread adds 1 to when it enters the job loop. */
  readyAt: number;
}

self.onmessage = (e: MessageEvent<Start>) => {
  const { module, memory, pool, tid, seen, stackTop, readyAt } = e.data;
  const exports = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as KernelExports;
  exports.__stack_pointer.value = stackTop;
  const ready = new Int32Array(memory.buffer, readyAt, 1);
  Atomics.add(ready, 0, 1);
  Atomics.notify(ready, 0);
  exports.worker_loop(pool, tid, seen);
  self.close();
};
