/**
 * Startup stages: what the runtime reports while it opens models and profiles the adapter, so a
 * command can show "[i/n] what ..." lines with timings (serve) or nothing at all (generate, profile).
 *
 * @module
 */

/** Runs one named startup stage; a reporter may print around it. */
export interface Stages {
  /** Run `fn` as the stage `what`; `outcome` describes its result in one phrase. */
  stage<T>(what: string, fn: () => Promise<T>, outcome?: (v: T) => string): Promise<T>;
}

/** Stages that report nothing. */
export const SILENT_STAGES: Stages = { stage: (_what, fn) => fn() };

/** Numbered stages with their time, one line before and one after each: "[i/n] what: outcome (ms)". */
export class Progress implements Stages {
  private i = 0;
  private readonly t0 = performance.now();

  /** `total` stages expected; lines go to `write` (e.g. stderr). */
  constructor(private readonly total: number, private readonly write: (line: string) => void) {}

  /** Run one stage; prints "[i/n] what ..." then its outcome and duration. */
  async stage<T>(what: string, fn: () => Promise<T>, outcome: (v: T) => string = () => "done"): Promise<T> {
    const n = ++this.i;
    this.write(`[${n}/${this.total}] ${what} ...`);
    const t = performance.now();
    const v = await fn();
    this.write(`[${n}/${this.total}] ${what}: ${outcome(v)} (${(performance.now() - t).toFixed(0)} ms)`);
    return v;
  }

  /** Seconds since this reporter was made (startup), one decimal. */
  get elapsed(): string {
    return ((performance.now() - this.t0) / 1000).toFixed(1);
  }
}
