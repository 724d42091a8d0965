/**
 * The engine worker's entry (started by {@link WorkerEngine.open} in worker_engine.ts): it opens a
 * {@link RuntimeEngine} (models, startup profile, default method) in this thread and runs generations
 * on request, posting every engine event back. Device waits and CPU kernels block only this thread.
 *
 * Generations run one after another in arrival order (the models have one KV cache each), or with
 * batched streams (`--max-batch N`) all at once as they arrive (the HTTP side admits at most N), each on
 * its own sequence, their forwards batched (src/batching/); a cancel reaches a running one at its next
 * step because the loop (with batched streams: the batcher, where they all wait) yields to the event
 * loop every ~10 ms (a CPU forward otherwise resolves in microtasks and no message would be read until
 * it ended).
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { Yielder } from "../util/macrotask.ts";
import { RuntimeEngine } from "./runtime_engine.ts";
import { type EngineOpenRequest, type FromWorker, toWire, type ToWorker } from "./engine_protocol.ts";

type DecodeMessage = Extract<ToWorker, { type: "decode" }>;
type ChooseMessage = Extract<ToWorker, { type: "choose" }>;

let engine: RuntimeEngine | undefined;
/** Decodes not yet finished (running or waiting), by id. */
const controllers = new Map<number, AbortController>();
/** The tail of the run queue: each decode (one stream) or choice starts when the previous one ended. */
let tail: Promise<void> = Promise.resolve();
/** Batched streams: the decodes running now (they do not queue behind each other). */
const running = new Set<Promise<void>>();

const post = (m: FromWorker) => self.postMessage(m);

async function open(r: EngineOpenRequest): Promise<void> {
  engine = await RuntimeEngine.open(r, (record) => post({ type: "batch", record }));
  post({ type: "ready", info: engine.info });
}

async function decode(m: DecodeMessage, ac: AbortController): Promise<void> {
  const yielder = new Yielder(10);
  try {
    if (!engine) throw new Error("the engine is not open");
    let live = engine.liveAcceptance();
    for await (const event of engine.decode(m.method, m.prompt, m.options, ac.signal)) {
      post({ type: "event", id: m.id, event });
      if (event.type === "step") {
        const now = engine.liveAcceptance();
        if (now && now !== live) post({ type: "acceptance", acceptance: live = now });
      }
      // Batched streams yield in the batcher, where they all wait (src/batching/batcher.ts).
      if (engine.maxStreams <= 1) await yielder.maybe();
    }
    post({ type: "end", id: m.id, liveAcceptance: engine.liveAcceptance() });
  } catch (e) {
    // The main thread rethrows it with this stack, and the HTTP layer logs it once.
    post({ type: "error", id: m.id, error: toWire(e) });
  } finally {
    controllers.delete(m.id);
  }
}

/** Auto's choice for one generation (it may measure on the models, so it waits its turn like a decode). */
async function choose(m: ChooseMessage): Promise<void> {
  try {
    if (!engine) throw new Error("the engine is not open");
    post({ type: "chosen", id: m.id, decision: await engine.choose(m.prompt, m.request) });
  } catch (e) {
    post({ type: "error", id: m.id, error: toWire(e) });
  }
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  if (m.type === "open") {
    open(m.request).catch((err) => post({ type: "failed", error: toWire(err) }));
  } else if (m.type === "decode") {
    const ac = new AbortController();
    controllers.set(m.id, ac);
    if (engine && engine.maxStreams > 1) {
      const run = decode(m, ac).finally(() => running.delete(run));
      running.add(run);
    } else tail = tail.then(() => decode(m, ac));
  } else if (m.type === "choose") {
    tail = tail.then(() => choose(m));
  } else if (m.type === "cancel") {
    controllers.get(m.id)?.abort(new DOMException("cancelled", "AbortError"));
  } else if (m.type === "close") {
    // Stop what runs at its next step (and what waits), free the models once nothing uses them.
    for (const ac of controllers.values()) ac.abort(new DOMException("closing", "AbortError"));
    Promise.all([tail, ...running]).then(() => {
      engine?.close();
      post({ type: "closed" });
    });
  }
};
