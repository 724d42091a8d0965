/**
 * Coalescing the forwards of concurrent streams into batched ones. Each stream decodes with its own
 * unchanged algorithm (AR, a speculative method) against {@link SequenceView}s: models of one sequence
 * whose `forward` only queues its part here. A {@link Batcher} per model runs the queued parts as one
 * {@link MultiSequence.forwardBatch}: the weights are read once for every stream, which is where a
 * forward of n tokens costs little more than one.
 *
 * When to run: a {@link StreamGroup} knows every registered stream and whether it waits on a forward
 * (of either model). Once all of them wait, the queued forwards of one model run (the draft's first, so
 * the streams meet again at the target's); a stream that is busy elsewhere (its consumer, a yield to the event loop) only gets a
 * macrotask: a timer then runs what is queued, so no stream waits on another's slow client.
 *
 * Exactness does not depend on any of this: the backends compute each token alone whatever shares its
 * forward (see MultiSequence), and each stream draws its random numbers from its own seeded generator.
 *
 * @module
 */

import type { ForwardInput } from "../model/causal_lm.ts";
import type { MultiSequence, SequenceInput } from "../model/capabilities.ts";

/** Longest stretch (ms) of batched forwards without a turn of the event loop. */
const YIELD_MS = 10;

/** What one batched forward ran (for metrics). */
export interface BatchRecord {
  /** Which model: "target" or "draft". */
  model: string;
  /** Streams (parts) in the forward. */
  streams: number;
  /** Tokens in the forward, all parts together. */
  tokens: number;
}

interface Queued {
  part: SequenceInput;
  resolve: (logits: Float32Array) => void;
  reject: (e: unknown) => void;
}

/** The streams of one engine, and the batchers of its models: decides when queued forwards run. */
export class StreamGroup {
  private readonly batchers: Batcher[] = [];
  private active = 0;
  private waiting = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private flushing = false;
  private lastYield = performance.now();
  /** A macrotask for the event loop is pending; it runs the next flush. */
  private yielding = false;

  /** @param onBatch told of every batched forward (metrics) */
  constructor(private readonly onBatch?: (r: BatchRecord) => void) {}

  /** A batcher over `model` in this group; `name` labels its records. */
  batcher(model: MultiSequence, name: string): Batcher {
    const b = new Batcher(this, model, name);
    this.batchers.push(b);
    return b;
  }

  /** Streams registered now. */
  get streams(): number {
    return this.active;
  }

  /** A stream starts decoding: its forwards join the batches until {@link StreamGroup.leave}. */
  join(): void {
    this.active++;
  }

  /** A stream ended (or was cancelled): the others no longer wait for it. */
  leave(): void {
    this.active--;
    this.poke();
  }

  /** @internal A stream queued a forward. */
  queued(): void {
    this.waiting++;
    this.poke();
  }

  /** @internal Forwards of `n` streams were answered. */
  answered(n: number): void {
    this.waiting -= n;
  }

  /** @internal The forward of one batcher ran: for its metrics. */
  record(r: BatchRecord): void {
    this.onBatch?.(r);
  }

  /** Run now if every stream waits; else make sure a timer will. */
  private poke(): void {
    if (this.flushing || this.yielding || !this.batchers.some((b) => b.pending > 0)) return;
    if (this.waiting >= this.active) {
      this.flush();
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, 0);
  }

  /**
   * Run the first queue that holds forwards (in creation order: the draft's is made first), then look
   * again. One model at a time keeps the streams in phase: streams waiting on the target wait while the
   * others draft, so the next target forward holds all of them (running both queues at once measured
   * 5.3 of 8 streams per target forward for SmolLM2 + its draft, as drafting and verifying streams
   * alternated).
   */
  private flush(): void {
    if (this.flushing || this.yielding) return;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const next = this.batchers.find((b) => b.pending > 0);
    if (!next) return;
    // Every stream waits here, so this is where the event loop gets its turn (messages: a cancel; I/O):
    // at most every YIELD_MS of batches, one macrotask before the next. The streams themselves need not
    // yield (a stream that did would miss the batch the others' timer ran: measured, its ITL doubled).
    if (performance.now() - this.lastYield > YIELD_MS) {
      this.yielding = true;
      setTimeout(() => {
        this.yielding = false;
        this.lastYield = performance.now();
        this.flush();
      }, 0);
      return;
    }
    this.flushing = true;
    next.run().finally(() => {
      this.flushing = false;
      // Streams answered above continue in microtasks; whatever they queue meanwhile waits for this.
      queueMicrotask(() => this.poke());
    });
  }
}

/** The queue of one model's forwards: a part per stream, run as one batched forward. */
export class Batcher {
  private queue: Queued[] = [];

  /** @internal Made by {@link StreamGroup.batcher}. */
  constructor(
    private readonly group: StreamGroup,
    readonly model: MultiSequence,
    readonly name: string,
  ) {}

  /** Forwards queued and not yet run. */
  get pending(): number {
    return this.queue.length;
  }

  /** Streams registered in this batcher's group now. */
  get streams(): number {
    return this.group.streams;
  }

  /** Queue sequence `seq`'s forward; resolves with its logits once the batch ran. */
  forward(seq: number, input: ForwardInput): Promise<Float32Array> {
    return new Promise<Float32Array>((resolve, reject) => {
      this.queue.push({ part: { seq, input }, resolve, reject });
      this.group.queued();
    });
  }

  /**
   * @internal Run the queue as one forward. A batch the model refuses (one part's mask or capacity) runs
   * part by part instead, so only the faulty stream gets the error.
   */
  async run(): Promise<void> {
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    this.group.record({
      model: this.name,
      streams: batch.length,
      tokens: batch.reduce((a, q) => a + q.part.input.tokens.length, 0),
    });
    let out: Float32Array[] | undefined;
    try {
      out = await this.model.forwardBatch(batch.map((q) => q.part));
    } catch {
      out = undefined;
    }
    this.group.answered(batch.length);
    if (out) {
      batch.forEach((q, i) => q.resolve(out[i]));
      return;
    }
    for (const q of batch) {
      try {
        q.resolve((await this.model.forwardBatch([q.part]))[0]);
      } catch (e) {
        q.reject(e);
      }
    }
  }
}
