/**
 * The engine worker's entry (started by {@link WorkerEngine.open} in worker_engine.ts): it opens a
 * {@link RuntimeEngine} (models, startup profile, default method) in this thread and runs generations
 * on request, posting every engine event back. Device waits and CPU kernels block only this thread.
 *
 * Generations run one at a time (the server's queue admits one), but each keeps its own id and
 * AbortController so a late cancel never touches the next one.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { RuntimeEngine } from "./runtime_engine.ts";
import type { EngineOpenRequest, FromWorker, ToWorker } from "./worker_engine.ts";
import { toWire } from "./worker_engine.ts";

let engine: RuntimeEngine | undefined;
const running = new Map<number, { ac: AbortController; done: Promise<void> }>();

const post = (m: FromWorker) => self.postMessage(m);

async function open(r: EngineOpenRequest): Promise<void> {
  engine = await RuntimeEngine.open(r);
  post({ type: "ready", info: engine.info });
}

async function decode(m: Extract<ToWorker, { type: "decode" }>, ac: AbortController): Promise<void> {
  try {
    if (!engine) throw new Error("the engine is not open");
    for await (const event of engine.decode(m.method, m.prompt, m.options, ac.signal)) {
      post({ type: "event", id: m.id, event });
    }
    post({ type: "end", id: m.id, liveAcceptance: engine.liveAcceptance() });
  } catch (e) {
    // The main thread rethrows it with this stack, and the HTTP layer logs it once.
    post({ type: "error", id: m.id, error: toWire(e) });
  } finally {
    running.delete(m.id);
  }
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.type === "open") {
    open(m.request).catch((err) => {
      post({ type: "failed", error: toWire(err) });
    });
  } else if (m.type === "decode") {
    const entry = { ac: new AbortController(), done: Promise.resolve() };
    running.set(m.id, entry); // before decode starts: it removes the entry when it ends
    entry.done = decode(m, entry.ac);
  } else if (m.type === "cancel") {
    running.get(m.id)?.ac.abort(new DOMException("cancelled", "AbortError"));
  } else if (m.type === "close") {
    // Stop what runs at its next step, and free the models only once nothing uses them.
    const all = [...running.values()];
    for (const r of all) r.ac.abort(new DOMException("closing", "AbortError"));
    Promise.allSettled(all.map((r) => r.done)).then(() => {
      engine?.close();
      post({ type: "closed" });
    });
  }
};
