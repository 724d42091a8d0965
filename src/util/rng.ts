/**
 * A small, seedable PRNG (xoshiro128**, seeded through splitmix32) with explicit state, so sampling and
 * speculative algorithms are reproducible pure functions of (inputs, seed).
 *
 * @module
 */

/** A stream of uniforms in [0, 1): what samplers and verifiers draw from. */
export interface UniformSource {
  next(): number;
}

/** Seeded random source. `next()` is uniform in [0, 1) with 53 random bits. */
export class Rng implements UniformSource {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** @param seed any integer; equal seeds give equal streams */
  constructor(seed: number) {
    let x = (Math.trunc(seed) ^ 0x9e3779b9) >>> 0;
    const sm = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = sm();
    this.s1 = sm();
    this.s2 = sm();
    this.s3 = sm();
  }

  /** Next 32 random bits as an unsigned integer. */
  nextU32(): number {
    const r = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return r;
  }

  /** Uniform double in [0, 1). */
  next(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * `count` uniforms in [0, 1) exact in f32 (24 random bits each: rounding a double to f32 could give 1),
 * for kernels that draw on the device with the host's seeded stream.
 */
export function f32Uniforms(rng: Rng, count: number): Float32Array {
  return Float32Array.from({ length: count }, () => (rng.nextU32() >>> 8) / 16777216);
}

/** A {@link UniformSource} replaying fixed values (the device's uniforms, for the CPU oracle). */
export class ReplayUniforms implements UniformSource {
  private at = 0;
  constructor(private readonly values: ArrayLike<number>) {}

  /** How many values were drawn so far. */
  get used(): number {
    return this.at;
  }

  next(): number {
    if (this.at >= this.values.length) {
      throw new RangeError(`ReplayUniforms: all ${this.values.length} values were drawn`);
    }
    return this.values[this.at++];
  }
}
