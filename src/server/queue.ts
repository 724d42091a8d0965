/**
 * One model, one sequence at a time: generations run one after another in arrival order (FIFO), with a
 * bounded number waiting. A full queue is refused at admission (429 with Retry-After) rather than
 * letting latency grow without bound; a request whose client goes away leaves the queue (waiting) or is
 * cancelled at its next step (running); shutdown drains, then cancels what is left.
 *
 * @module
 */

import { ApiError } from "./errors.ts";

/** Why a slot's generation was cancelled. */
export type CancelCause = "client" | "shutdown";

/** Options of a {@link Scheduler}. */
export interface SchedulerOptions {
  /** Most requests waiting behind the running one; one more is refused with 429. */
  maxQueue: number;
}

/**
 * A place in the queue, given by {@link Scheduler.admit}. Call {@link Slot.run} at once: the slot holds
 * its place until its job has run.
 */
export class Slot {
  /** Aborted when the client disconnects or the server cancels work at shutdown. */
  readonly signal: AbortSignal;
  /** Set when `signal` aborted. */
  cause: CancelCause | undefined;
  private readonly ac = new AbortController();
  private turn!: () => void;
  private refuse!: (e: unknown) => void;
  /** Resolves when this slot reaches the head of the queue. */
  readonly ready: Promise<void>;

  constructor(private readonly owner: Scheduler, client?: AbortSignal) {
    this.signal = this.ac.signal;
    this.ready = new Promise<void>((res, rej) => {
      this.turn = res;
      this.refuse = rej;
    });
    this.ready.catch(() => {}); // a refused slot whose job never awaited it is not an unhandled rejection
    if (client?.aborted) this.cancel("client");
    else client?.addEventListener("abort", () => this.cancel("client"), { once: true });
  }

  /** Abort this slot's work (idempotent); a waiting slot leaves the queue. */
  cancel(cause: CancelCause): void {
    if (this.ac.signal.aborted) return;
    this.cause = cause;
    this.ac.abort(new DOMException(`cancelled by ${cause}`, "AbortError"));
    this.owner.withdraw(this);
  }

  /** @internal Called by the scheduler when the slot reaches the head. */
  grant(): void {
    this.turn();
  }

  /** @internal Called by the scheduler when a waiting slot is withdrawn. */
  deny(): void {
    this.refuse(this.signal.reason);
  }

  /**
   * Wait for this slot's turn, run `job` with the slot's signal, then free the slot for the next one.
   * Rejects with the abort reason when cancelled while still waiting.
   */
  async run<T>(job: (signal: AbortSignal) => Promise<T>): Promise<T> {
    try {
      await this.ready;
      return await job(this.signal);
    } finally {
      this.owner.release(this);
    }
  }
}

/**
 * FIFO admission and execution of generations.
 *
 * @example
 * ```ts
 * const s = new Scheduler({ maxQueue: 16 });
 * const slot = s.admit(request.signal);          // throws ApiError 429 when 16 are waiting
 * const out = await slot.run((signal) => generate(signal));
 * ```
 */
export class Scheduler {
  /** Most requests waiting behind the running one. */
  readonly maxQueue: number;
  private active: Slot | undefined;
  private readonly waitingSlots: Slot[] = [];
  private draining = false;
  private idleWaiters: (() => void)[] = [];
  /** Exponential moving average of job durations (ms), for Retry-After. */
  private avgJobMs = 1000;
  private jobStart = 0;

  constructor(opts: SchedulerOptions) {
    if (!Number.isInteger(opts.maxQueue) || opts.maxQueue < 0) {
      throw new RangeError(`maxQueue must be an integer >= 0, got ${opts.maxQueue}`);
    }
    this.maxQueue = opts.maxQueue;
  }

  /** Requests waiting (not counting the running one). */
  get waiting(): number {
    return this.waitingSlots.length;
  }

  /** 1 while a generation runs, else 0. */
  get running(): number {
    return this.active ? 1 : 0;
  }

  /** True once {@link drain} began: new work is refused with 503. */
  get isDraining(): boolean {
    return this.draining;
  }

  /** Seconds a refused client should wait: the expected time until a place frees up. */
  retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(this.avgJobMs / 1000));
  }

  /**
   * Take a place in the queue, cancelled when `client` aborts. Throws {@link ApiError} 503 while
   * draining and 429 (with Retry-After) when `maxQueue` requests already wait.
   */
  admit(client?: AbortSignal): Slot {
    if (this.draining) {
      throw new ApiError(503, "the server is shutting down and accepts no new generations", {
        code: "shutting_down",
        headers: { "Retry-After": "5" },
      });
    }
    if (this.active && this.waitingSlots.length >= this.maxQueue) {
      const after = this.retryAfterSeconds();
      throw new ApiError(
        429,
        `the generation queue is full (${this.waitingSlots.length} waiting, limit ${this.maxQueue}); retry after ${after} s`,
        { code: "queue_full", headers: { "Retry-After": String(after) } },
      );
    }
    const slot = new Slot(this, client);
    if (slot.signal.aborted) {
      slot.deny();
      return slot;
    }
    this.waitingSlots.push(slot);
    this.pump();
    return slot;
  }

  /** @internal A slot cancelled before its turn leaves the queue. */
  withdraw(slot: Slot): void {
    const i = this.waitingSlots.indexOf(slot);
    if (i < 0) return; // running (its job sees the signal) or already done
    this.waitingSlots.splice(i, 1);
    slot.deny();
    this.notifyIdle();
  }

  /** @internal The slot's job ended (or it never ran): the next one starts. */
  release(slot: Slot): void {
    if (this.active !== slot) return;
    const ms = performance.now() - this.jobStart;
    this.avgJobMs = 0.8 * this.avgJobMs + 0.2 * ms;
    this.active = undefined;
    this.pump();
  }

  private pump(): void {
    if (!this.active) {
      const next = this.waitingSlots.shift();
      if (next) {
        this.active = next;
        this.jobStart = performance.now();
        next.grant();
      }
    }
    this.notifyIdle();
  }

  private notifyIdle(): void {
    if (this.active || this.waitingSlots.length) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }

  /** Resolves once nothing runs or waits. */
  idle(): Promise<void> {
    if (!this.active && !this.waitingSlots.length) return Promise.resolve();
    return new Promise((res) => this.idleWaiters.push(res));
  }

  /** Cancel every waiting and running generation (cause "shutdown"). */
  cancelAll(): void {
    for (const s of [...this.waitingSlots]) s.cancel("shutdown");
    this.active?.cancel("shutdown");
  }

  /**
   * Stop admitting work, let what is queued and running finish for up to `timeoutMs`, then cancel the
   * rest (each at its next step) and wait for it to end. Returns whether everything finished in time.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    this.draining = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      this.idle().then(() => false),
      new Promise<boolean>((res) => timer = setTimeout(() => res(true), timeoutMs)),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.cancelAll();
      await this.idle();
    }
    return !timedOut;
  }
}
