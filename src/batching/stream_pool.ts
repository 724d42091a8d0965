/**
 * The sequences of a loaded pair, leased to concurrent streams: lease i is sequence i of the target
 * and of the draft, as {@link SequenceView}s whose forwards batch with the other leases'
 * ({@link StreamGroup}). At most `size` streams decode at once; the server queues the rest.
 *
 * @module
 */

import type { CausalLM } from "../model/causal_lm.ts";
import type { MultiSequence } from "../model/capabilities.ts";
import { type Batcher, type BatchRecord, StreamGroup } from "./batcher.ts";
import { SequenceView } from "./sequence_view.ts";

/** One stream's models, until {@link StreamLease.release}. */
export interface StreamLease {
  /** The sequence both models give this stream. */
  readonly seq: number;
  readonly target: CausalLM;
  readonly draft?: CausalLM;
  /** The stream ended: its sequence is free, and the batches stop waiting for it (idempotent). */
  release(): void;
}

/** Leases of a target's (and draft's) sequences to concurrent streams. */
export class StreamPool {
  /** Streams that may decode at once: the sequences both models hold. */
  readonly size: number;
  private readonly group: StreamGroup;
  private readonly targetBatcher: Batcher;
  private readonly draftBatcher?: Batcher;
  private readonly free: number[];
  private readonly waiters: (() => void)[] = [];

  /** Tokens a stream holds (prompt + generated): the pair's context cut to one sequence's cache. */
  readonly context: number;

  /**
   * @param o.first the first sequence leased (default 0; 1 keeps sequence 0, the models' own `kv`, for
   *   whoever measures on the models directly)
   * @param o.onBatch told of every batched forward (metrics)
   */
  constructor(
    private readonly target: CausalLM & MultiSequence,
    private readonly draft?: CausalLM & MultiSequence,
    o: { first?: number; onBatch?: (r: BatchRecord) => void } = {},
  ) {
    const first = o.first ?? 0;
    this.size = Math.min(target.sequences, draft?.sequences ?? Infinity) - first;
    if (this.size < 1) throw new RangeError(`stream pool: no sequence from ${first} on`);
    this.group = new StreamGroup(o.onBatch);
    // The draft's queue runs first in a flush: its forwards lead to the target's.
    if (draft) this.draftBatcher = this.group.batcher(draft, "draft");
    this.targetBatcher = this.group.batcher(target, "target");
    this.free = Array.from({ length: this.size }, (_, i) => first + this.size - 1 - i);
    this.context = Math.min(
      target.config.maxPositions,
      target.cacheOf(first).capacity,
      draft?.config.maxPositions ?? Infinity,
      draft?.cacheOf(first).capacity ?? Infinity,
    );
  }

  /** Streams decoding now. */
  get active(): number {
    return this.size - this.free.length;
  }

  /**
   * A free sequence's models; waits (first come, first served) while all `size` are leased: the caller
   * admits at most `size` streams, but a stream its client left may still be finishing its last step
   * when the next one is admitted.
   */
  async acquire(): Promise<StreamLease> {
    let free = this.free.pop();
    while (free === undefined) {
      await new Promise<void>((res) => this.waiters.push(res));
      free = this.free.pop();
    }
    const seq = free;
    this.group.join();
    let released = false;
    return {
      seq,
      target: new SequenceView(this.targetBatcher, seq, this.target),
      draft: this.draft && this.draftBatcher && new SequenceView(this.draftBatcher, seq, this.draft),
      release: () => {
        if (released) return;
        released = true;
        this.free.push(seq);
        this.group.leave();
        this.waiters.shift()?.();
      },
    };
  }
}
