/**
 * Letting the event loop run during long synchronous work: a CPU model's forward resolves in
 * microtasks, so a decoding loop that only awaits it never lets timers, I/O or messages (a cancel, a
 * disconnect, /health) through. {@link Yielder} waits for one macrotask whenever `everyMs` passed.
 *
 * @module
 */

/** Resolves after the event loop has run one turn (timers, I/O, messages). */
export function macrotask(): Promise<void> {
  return new Promise<void>((resolve) => setTimeout(resolve, 0));
}

/** Yields to the event loop at most every `everyMs` of work. */
export class Yielder {
  private last = performance.now();

  constructor(private readonly everyMs = 10) {}

  /** Wait one macrotask when `everyMs` passed since the last wait; otherwise return at once. */
  async maybe(): Promise<void> {
    if (performance.now() - this.last <= this.everyMs) return;
    await macrotask();
    this.last = performance.now();
  }
}
