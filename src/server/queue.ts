/**
 * Generations run in arrival order (FIFO), up to `maxRunning` at once (batched streams:
 * `serve --max-batch N`; one at a time by default), with a bounded number waiting. A full queue is refused at admission (429
 * with Retry-After) rather than letting latency grow without bound; a request whose client goes away leaves
 * the queue (waiting) or is cancelled at its next step (running); shutdown drains, then cancels what is
 * left.
 *
 * The Retry-After of a refusal is the expected wait for the work ahead: what the running generations have
 * left plus each waiting one's expected duration, over the `maxRunning` that run at once, from its
 * `max_tokens` (its {@link JobCost}) and the measured time per generated token and share of `max_tokens`
 * that generations actually use.
 *
 * @module
 */

import { ApiError } from "./errors.ts";

/** Why a slot's generation was cancelled. */
export type CancelCause = "client" | "shutdown";

/** Options of a {@link Scheduler}. */
export interface SchedulerOptions {
  /** Most requests waiting behind the running ones; one more is refused with 429. */
  maxQueue: number;
  /** Most generations running at once (default 1). */
  maxRunning?: number;
  /** Clock in ms (default `performance.now`); tests pass a fake one. */
  now?: () => number;
}

/** What a generation is expected to cost, for the wait told to refused clients (Retry-After). */
export interface JobCost {
  /** Most tokens it may generate (its max_tokens): the upper bound of its decoding time. */
  maxTokens: number;
}

/** Expected duration of a job about which nothing is known yet (ms). */
export const DEFAULT_JOB_MS = 1000;

/** Weight of the newest measurement in the moving averages of the wait estimate. */
const EWMA = 0.2;

/** An exponential moving average whose first sample replaces the prior. */
class Average {
  private n = 0;
  constructor(private v: number) {}
  get value(): number {
    return this.v;
  }
  get measured(): boolean {
    return this.n > 0;
  }
  add(x: number): void {
    this.v = this.n++ === 0 ? x : (1 - EWMA) * this.v + EWMA * x;
  }
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
  /** When its job started (the scheduler's clock), once granted. */
  startedAt = 0;
  /** Tokens its job generated, once reported ({@link Slot.reportGenerated}). */
  generated: number | undefined;
  private readonly ac = new AbortController();
  private turn!: () => void;
  private refuse!: (e: unknown) => void;
  /** Resolves when this slot reaches the head of the queue. */
  readonly ready: Promise<void>;

  constructor(
    private readonly owner: Scheduler,
    client?: AbortSignal,
    /** What its job is expected to cost (none: an average job). */
    readonly cost?: JobCost,
  ) {
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

  /**
   * Tell the queue how many tokens this slot's job generated (call before the job resolves): its
   * duration per token and its share of `max_tokens` refine the wait told to refused clients.
   */
  reportGenerated(tokens: number): void {
    this.generated = tokens;
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
 * const slot = s.admit(request.signal, { maxTokens: 128 }); // throws ApiError 429 when 16 are waiting
 * const out = await slot.run(async (signal) => {
 *   const ids = await generate(signal);
 *   slot.reportGenerated(ids.length);
 *   return ids;
 * });
 * ```
 */
export class Scheduler {
  /** Most requests waiting behind the running ones. */
  readonly maxQueue: number;
  /** Most generations running at once. */
  readonly maxRunning: number;
  private readonly runningSlots = new Set<Slot>();
  private readonly waitingSlots: Slot[] = [];
  private draining = false;
  private idleWaiters: (() => void)[] = [];
  private readonly now: () => number;
  /** Duration of a job (ms): for jobs admitted without a cost, and before any token was measured. */
  private readonly jobMs = new Average(DEFAULT_JOB_MS);
  /** Duration per generated token, prefill included (ms). */
  private readonly tokenMs = new Average(0);
  /** Share of max_tokens that finished generations used (EOS and stop sequences end them early). */
  private readonly fill = new Average(1);

  constructor(opts: SchedulerOptions) {
    if (!Number.isInteger(opts.maxQueue) || opts.maxQueue < 0) {
      throw new RangeError(`maxQueue must be an integer >= 0, got ${opts.maxQueue}`);
    }
    const maxRunning = opts.maxRunning ?? 1;
    if (!Number.isInteger(maxRunning) || maxRunning < 1) {
      throw new RangeError(`maxRunning must be an integer >= 1, got ${maxRunning}`);
    }
    this.maxQueue = opts.maxQueue;
    this.maxRunning = maxRunning;
    this.now = opts.now ?? (() => performance.now());
  }

  /** Requests waiting (not counting the running ones). */
  get waiting(): number {
    return this.waitingSlots.length;
  }

  /** Generations running now (at most maxRunning). */
  get running(): number {
    return this.runningSlots.size;
  }

  /** True once {@link drain} began: new work is refused with 503. */
  get isDraining(): boolean {
    return this.draining;
  }

  /** Expected duration of a job of `cost` (ms), and its upper bound when one is known. */
  private expectedMs(cost: JobCost | undefined): { mean: number; max?: number } {
    if (!cost || !this.tokenMs.measured) return { mean: this.jobMs.value };
    const max = cost.maxTokens * this.tokenMs.value;
    return { mean: max * this.fill.value, max };
  }

  /**
   * The expected wait (ms) of a request admitted now before its generation starts: what the running
   * ones have left (each its expected duration minus the time it ran; once past that, its upper bound
   * minus the time it ran) plus the expected duration of each waiting one, shared by the maxRunning
   * that run at once.
   */
  expectedWaitMs(): number {
    if (this.runningSlots.size < this.maxRunning) return 0;
    let ms = 0;
    for (const slot of this.runningSlots) {
      const e = this.expectedMs(slot.cost);
      const ran = this.now() - slot.startedAt;
      ms += e.mean > ran ? e.mean - ran : Math.max(0, (e.max ?? 0) - ran);
    }
    for (const s of this.waitingSlots) ms += this.expectedMs(s.cost).mean;
    return ms / this.maxRunning;
  }

  /** Seconds a refused client should wait: {@link expectedWaitMs}, at least 1. */
  retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(this.expectedWaitMs() / 1000));
  }

  /**
   * Take a place in the queue, cancelled when `client` aborts. Throws {@link ApiError} 503 while
   * draining and 429 (with Retry-After, the expected wait) when `maxQueue` requests already wait.
   * `cost` (the request's max_tokens) makes the wait told to others exact for this job; without it the
   * job counts as an average one.
   */
  admit(client?: AbortSignal, cost?: JobCost): Slot {
    if (this.draining) {
      throw new ApiError(503, "the server is shutting down and accepts no new generations", {
        code: "shutting_down",
        headers: { "Retry-After": "5" },
      });
    }
    if (this.runningSlots.size >= this.maxRunning && this.waitingSlots.length >= this.maxQueue) {
      const after = this.retryAfterSeconds();
      throw new ApiError(
        429,
        `the generation queue is full (${this.waitingSlots.length} waiting, limit ${this.maxQueue}; ` +
          `about ${after} s of work ahead); retry after ${after} s`,
        { code: "queue_full", headers: { "Retry-After": String(after) } },
      );
    }
    const slot = new Slot(this, client, cost);
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
    if (!this.runningSlots.delete(slot)) return;
    this.measure(slot, this.now() - slot.startedAt);
    this.pump();
  }

  /** Learn from a job that ran `ms`: its duration, per token, and its share of max_tokens. */
  private measure(slot: Slot, ms: number): void {
    this.jobMs.add(ms);
    const g = slot.generated;
    if (g === undefined || g < 1) return; // nothing to divide by (failed, or cancelled at once)
    this.tokenMs.add(ms / g);
    // A cancelled job says nothing about how much of max_tokens a finished one uses.
    if (slot.cost && !slot.signal.aborted) this.fill.add(Math.min(1, g / slot.cost.maxTokens));
  }

  private pump(): void {
    while (this.runningSlots.size < this.maxRunning && this.waitingSlots.length) {
      const next = this.waitingSlots.shift()!;
      this.runningSlots.add(next);
      next.startedAt = this.now();
      next.grant();
    }
    this.notifyIdle();
  }

  private notifyIdle(): void {
    if (this.runningSlots.size || this.waitingSlots.length) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }

  /** Resolves once nothing runs or waits. */
  idle(): Promise<void> {
    if (!this.runningSlots.size && !this.waitingSlots.length) return Promise.resolve();
    return new Promise((res) => this.idleWaiters.push(res));
  }

  /** Cancel every waiting and running generation (cause "shutdown"). */
  cancelAll(): void {
    for (const s of [...this.waitingSlots]) s.cancel("shutdown");
    for (const s of [...this.runningSlots]) s.cancel("shutdown");
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
