/**
 * Plain Float32Array reference ops of the Llama forward pass: the oracle every GPU kernel is tested
 * against. Storage is f32, arithmetic is JS doubles (so accumulation is at least as precise as the
 * GPU's f32). Clarity over speed.
 *
 * @module
 */

/**
 * RMSNorm: out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i].
 * @param x (d) input row (may be a subarray)
 * @param w (d) gain
 * @param out (d) output; may alias x
 */
export function rmsNorm(x: Float32Array, w: Float32Array, eps: number, out: Float32Array): void {
  const d = w.length;
  let ss = 0;
  for (let i = 0; i < d; i++) ss += x[i] * x[i];
  const r = 1 / Math.sqrt(ss / d + eps);
  for (let i = 0; i < d; i++) out[i] = x[i] * r * w[i];
}

/**
 * Matrix-vector product with an HF Linear weight: out[o] = sum_i w[o, i] * x[i].
 * @param w (rows, cols) row-major
 * @param x (cols)
 * @param out (rows)
 */
export function matVec(
  w: Float32Array,
  x: Float32Array,
  rows: number,
  cols: number,
  out: Float32Array,
): void {
  for (let o = 0; o < rows; o++) {
    const base = o * cols;
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    let i = 0;
    for (; i + 3 < cols; i += 4) {
      s0 += w[base + i] * x[i];
      s1 += w[base + i + 1] * x[i + 1];
      s2 += w[base + i + 2] * x[i + 2];
      s3 += w[base + i + 3] * x[i + 3];
    }
    for (; i < cols; i++) s0 += w[base + i] * x[i];
    out[o] = s0 + s1 + s2 + s3;
  }
}

/**
 * Rotary embedding in the Hugging Face "rotate_half" layout, in place, for every head of a row:
 * for i < headDim/2 with angle a = pos * invFreq[i]:
 *   x[i] <- x[i] cos a - x[i + half] sin a;  x[i + half] <- x[i + half] cos a + x[i] sin a.
 * @param x (nHeads * headDim) one token's q or k
 */
export function rope(
  x: Float32Array,
  nHeads: number,
  headDim: number,
  pos: number,
  invFreq: Float64Array,
): void {
  const half = headDim / 2;
  for (let i = 0; i < half; i++) {
    const a = pos * invFreq[i];
    const c = Math.cos(a), s = Math.sin(a);
    for (let h = 0; h < nHeads; h++) {
      const b = h * headDim;
      const x1 = x[b + i], x2 = x[b + i + half];
      x[b + i] = x1 * c - x2 * s;
      x[b + i + half] = x2 * c + x1 * s;
    }
  }
}

/** SwiGLU: out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + e^-g). */
export function swiGlu(gate: Float32Array, up: Float32Array, out: Float32Array): void {
  for (let i = 0; i < out.length; i++) {
    const g = gate[i];
    out[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
}

/**
 * Masked multi-head attention of one query row over a set of key/value slots, with GQA.
 * @param q (nHeads * headDim) the query row (RoPE applied)
 * @param kCache (slots, nKvHeads * headDim)
 * @param vCache (slots, nKvHeads * headDim)
 * @param visible slot indices this query may attend to (the prefix, its ancestors and itself)
 * @param out (nHeads * headDim)
 */
export function attention(
  q: Float32Array,
  kCache: Float32Array,
  vCache: Float32Array,
  visible: ArrayLike<number>,
  dims: { nHeads: number; nKvHeads: number; headDim: number },
  out: Float32Array,
): void {
  const { nHeads, nKvHeads, headDim } = dims;
  const kvDim = nKvHeads * headDim;
  const group = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(headDim);
  const scores = new Float64Array(visible.length);
  for (let h = 0; h < nHeads; h++) {
    const qb = h * headDim;
    const kvb = Math.floor(h / group) * headDim;
    let max = -Infinity;
    for (let j = 0; j < visible.length; j++) {
      const kb = visible[j] * kvDim + kvb;
      let s = 0;
      for (let i = 0; i < headDim; i++) s += q[qb + i] * kCache[kb + i];
      s *= scale;
      scores[j] = s;
      if (s > max) max = s;
    }
    let sum = 0;
    for (let j = 0; j < visible.length; j++) {
      scores[j] = Math.exp(scores[j] - max);
      sum += scores[j];
    }
    for (let i = 0; i < headDim; i++) {
      let acc = 0;
      for (let j = 0; j < visible.length; j++) acc += scores[j] * vCache[visible[j] * kvDim + kvb + i];
      out[qb + i] = acc / sum;
    }
  }
}

/** In-place row softmax of `x` (length n); returns x. */
export function softmaxInPlace(x: Float32Array | Float64Array): typeof x {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i] > max) max = x[i];
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    x[i] = Math.exp(x[i] - max);
    sum += x[i];
  }
  for (let i = 0; i < x.length; i++) x[i] /= sum;
  return x;
}
