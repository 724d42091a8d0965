/**
 * Small statistics helpers for benchmarks.
 *
 * @module
 */

/** Median of `xs` (the mean of the two middle values for an even count). */
export function median(xs: number[]): number {
  if (xs.length === 0) throw new RangeError("median of no values");
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}
