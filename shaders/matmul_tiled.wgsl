// y[t, col] (+)= sum_k x[t, k] W[r, k]  for token rows t < n and weight rows r of this chunk,
// col = row_start + r: the same product, bindings and parameters as matmul.wgsl, laid out as a GEMM
// for n > 1 (a tree's tokens). W is an HF Linear weight (out, in), row-major, F32 or 16-bit (two per u32);
// a matrix bigger than one binding is split into row chunks, one dispatch each (row_start, rows).
//
// A workgroup owns a BM x BN output block (BM token rows, BN weight rows) and walks `in` in steps of BK:
// each step stages BM x BK of x and BN x BK of W in workgroup memory (consecutive threads load
// consecutive k of one row: coalesced), then every thread multiplies out its TM x TR register tile from
// there. Each weight element is read from memory once per BM token rows and each x element once per BN
// weight rows (matmul.wgsl: once per TN <= 8 and RPT <= 8), and the TM x TR accumulators (16-32) stay in
// registers on a GPU. A thread owns the strided tokens ty + i * TY and rows tx + j * TX, so neighbouring
// threads read neighbouring workgroup words (no bank conflicts) and write neighbouring y columns.
// Tails (n % BM, rows % BN, in % BK) read zeros and skip their writes: any n, rows and in.
//
// Tiles are vec4 along k: xs[q * BM + m] = x[t0 + m, k0 + 4q .. 4q + 3]. With F16 they hold f16 and
// the products of one vec4 are summed in f16 (dot), then accumulated in f32: half the workgroup memory
// and packed f16 arithmetic on GPUs, at a cost in precision (x rounded to f16, ~2^-11 relative per
// product and per partial sum of 4; the parity test allows 4 * 2^-11 * sum_k |x_k W_rk|). F16 needs
// `shader-f16` and F16 weights (x beyond f16's range, |x| > 65504, would overflow). No subgroup variant.
//
// bindings: 0 params; 1 w: array<u32>, the chunk (rows, in); 2 x: array<f32>, row t at x_offset + t * in;
//           3 y: array<f32>, element (t, col) at y_offset + t * y_stride + col
// dispatch: (ceil(rows / BN), ceil(n / BM))
// defines: DTYPE (0 F32, 1 F16, 2 BF16), BM, BN, BK (BK % 4 == 0), TM (BM % TM == 0), TR (BN % TR == 0),
//          ACC (bool: y += ...), ALIGNED (bool: in % 4 == 0, so a row's 4 consecutive weights are whole
//          words), F16 (bool: f16 tiles and products)
//#if F16
enable f16;
alias S = f16;
//#else
alias S = f32;
//#endif
struct Params { n: u32, in_dim: u32, rows: u32, row_start: u32, x_offset: u32, y_offset: u32, y_stride: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const KQ: u32 = BK / 4u; // vec4 groups along k per step
const TX: u32 = BN / TR; // threads along weight rows
const TY: u32 = BM / TM; // threads along token rows
const WG: u32 = TX * TY;
var<workgroup> xs: array<vec4<S>, KQ * BM>; // (KQ, BM)
var<workgroup> ws: array<vec4<S>, KQ * BN>; // (KQ, BN)

fn unpack2(word: u32) -> vec2<f32> {
  if (DTYPE == 1u) { return unpack2x16float(word); }
  return vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
}

// Weight (r, k) of this chunk; 0 past its rows or past in.
fn w_elem(r: u32, k: u32) -> f32 {
  if (r >= p.rows || k >= p.in_dim) { return 0.0; }
  let e = r * p.in_dim + k;
  if (DTYPE == 0u) { return bitcast<f32>(w[e]); }
  let pair = unpack2(w[e >> 1u]);
  return select(pair.x, pair.y, (e & 1u) == 1u);
}

// Weights (r, k .. k + 3); k % 4 == 0.
fn w_quad(r: u32, k: u32) -> vec4<f32> {
  if (ALIGNED == 1u && r < p.rows && k < p.in_dim) {
    // in % 4 == 0: the 4 weights are in the row and start on a word (16-bit: two whole words).
    let e = r * p.in_dim + k;
    if (DTYPE == 0u) {
      return vec4<f32>(bitcast<f32>(w[e]), bitcast<f32>(w[e + 1u]), bitcast<f32>(w[e + 2u]), bitcast<f32>(w[e + 3u]));
    }
    return vec4<f32>(unpack2(w[e >> 1u]), unpack2(w[(e >> 1u) + 1u]));
  }
  return vec4<f32>(w_elem(r, k), w_elem(r, k + 1u), w_elem(r, k + 2u), w_elem(r, k + 3u));
}

// x (t, k .. k + 3), zeros past n or past in.
fn x_quad(t: u32, k: u32) -> vec4<f32> {
  if (t >= p.n) { return vec4<f32>(0.0); }
  let b = p.x_offset + t * p.in_dim;
  if (k + 3u < p.in_dim) { return vec4<f32>(x[b + k], x[b + k + 1u], x[b + k + 2u], x[b + k + 3u]); }
  var v = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) { if (k + i < p.in_dim) { v[i] = x[b + k + i]; } }
  return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tx = lid % TX;
  let ty = lid / TX;
  let r0 = wg.x * BN;
  let t0 = wg.y * BM;
//#unroll i TM
//#unroll j TR
  var acc_$i_$j = 0.0;
//#end
//#end
  for (var k0 = 0u; k0 < p.in_dim; k0 += BK) {
    for (var u = lid; u < KQ * BM; u += WG) {
      let m = u / KQ;
      let q = u % KQ;
      xs[q * BM + m] = vec4<S>(x_quad(t0 + m, k0 + 4u * q));
    }
    for (var u = lid; u < KQ * BN; u += WG) {
      let c = u / KQ;
      let q = u % KQ;
      ws[q * BN + c] = vec4<S>(w_quad(r0 + c, k0 + 4u * q));
    }
    workgroupBarrier();
    for (var q = 0u; q < KQ; q++) {
//#unroll i TM
      let a_$i = xs[q * BM + ty + $iu * TY];
//#end
//#unroll j TR
      let b_$j = ws[q * BN + tx + $ju * TX];
//#end
//#unroll i TM
//#unroll j TR
      acc_$i_$j += f32(dot(a_$i, b_$j));
//#end
//#end
    }
    workgroupBarrier();
  }
//#unroll i TM
//#unroll j TR
  if (t0 + ty + $iu * TY < p.n && r0 + tx + $ju * TX < p.rows) {
    let o_$i_$j = p.y_offset + (t0 + ty + $iu * TY) * p.y_stride + p.row_start + r0 + tx + $ju * TX;
//#if ACC
    y[o_$i_$j] += acc_$i_$j;
//#else
    y[o_$i_$j] = acc_$i_$j;
//#endif
  }
//#end
//#end
}
