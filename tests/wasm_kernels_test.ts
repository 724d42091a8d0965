/**
 * Every kernel of the wasm backend (src/wasm/kernels/llama.wasm, through its single-kernel launchers)
 * against a CPU twin on seeded, awkward sizes: rows 1, 3, 37, 100; columns that are whole blocks of the
 * quantized types, and for the float types also columns that are not multiples of 8 (the scalar tails);
 * 1..9 tokens per call (groups of 4 and their remainders). Failures name the index and both values.
 *
 * The twins: k_quantize against a TypeScript quantize_row, exactly (same ints, same scales); k_matmul
 * against ggml's dequantized weights (src/model/ggml_quants.ts) dotted in f64 with the f32 activations
 * (float matrices) or with the dequantized int16 activations (quantized matrices), within a tolerance
 * relative to sum |w x|; the rest against src/cpu/ops.ts. Batch invariance, which greedy speculative =
 * AR rests on, is exact: a token's output is bit-identical whatever other tokens share its call.
 */
import assert from "node:assert/strict";
import { attention, rmsNorm, rope, swiGlu } from "../src/cpu/ops.ts";
import { f32ToBf16Bits, f32ToF16Bits } from "../src/model/dtype.ts";
import { dequantize, GGML_TYPES, type GgmlType } from "../src/model/ggml_quants.ts";
import { Rng } from "../src/util/rng.ts";
import { WasmRuntime } from "../src/wasm/runtime.ts";

const rt = await WasmRuntime.create(1);
const k = rt.exports;

const FLOAT_TYPES: GgmlType[] = ["F32", "F16", "BF16"];
const QUANT_TYPES: GgmlType[] = ["Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"];
const ALL_TYPES = [...FLOAT_TYPES, ...QUANT_TYPES];
const isQuant = (t: GgmlType) => GGML_TYPES[t].blockSize > 1;

/** Columns to test `type` at: whole blocks; for float types also scalar tails (37, 70). */
function colsOf(type: GgmlType): number[] {
  if (type === "Q4_K" || type === "Q6_K") return [256, 512];
  if (isQuant(type)) return [32, 96, 160];
  return [37, 70, 96];
}

function rand(n: number, rng: Rng, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
}

// ---------------------------------------------------------------------------------------------------
// memory

/** Copy `a` into fresh wasm memory; returns the address. */
function put(a: Float32Array | Uint8Array | Int16Array): number {
  return rt.upload(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
}
const f32At = (p: number, n: number) => rt.f32(p, n).slice();
const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

// ---------------------------------------------------------------------------------------------------
// random valid matrices

/** `n` f16 scale fields: sane magnitudes (2^-9 .. 2^-3), either sign. */
function f16Scale(rng: Rng): number {
  const v = (rng.next() < 0.5 ? -1 : 1) * 2 ** (-9 + 6 * rng.next());
  return f32ToF16Bits(Float32Array.of(v))[0];
}

/**
 * A random (rows, cols) matrix of `type` as stored: random quant bytes with sane f16 scale fields; F16
 * with some subnormals (every bit pattern is checked exactly in a test of its own).
 */
function randomMatrix(type: GgmlType, rows: number, cols: number, rng: Rng): Uint8Array {
  const count = rows * cols;
  if (type === "F32") {
    const a = rand(count, rng, 0.5);
    return new Uint8Array(a.buffer);
  }
  if (type === "F16") {
    const h = f32ToF16Bits(rand(count, rng, 0.5));
    for (let i = 0; i < count; i += 7) h[i] = (rng.next() < 0.5 ? 0x8000 : 0) | (1 + (rng.nextU32() % 0x3ff)); // subnormal
    return new Uint8Array(h.buffer);
  }
  if (type === "BF16") return new Uint8Array(f32ToBf16Bits(rand(count, rng, 0.5)).buffer);
  const { blockSize, typeSize } = GGML_TYPES[type];
  const blocks = count / blockSize;
  const out = new Uint8Array(blocks * typeSize);
  for (let i = 0; i < out.length; i++) out[i] = rng.nextU32() & 0xff;
  const setF16 = (o: number) => {
    const h = f16Scale(rng);
    out[o] = h & 0xff;
    out[o + 1] = h >> 8;
  };
  for (let b = 0; b < blocks; b++) {
    const o = b * typeSize;
    if (type === "Q6_K") setF16(o + 208);
    else setF16(o); // d
    if (type === "Q4_1" || type === "Q4_K") setF16(o + 2); // m, dmin
  }
  return out;
}

/** A matrix of `type` whose every block holds its largest-magnitude codes (int32 overflow checks). */
function extremeMatrix(type: GgmlType, rows: number, cols: number): Uint8Array {
  const { blockSize, typeSize } = GGML_TYPES[type];
  const out = new Uint8Array((rows * cols / blockSize) * typeSize);
  const d = f32ToF16Bits(Float32Array.of(0.01))[0];
  for (let o = 0; o < out.length; o += typeSize) {
    if (type === "Q8_0") out.fill(0x80, o + 2, o + 34); // -128
    else if (type === "Q4_0") out.fill(0x00, o + 2, o + 18); // nibbles 0: -8
    else if (type === "Q4_1") out.fill(0xff, o + 4, o + 20); // nibbles 15
    else if (type === "Q4_K") {
      out.fill(0xff, o + 4, o + 16); // every 6-bit scale and min 63
      out.fill(0xff, o + 16, o + 144); // nibbles 15
    } else if (type === "Q6_K") {
      out.fill(0x00, o, o + 192); // q = -32
      out.fill(0x80, o + 192, o + 208); // scales -128
    }
    const at = type === "Q6_K" ? o + 208 : o;
    out[at] = d & 0xff;
    out[at + 1] = d >> 8;
    if (type === "Q4_1" || type === "Q4_K") {
      out[o + 2] = d & 0xff;
      out[o + 3] = d >> 8;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// the quantize twin

/** Round half to even (wasm f32x4.nearest). */
function roundEven(v: number): number {
  const f = Math.floor(v), r = v - f;
  if (r < 0.5) return f;
  if (r > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** Quantized activations of (n, cols): int16 codes, f32 block scales and f32 block sums of q * scale. */
interface Quantized {
  q: Int16Array;
  d: Float32Array;
  s: Float32Array;
}

/**
 * The TypeScript quantize_row: per 32-block, d = f32(max|x| / 32767), q = nearest-even(f32(x * f32(1 / d)))
 * (0 when d = 0), saturated to int16; s = f32(d * sum q). f32 ops are exact roundings of double ones.
 */
function quantizeTwin(x: Float32Array, n: number, cols: number): Quantized {
  const nb = cols / 32, fr = Math.fround;
  const q = new Int16Array(n * cols), d = new Float32Array(n * nb), s = new Float32Array(n * nb);
  for (let t = 0; t < n; t++) {
    for (let b = 0; b < nb; b++) {
      const o = t * cols + 32 * b;
      let amax = 0;
      for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[o + i]));
      const db = fr(amax / 32767), id = db > 0 ? fr(1 / db) : 0;
      let sum = 0;
      for (let i = 0; i < 32; i++) {
        const v = Math.min(32767, Math.max(-32768, roundEven(fr(x[o + i] * id))));
        q[o + i] = v;
        sum += v;
      }
      d[t * nb + b] = db;
      s[t * nb + b] = fr(db * sum);
    }
  }
  return { q, d, s };
}

/** k_quantize of (n, cols) `x`. */
function quantizeWasm(x: Float32Array, n: number, cols: number): Quantized {
  const nb = cols / 32;
  const px = put(x), pq = rt.alloc(2 * n * cols), pd = rt.alloc(4 * n * nb), ps = rt.alloc(4 * n * nb);
  k.k_quantize(px, n, cols, pq, pd, ps);
  return { q: rt.i16(pq, n * cols).slice(), d: f32At(pd, n * nb), s: f32At(ps, n * nb) };
}

// ---------------------------------------------------------------------------------------------------
// the matmul twin and launcher

/** Activations of (n, cols) as the kernels take them: f32 for float matrices, quantized for the rest. */
interface Acts {
  n: number;
  cols: number;
  x: Float32Array;
  qz: Quantized;
}

function acts(x: Float32Array, n: number, cols: number): Acts {
  // Columns that are not whole 32-blocks only occur with float matrices, which read x alone.
  const qz = cols % 32 === 0
    ? quantizeTwin(x, n, cols)
    : { q: new Int16Array(n * cols), d: new Float32Array(0), s: new Float32Array(0) };
  return { n, cols, x, qz };
}

/** Rows [from, from + n) of `a`. */
function slice(a: Acts, from: number, n: number): Acts {
  const c = a.cols, nb = Math.floor(c / 32);
  return {
    n,
    cols: c,
    x: a.x.slice(from * c, (from + n) * c),
    qz: {
      q: a.qz.q.slice(from * c, (from + n) * c),
      d: a.qz.d.slice(from * nb, (from + n) * nb),
      s: a.qz.s.slice(from * nb, (from + n) * nb),
    },
  };
}

/** Rows `picks` of `a`, in that order. */
function gather(a: Acts, picks: number[]): Acts {
  const c = a.cols, nb = Math.floor(c / 32), n = picks.length;
  const x = new Float32Array(n * c), q = new Int16Array(n * c);
  const d = new Float32Array(n * nb), s = new Float32Array(n * nb);
  picks.forEach((p, i) => {
    x.set(a.x.subarray(p * c, (p + 1) * c), i * c);
    q.set(a.qz.q.subarray(p * c, (p + 1) * c), i * c);
    d.set(a.qz.d.subarray(p * nb, (p + 1) * nb), i * nb);
    s.set(a.qz.s.subarray(p * nb, (p + 1) * nb), i * nb);
  });
  return { n, cols: c, x, qz: { q, d, s } };
}

/** k_matmul: (n, rows) = a W^T; `out0` is the output's prior content (accum = 1 adds to it). */
function matmulWasm(
  type: GgmlType,
  wAt: number,
  rows: number,
  a: Acts,
  accum = 0,
  out0?: Float32Array,
): Float32Array {
  const px = put(a.x), pq = put(a.qz.q), pd = put(a.qz.d.length ? a.qz.d : new Float32Array(1));
  const ps = put(a.qz.s.length ? a.qz.s : new Float32Array(1));
  const po = out0 ? put(out0) : rt.alloc(4 * a.n * rows);
  k.k_matmul(GGML_TYPES[type].id, wAt, rows, a.cols, px, pq, pd, ps, a.n, po, accum);
  return f32At(po, a.n * rows);
}

/** The twin: dequantized W against f32 x (float W) or q * d (quantized W), in f64; with sum |w x|. */
function matmulTwin(
  type: GgmlType,
  w: Uint8Array,
  rows: number,
  a: Acts,
): { want: Float64Array; mag: Float64Array } {
  const c = a.cols, wf = dequantize(type, w, rows * c);
  const xf = new Float64Array(a.n * c);
  for (let i = 0; i < xf.length; i++) {
    xf[i] = isQuant(type) ? a.qz.q[i] * a.qz.d[Math.floor(i / 32)] : a.x[i];
  }
  const want = new Float64Array(a.n * rows), mag = new Float64Array(a.n * rows);
  for (let t = 0; t < a.n; t++) {
    for (let r = 0; r < rows; r++) {
      let s = 0, m = 0;
      for (let i = 0; i < c; i++) {
        const p = wf[r * c + i] * xf[t * c + i];
        s += p;
        m += Math.abs(p);
      }
      want[t * rows + r] = s;
      mag[t * rows + r] = m;
    }
  }
  return { want, mag };
}

/** Relative tolerance of a kernel dot against the f64 twin, times sum |w x| (f32 accumulation). */
const DOT_TOL = 1e-5;

function assertDots(
  got: Float32Array,
  want: Float64Array,
  mag: Float64Array,
  rows: number,
  what: string,
  base?: Float32Array,
): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const w = (base ? base[i] : 0) + want[i];
    const err = Math.abs(got[i] - w);
    const tol = DOT_TOL * (mag[i] + (base ? Math.abs(base[i]) : 0)) + 1e-30;
    assert.ok(
      err <= tol,
      `${what}: token ${Math.floor(i / rows)} row ${i % rows}:` +
        ` wasm ${got[i]} vs cpu ${w} (|err| ${err.toExponential(2)} > ${tol.toExponential(2)})`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------
// tests

Deno.test("wasm kernels: k_quantize equals the TypeScript quantize_row exactly (ints and scales)", () => {
  const rng = new Rng(1);
  const cases: [number, number, number][] = [[1, 32, 1], [3, 96, 0.01], [5, 160, 40], [2, 512, 3], [
    4,
    704,
    1,
  ]];
  for (const [n, cols, scale] of cases) {
    const x = rand(n * cols, rng, scale);
    // Awkward blocks: all zero (scale 0), one lone nonzero, exact ties (x / d = m + 0.5 with d = 2^-10).
    if (cols >= 96) {
      x.fill(0, 0, 32);
      x.fill(0, 32, 64);
      x[40] = -scale;
      for (let i = 64; i < 96; i++) x[i] = (Math.floor(rng.next() * 200) - 100 + 0.5) * 2 ** -10;
      x[64 + Math.floor(rng.next() * 32)] = 32767 * 2 ** -10;
    }
    const want = quantizeTwin(x, n, cols), got = quantizeWasm(x, n, cols);
    const what = `quantize n=${n} cols=${cols}`;
    for (let i = 0; i < want.q.length; i++) {
      if (got.q[i] !== want.q[i]) {
        assert.fail(`${what}: q index ${i} (x ${x[i]}): wasm ${got.q[i]} vs twin ${want.q[i]}`);
      }
    }
    for (let b = 0; b < want.d.length; b++) {
      if (!Object.is(got.d[b], want.d[b]) || !Object.is(got.s[b], want.s[b])) {
        assert.fail(
          `${what}: block ${b}: wasm d ${got.d[b]} s ${got.s[b]} vs twin d ${want.d[b]} s ${want.s[b]}`,
        );
      }
    }
    if (cols >= 96) {
      // The ties really are ties, and the twin rounds them to even.
      assert.equal(want.d[2], 2 ** -10, `${what}: tie block scale`);
      assert.ok(want.q.slice(64, 96).some((v, i) => Math.abs(x[64 + i] * 1024 - v) === 0.5));
    }
  }
});

Deno.test("wasm kernels: k_matmul, every type, awkward rows, columns and token counts, against dequantize", () => {
  const rng = new Rng(2);
  for (const type of ALL_TYPES) {
    for (const cols of colsOf(type)) {
      for (const rows of [1, 3, 37, 100]) {
        const w = randomMatrix(type, rows, cols, rng), wAt = put(w);
        for (const n of rows === 37 ? [1, 2, 3, 4, 5, 6, 7, 8, 9] : [1, 5, 9]) {
          const a = acts(rand(n * cols, rng, 2), n, cols);
          const { want, mag } = matmulTwin(type, w, rows, a);
          assertDots(
            matmulWasm(type, wAt, rows, a),
            want,
            mag,
            rows,
            `matmul ${type} rows=${rows} cols=${cols} n=${n}`,
          );
        }
      }
    }
  }
});

Deno.test("wasm kernels: k_matmul converts every finite F16 and BF16 bit pattern exactly (SIMD and scalar tail)", () => {
  // One-hot activations pick single weights: out[t, r] = W[r, t] * 1 exactly. cols = 12: columns 0-7
  // go through the 8-wide SIMD path, 8-11 through the scalar tail.
  const cols = 12, n = cols;
  const x = new Float32Array(n * cols);
  for (let t = 0; t < n; t++) x[t * cols + t] = 1;
  const a = acts(x, n, cols);
  for (const type of ["F16", "BF16"] as GgmlType[]) {
    const finite: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const exp = type === "F16" ? (h >> 10) & 0x1f : (h >> 7) & 0xff;
      if (exp !== (type === "F16" ? 0x1f : 0xff)) finite.push(h);
    }
    const rows = Math.ceil(finite.length / cols);
    const bits = new Uint16Array(rows * cols);
    bits.set(finite);
    const w = new Uint8Array(bits.buffer), want = dequantize(type, w, rows * cols);
    const got = matmulWasm(type, put(w), rows, a);
    for (let r = 0; r < rows; r++) {
      for (let t = 0; t < cols; t++) {
        if (got[t * rows + r] !== want[r * cols + t]) {
          const h = bits[r * cols + t].toString(16).padStart(4, "0");
          assert.fail(`${type} 0x${h} (column ${t}): wasm ${got[t * rows + r]} vs ${want[r * cols + t]}`);
        }
      }
    }
  }
});

Deno.test("wasm kernels: k_matmul with accum = 1 adds to the existing output", () => {
  const rng = new Rng(3);
  for (const type of ALL_TYPES) {
    const cols = colsOf(type)[1], rows = 37;
    const w = randomMatrix(type, rows, cols, rng), wAt = put(w);
    for (const n of [1, 4, 7]) {
      const a = acts(rand(n * cols, rng), n, cols);
      const base = rand(n * rows, rng, 10);
      const { want, mag } = matmulTwin(type, w, rows, a);
      const what = `matmul accum ${type} cols=${cols} n=${n}`;
      assertDots(matmulWasm(type, wAt, rows, a, 1, base), want, mag, rows, what, base);
      // accum = 0 overwrites whatever was there.
      assertDots(matmulWasm(type, wAt, rows, a, 0, base), want, mag, rows, `${what} (accum 0)`);
    }
  }
});

Deno.test("wasm kernels: k_matmul on extreme blocks (largest codes and activations: no int32 overflow)", () => {
  for (const type of QUANT_TYPES) {
    const cols = colsOf(type).at(-1)!, rows = 3;
    const w = extremeMatrix(type, rows, cols), wAt = put(w);
    for (const sign of [1, -1]) {
      const a = acts(new Float32Array(2 * cols).fill(sign * 3), 2, cols);
      assert.ok(a.qz.q.every((v) => Math.abs(v) === 32767), "activations at the int16 limit");
      const { want, mag } = matmulTwin(type, w, rows, a);
      assertDots(matmulWasm(type, wAt, rows, a), want, mag, rows, `matmul extreme ${type} sign ${sign}`);
    }
  }
});

Deno.test("wasm kernels: k_matmul is batch invariant: a token's output is bit-identical alone or in any batch", () => {
  const rng = new Rng(4);
  for (const type of ALL_TYPES) {
    for (const cols of colsOf(type).slice(0, 2)) {
      const rows = 37, pool = 12;
      const w = randomMatrix(type, rows, cols, rng), wAt = put(w);
      const all = acts(rand(pool * cols, rng, 2), pool, cols);
      const alone = Array.from({ length: pool }, (_, p) => matmulWasm(type, wAt, rows, slice(all, p, 1)));
      for (let n = 1; n <= 9; n++) {
        for (let trial = 0; trial < 3; trial++) {
          const picks = Array.from({ length: n }, () => Math.floor(rng.next() * pool));
          const got = matmulWasm(type, wAt, rows, gather(all, picks));
          picks.forEach((p, i) => {
            const g = bitsOf(got.subarray(i * rows, (i + 1) * rows)), a = bitsOf(alone[p]);
            for (let r = 0; r < rows; r++) {
              if (g[r] !== a[r]) {
                assert.fail(
                  `matmul ${type} cols=${cols}: token ${p} at batch row ${i} of ${n} (batch ${picks}), ` +
                    `output row ${r}: ${got[i * rows + r]} in the batch vs ${alone[p][r]} alone`,
                );
              }
            }
          });
        }
      }
    }
  }
});

Deno.test("wasm kernels: k_rmsnorm", () => {
  const rng = new Rng(5);
  for (const d of [37, 64, 70, 256]) {
    for (const n of [1, 3, 5]) {
      const x = rand(n * d, rng, 3), w = rand(d, rng, 2), eps = 1e-5;
      const out = rt.alloc(4 * n * d);
      k.k_rmsnorm(put(x), put(w), n, d, eps, out);
      const got = f32At(out, n * d), want = new Float32Array(n * d);
      for (let t = 0; t < n; t++) {
        rmsNorm(x.subarray(t * d, (t + 1) * d), w, eps, want.subarray(t * d, (t + 1) * d));
      }
      for (let i = 0; i < want.length; i++) {
        assert.ok(
          Math.abs(got[i] - want[i]) <= 1e-5 * (1 + Math.abs(want[i])),
          `rmsnorm d=${d} n=${n}: index ${i}: wasm ${got[i]} vs cpu ${want[i]}`,
        );
      }
    }
  }
});

Deno.test("wasm kernels: k_rope against the CPU rope (cos/sin tables from the same positions)", () => {
  const rng = new Rng(6);
  for (const [heads, hd] of [[1, 2], [3, 10], [8, 32], [2, 64]]) {
    const half = hd / 2, inv = Float64Array.from({ length: half }, (_, i) => 1 / 10000 ** ((2 * i) / hd));
    for (const n of [1, 4, 9]) {
      const x = rand(n * heads * hd, rng, 2);
      const pos = Array.from({ length: n }, (_, t) => t === 0 ? 0 : Math.floor(rng.next() * 600));
      const cs = new Float32Array(n * half), sn = new Float32Array(n * half);
      for (let t = 0; t < n; t++) {
        for (let i = 0; i < half; i++) {
          cs[t * half + i] = Math.cos(pos[t] * inv[i]);
          sn[t * half + i] = Math.sin(pos[t] * inv[i]);
        }
      }
      const px = put(x);
      k.k_rope(px, n, heads, hd, put(cs), put(sn));
      const got = f32At(px, x.length), want = x.slice();
      for (let t = 0; t < n; t++) {
        rope(want.subarray(t * heads * hd, (t + 1) * heads * hd), heads, hd, pos[t], inv);
      }
      for (let i = 0; i < want.length; i++) {
        assert.ok(
          Math.abs(got[i] - want[i]) <= 2e-6 * (1 + Math.abs(want[i])),
          `rope heads=${heads} hd=${hd} n=${n}: index ${i}: wasm ${got[i]} vs cpu ${want[i]}`,
        );
      }
    }
  }
});

/** A random tree over `m` new slots after `past`: (m, past + m) ancestor mask. */
function treeMask(past: number, m: number, rng: Rng): Uint8Array {
  const w = past + m, mask = new Uint8Array(m * w), parent: number[] = [];
  for (let i = 0; i < m; i++) {
    parent.push(i === 0 || rng.next() < 0.2 ? -1 : Math.floor(rng.next() * i));
    mask.fill(1, i * w, i * w + past);
    for (let a = i; a >= 0; a = parent[a]) mask[i * w + past + a] = 1;
  }
  return mask;
}

Deno.test("wasm kernels: k_attention with tree masks and arbitrary masks, GQA, against the CPU attention", () => {
  const rng = new Rng(7);
  const shapes: [number, number, number][] = [[6, 2, 32], [3, 3, 10], [4, 1, 6], [8, 2, 64]];
  for (const [heads, kvHeads, hd] of shapes) {
    for (const [past, m] of [[0, 1], [0, 5], [7, 3], [40, 9], [130, 4]]) {
      for (const kind of ["tree", "random"] as const) {
        for (const qScale of [1, 12]) { // 12: peaked softmax, many exp terms underflow to 0
          const slots = past + m, kvd = kvHeads * hd;
          const q = rand(m * heads * hd, rng, qScale),
            kc = rand(slots * kvd, rng),
            vc = rand(slots * kvd, rng, 3);
          let mask: Uint8Array;
          if (kind === "tree") mask = treeMask(past, m, rng);
          else {
            mask = Uint8Array.from({ length: m * slots }, () => rng.next() < 0.4 ? 1 : 0);
            for (let t = 0; t < m; t++) mask[t * slots + Math.floor(rng.next() * slots)] = 1;
          }
          const out = rt.alloc(4 * m * heads * hd);
          k.k_attention(
            put(q),
            put(kc),
            put(vc),
            put(mask),
            m,
            slots,
            heads,
            kvHeads,
            hd,
            rt.alloc(4 * slots),
            rt.alloc(4 * hd),
            out,
          );
          const got = f32At(out, m * heads * hd), want = new Float32Array(m * heads * hd);
          for (let t = 0; t < m; t++) {
            const visible: number[] = [];
            for (let j = 0; j < slots; j++) if (mask[t * slots + j]) visible.push(j);
            attention(
              q.subarray(t * heads * hd, (t + 1) * heads * hd),
              kc,
              vc,
              visible,
              { nHeads: heads, nKvHeads: kvHeads, headDim: hd },
              want.subarray(t * heads * hd, (t + 1) * heads * hd),
            );
          }
          for (let i = 0; i < want.length; i++) {
            assert.ok(
              Math.abs(got[i] - want[i]) <= 1e-5 * 3,
              `attention ${kind} heads=${heads}/${kvHeads} hd=${hd} past=${past} n=${m} q*${qScale}: ` +
                `index ${i}: wasm ${got[i]} vs cpu ${want[i]}`,
            );
          }
        }
      }
    }
  }
});

Deno.test("wasm kernels: k_swiglu", () => {
  const rng = new Rng(8);
  for (const n of [1, 7, 704, 1000]) {
    const g = rand(n, rng, 8), u = rand(n, rng, 3);
    if (n >= 7) g.set([0, -100, 100, -87.5, 88.5, 1e-30]);
    const out = rt.alloc(4 * n);
    k.k_swiglu(put(g), put(u), n, out);
    const got = f32At(out, n), want = new Float32Array(n);
    swiGlu(g, u, want);
    for (let i = 0; i < n; i++) {
      assert.ok(
        Math.abs(got[i] - want[i]) <= 1e-6 * (1 + Math.abs(want[i])),
        `swiglu n=${n}: index ${i} (g ${g[i]}, u ${u[i]}): wasm ${got[i]} vs cpu ${want[i]}`,
      );
    }
  }
});

Deno.test("wasm kernels: k_exp within 1e-6 relative of Math.exp on [-80, 80], 0 below -87", () => {
  const rng = new Rng(9);
  const xs: number[] = [0, -0, 1, -1, 80, -80, 0.5 * Math.LN2, -0.5 * Math.LN2];
  for (let i = 0; i <= 160_000; i++) xs.push(-80 + i / 1000);
  for (let i = 0; i < 20_000; i++) xs.push((rng.next() * 2 - 1) * 80);
  let worst = 0, at = 0;
  for (const x of xs) {
    if (x > 80) continue;
    const xf = Math.fround(x), want = Math.exp(xf), got = k.k_exp(xf);
    const rel = Math.abs(got - want) / want;
    if (rel > worst) [worst, at] = [rel, xf];
    if (!(rel < 1e-6)) assert.fail(`exp(${xf}): wasm ${got} vs Math.exp ${want} (relative error ${rel})`);
  }
  assert.ok(worst > 0, `exp is computed, not looked up (worst ${worst} at ${at})`);
  for (const x of [-87.01, -87.5, -88, -100, -1e4, -1e30, -Infinity]) {
    assert.equal(k.k_exp(x), 0, `exp(${x})`);
  }
});
