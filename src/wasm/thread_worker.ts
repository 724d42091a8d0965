/**
 * A wasm backend thread (runtime.ts): instantiates the kernels over the shared memory with its own
 * stack, says it is ready, and runs jobs in worker_loop until the runtime stops it.
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
}

self.onmessage = (e: MessageEvent<Start>) => {
  const { module, memory, pool, tid, seen, stackTop } = e.data;
  const exports = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as KernelExports;
  exports.__stack_pointer.value = stackTop;
  self.postMessage({ ready: tid });
  exports.worker_loop(pool, tid, seen);
  self.close();
};
