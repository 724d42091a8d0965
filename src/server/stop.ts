/**
 * Stop sequences over streamed text: generation ends when the text contains one, and the output is cut
 * right before it. While streaming, text that could still become the start of a stop sequence is held
 * back, so a client never receives part of a stop sequence.
 *
 * @module
 */

/**
 * Filters streamed text against stop sequences.
 *
 * @example
 * ```ts
 * const f = new StopFilter(["\n\n"]);
 * f.push("Hello\n");   // { text: "Hello", stopped: false }  ("\n" held back)
 * f.push("\nWorld");   // { text: "", stopped: true }
 * ```
 */
export class StopFilter {
  private held = "";
  /** True once a stop sequence was seen; later pushes return nothing. */
  stopped = false;
  private readonly stops: string[];

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  /** Add generated text; returns the text now safe to emit, and whether a stop sequence completed. */
  push(text: string): { text: string; stopped: boolean } {
    if (this.stopped) return { text: "", stopped: true };
    const buf = this.held + text;
    // The earliest stop sequence wins; held text never contains a whole one, so scanning buf suffices.
    let cut = -1;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.stopped = true;
      this.held = "";
      return { text: buf.slice(0, cut), stopped: true };
    }
    const keep = this.longestPartial(buf);
    this.held = buf.slice(buf.length - keep);
    return { text: buf.slice(0, buf.length - keep), stopped: false };
  }

  /** End of generation: the held-back text was not a stop sequence after all. */
  flush(): string {
    const t = this.stopped ? "" : this.held;
    this.held = "";
    return t;
  }

  /** Length of the longest suffix of `buf` that is a proper prefix of some stop sequence. */
  private longestPartial(buf: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, buf.length); k > best; k--) {
        if (buf.endsWith(s.slice(0, k))) {
          best = k;
          break;
        }
      }
    }
    return best;
  }
}
