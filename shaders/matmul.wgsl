// y[t, col] (+)= sum_i W[r, i] * x[t, i]  for token rows t < n and weight rows r of this chunk,
// col = row_start + r. W is an HF Linear weight (out, in), row-major; a matrix bigger than one binding
// is split into row chunks, one dispatch each (row_start, rows). f32 accumulation.
//
// Two layouts of a workgroup of WG threads, each thread owning RPT weight rows and TN token rows (each
// weight element is loaded once per TN token rows and each x chunk once per RPT weight rows: loads per
// multiply-add fall as 1/TN + 1/RPT, which is what makes verifying n tree tokens cost far less than n
// single-token passes):
//   SPLIT: WG / 16 row groups x 16 lanes; the lanes of a row group split the `in` dimension and reduce
//          in workgroup memory (log2(16) barriers per workgroup).
//   else:  one thread per RPT rows walks the whole `in` dimension: no reduction, no barrier. On a CPU
//          adapter (llvmpipe: one workgroup per core thread, SIMD across invocations, every divergent
//          load a per-lane gather) this runs the n = 1 matvec at 2-3x the speed of SPLIT, because the
//          barriers and the reduction dominate a 576-wide row there; a GPU wants SPLIT's coalescing.
//
// bindings: 0 params; 1 w: the chunk, (rows, in): VEC -> array<vec4<u32>> (8 halves or 4 f32 per load,
//           needs in % 8 == 0), else array<u32>; 2 x: array<f32>, row t at x_offset + t * in
//           (VEC: array<vec4<f32>>); 3 y: array<f32>, element (t, col) at y_offset + t * y_stride + col
// dispatch: (ceil(rows / ((SPLIT ? WG / 16 : WG) * RPT)), ceil(n / TN))
// defines: DTYPE (0 F32, 1 F16, 2 BF16, 3.. block types: wload.wgsl; those need VEC), VEC (bool), TN
//          (token rows per workgroup), RPT (weight rows per thread), ACC (bool: y += ...), SPLIT (bool),
//          WG (threads per workgroup; 64 with SPLIT),
//          PACK (bool: y is an f16 KV cache, array<u32> with element e in word e / 2, even element low;
//          needs RPT, rows, y_offset, y_stride and row_start even, not ACC: a thread stores whole words)
struct Params { n: u32, in_dim: u32, rows: u32, row_start: u32, x_offset: u32, y_offset: u32, y_stride: u32 }
@group(0) @binding(0) var<uniform> p: Params;
//#if VEC
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
//#else
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
//#endif
//#if PACK
@group(0) @binding(3) var<storage, read_write> y: array<u32>;
//#else
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
//#endif

//#if SPLIT
const LANES: u32 = 16u;
var<workgroup> red: array<f32, WG * RPT * TN>;
//#else
const LANES: u32 = 1u;
//#endif
const ROWS: u32 = WG / LANES * RPT; // weight rows per workgroup

fn unpack2(word: u32) -> vec2<f32> {
  if (DTYPE == 1u) { return unpack2x16float(word); }
  return vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
}
//#if VEC
//#include wload W=w
//#endif

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let lane = lid % LANES;
  let r0 = wg.x * ROWS + (lid / LANES) * RPT; // this thread's first weight row
  let t0 = wg.y * TN;
  // Rows past the end are clamped for loading and skipped when writing; token rows past n read zeros.
  let last = p.rows - 1u;
//#unroll j RPT
  let r_$j = min(r0 + $ju, last);
//#unroll t TN
  var acc_$j_$t = 0.0;
//#end
//#end
//#if VEC
  if (DTYPE == 0u) {
//#if DTYPE == 0
    // 4 f32 weights per vec4<u32> load
    let per_row = p.in_dim / 4u;
    for (var c = lane; c < per_row; c += LANES) {
//#unroll t TN
      var x_$t = vec4<f32>(0.0);
      if (t0 + $tu < p.n) { x_$t = x[(p.x_offset + (t0 + $tu) * p.in_dim) / 4u + c]; }
//#end
//#unroll j RPT
      let a_$j = bitcast<vec4<f32>>(w[r_$j * per_row + c]);
//#unroll t TN
      acc_$j_$t += dot(a_$j, x_$t);
//#end
//#end
    }
//#endif
  } else if (DTYPE >= 3u) {
//#if DTYPE >= 3
    // Block types: 32 weights per step, each row's scales once per block (wload.wgsl wsc / wblk / wdec).
    let nb = p.in_dim / 32u;
    for (var b = lane; b < nb; b += LANES) {
//#unroll j RPT
      let s_$j = wsc_w(r_$j, b, p.in_dim, p.rows);
      let k_$j = wblk_w(r_$j, b, p.in_dim);
//#end
//#unroll q 4
//#unroll t TN
      var xa_$q_$t = vec4<f32>(0.0);
      var xb_$q_$t = vec4<f32>(0.0);
      if (t0 + $tu < p.n) {
        let xi_$q_$t = (p.x_offset + (t0 + $tu) * p.in_dim) / 4u + 8u * b + 2u * $qu;
        xa_$q_$t = x[xi_$q_$t];
        xb_$q_$t = x[xi_$q_$t + 1u];
      }
      let sx_$q_$t = dot(xa_$q_$t + xb_$q_$t, vec4<f32>(1.0));
//#end
//#unroll j RPT
      let q_$q_$j = wdec_w(k_$j, $qu, b);
//#unroll t TN
      acc_$j_$t += s_$j[($qu >> 1u) * 2u] * (dot(q_$q_$j[0], xa_$q_$t) + dot(q_$q_$j[1], xb_$q_$t)) +
        s_$j[($qu >> 1u) * 2u + 1u] * sx_$q_$t;
//#end
//#end
//#end
    }
//#endif
  } else {
//#if DTYPE >= 1
//#if DTYPE <= 2
    // 8 16-bit weights per vec4<u32> load
    let per_row = p.in_dim / 8u;
    for (var c = lane; c < per_row; c += LANES) {
//#unroll t TN
      var xa_$t = vec4<f32>(0.0);
      var xb_$t = vec4<f32>(0.0);
      if (t0 + $tu < p.n) {
        let xi_$t = (p.x_offset + (t0 + $tu) * p.in_dim) / 4u + 2u * c;
        xa_$t = x[xi_$t];
        xb_$t = x[xi_$t + 1u];
      }
//#end
//#unroll j RPT
      let q_$j = w8_w(r_$j, c, p.in_dim);
      let a_$j = q_$j[0];
      let b_$j = q_$j[1];
//#unroll t TN
      acc_$j_$t += dot(a_$j, xa_$t) + dot(b_$j, xb_$t);
//#end
//#end
    }
//#endif
//#endif
  }
//#else
  for (var i = lane; i < p.in_dim; i += LANES) {
//#unroll t TN
    var x_$t = 0.0;
    if (t0 + $tu < p.n) { x_$t = x[p.x_offset + (t0 + $tu) * p.in_dim + i]; }
//#end
//#unroll j RPT
    let e_$j = r_$j * p.in_dim + i;
    var w_$j: f32;
    if (DTYPE == 0u) {
      w_$j = bitcast<f32>(w[e_$j]);
    } else {
      let pair_$j = unpack2(w[e_$j >> 1u]);
      w_$j = select(pair_$j.x, pair_$j.y, (e_$j & 1u) == 1u);
    }
//#unroll t TN
    acc_$j_$t += w_$j * x_$t;
//#end
//#end
  }
//#endif
//#if SPLIT
  let base = lid * RPT * TN;
//#unroll j RPT
//#unroll t TN
  red[base + $ju * TN + $tu] = acc_$j_$t;
//#end
//#end
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      for (var k = 0u; k < RPT * TN; k++) { red[base + k] += red[(lid + s) * RPT * TN + k]; }
    }
    workgroupBarrier();
  }
  if (lane == 0u) {
//#if PACK
    for (var j = 0u; j < RPT; j += 2u) {
      if (r0 + j >= p.rows) { continue; }
      for (var t = 0u; t < TN; t++) {
        if (t0 + t < p.n) {
          let o = p.y_offset + (t0 + t) * p.y_stride + p.row_start + r0 + j;
          y[o / 2u] = pack2x16float(vec2<f32>(red[base + j * TN + t], red[base + (j + 1u) * TN + t]));
        }
      }
    }
//#else
    for (var j = 0u; j < RPT; j++) {
      if (r0 + j >= p.rows) { continue; }
      for (var t = 0u; t < TN; t++) {
        if (t0 + t < p.n) {
          let o = p.y_offset + (t0 + t) * p.y_stride + p.row_start + r0 + j;
          let v = red[base + j * TN + t];
//#if ACC
          y[o] += v;
//#else
          y[o] = v;
//#endif
        }
      }
    }
//#endif
  }
//#else
//#if PACK
  // f16 pairs: rows r0 + j, r0 + j + 1 (j even) of a token row share one u32 word.
//#unroll t TN
  var pk_$t: array<f32, RPT>;
//#unroll j RPT
  pk_$t[$ju] = acc_$j_$t;
//#end
  for (var j = 0u; j < RPT; j += 2u) {
    if (r0 + j < p.rows && t0 + $tu < p.n) {
      let o = p.y_offset + (t0 + $tu) * p.y_stride + p.row_start + r0 + j;
      y[o / 2u] = pack2x16float(vec2<f32>(pk_$t[j], pk_$t[j + 1u]));
    }
  }
//#end
//#else
//#unroll j RPT
//#unroll t TN
  if (r0 + $ju < p.rows && t0 + $tu < p.n) {
    let o_$j_$t = p.y_offset + (t0 + $tu) * p.y_stride + p.row_start + r0 + $ju;
//#if ACC
    y[o_$j_$t] += acc_$j_$t;
//#else
    y[o_$j_$t] = acc_$j_$t;
//#endif
  }
//#end
//#end
//#endif
//#endif
}
