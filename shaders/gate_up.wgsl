// The SwiGLU MLP's first half in one pass: out[t, r] = silu(g) * u with g = sum_i Wg[r, i] x[t, i],
// u = sum_i Wu[r, i] x[t, i], silu(g) = g / (1 + exp(-g)) — the gate and up matmuls and the swiglu
// kernel fused, so a decode step launches one dispatch instead of three per layer and never writes `up`
// out (on llvmpipe every dispatch costs a thread-pool wake-up and a wait, ~0.05-0.1 ms). Each thread
// walks whole rows like matmul.wgsl's row-per-thread tile (same per-row summation order, so g and u are
// bit-identical to the separate matmuls; silu is swiglu.wgsl's expression).
//
// bindings: 0 params; 1 wg, 2 wu: (rows, in) in DTYPE as array<vec4<u32>> (8 halves or 4 f32 per load;
//           needs in % 8 == 0); 3 x: array<vec4<f32>> (n, in); 4 out: array<f32> (n, rows)
// dispatch: (ceil(rows / (WG * RPT)), ceil(n / TN))
// defines: DTYPE (0 F32, 1 F16, 2 BF16, 3.. block types: wload.wgsl), TN (token rows per workgroup), RPT (rows per thread), WG
struct Params { n: u32, in_dim: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> wg: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> wu: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn unpack2(word: u32) -> vec2<f32> {
  if (DTYPE == 1u) { return unpack2x16float(word); }
  return vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
}
//#include wload W=wg
//#include wload W=wu

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) grp: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r0 = (grp.x * WG + lid) * RPT;
  let t0 = grp.y * TN;
  // Rows past the end are clamped for loading and skipped when writing; token rows past n read zeros.
  let last = p.rows - 1u;
//#unroll j RPT
  let r_$j = min(r0 + $ju, last);
//#unroll t TN
  var g_$j_$t = 0.0;
  var u_$j_$t = 0.0;
//#end
//#end
  if (DTYPE == 0u) {
//#if DTYPE == 0
    let per_row = p.in_dim / 4u;
    for (var c = 0u; c < per_row; c++) {
//#unroll t TN
      var x_$t = vec4<f32>(0.0);
      if (t0 + $tu < p.n) { x_$t = x[(t0 + $tu) * per_row + c]; }
//#end
//#unroll j RPT
      let a_$j = bitcast<vec4<f32>>(wg[r_$j * per_row + c]);
      let b_$j = bitcast<vec4<f32>>(wu[r_$j * per_row + c]);
//#unroll t TN
      g_$j_$t += dot(a_$j, x_$t);
      u_$j_$t += dot(b_$j, x_$t);
//#end
//#end
    }
//#endif
  } else if (DTYPE >= 3u) {
//#if DTYPE >= 3
    // Block types: matmul.wgsl's block loop (same order of sums: bit-identical to the two matmuls).
    let nb = p.in_dim / 32u;
    for (var b = 0u; b < nb; b++) {
//#unroll j RPT
      let sg_$j = wsc_wg(r_$j, b, p.in_dim, p.rows);
      let kg_$j = wblk_wg(r_$j, b, p.in_dim);
      let su_$j = wsc_wu(r_$j, b, p.in_dim, p.rows);
      let ku_$j = wblk_wu(r_$j, b, p.in_dim);
//#end
//#unroll q 4
//#unroll t TN
      var xa_$q_$t = vec4<f32>(0.0);
      var xb_$q_$t = vec4<f32>(0.0);
      if (t0 + $tu < p.n) {
        let xi_$q_$t = (t0 + $tu) * p.in_dim / 4u + 8u * b + 2u * $qu;
        xa_$q_$t = x[xi_$q_$t];
        xb_$q_$t = x[xi_$q_$t + 1u];
      }
      let sx_$q_$t = dot(xa_$q_$t + xb_$q_$t, vec4<f32>(1.0));
//#end
//#unroll j RPT
      let qg_$q_$j = wdec_wg(kg_$j, $qu, b);
      let qu_$q_$j = wdec_wu(ku_$j, $qu, b);
//#unroll t TN
      g_$j_$t += sg_$j[($qu >> 1u) * 2u] * (dot(qg_$q_$j[0], xa_$q_$t) + dot(qg_$q_$j[1], xb_$q_$t)) +
        sg_$j[($qu >> 1u) * 2u + 1u] * sx_$q_$t;
      u_$j_$t += su_$j[($qu >> 1u) * 2u] * (dot(qu_$q_$j[0], xa_$q_$t) + dot(qu_$q_$j[1], xb_$q_$t)) +
        su_$j[($qu >> 1u) * 2u + 1u] * sx_$q_$t;
//#end
//#end
//#end
    }
//#endif
  } else {
//#if DTYPE >= 1
//#if DTYPE <= 2
    let per_row = p.in_dim / 8u;
    for (var c = 0u; c < per_row; c++) {
//#unroll t TN
      var xa_$t = vec4<f32>(0.0);
      var xb_$t = vec4<f32>(0.0);
      if (t0 + $tu < p.n) {
        let xi_$t = (t0 + $tu) * p.in_dim / 4u + 2u * c;
        xa_$t = x[xi_$t];
        xb_$t = x[xi_$t + 1u];
      }
//#end
//#unroll j RPT
      let qg_$j = w8_wg(r_$j, c, p.in_dim);
      let qu_$j = w8_wu(r_$j, c, p.in_dim);
      let ga_$j = qg_$j[0];
      let gb_$j = qg_$j[1];
      let ua_$j = qu_$j[0];
      let ub_$j = qu_$j[1];
//#unroll t TN
      g_$j_$t += dot(ga_$j, xa_$t) + dot(gb_$j, xb_$t);
      u_$j_$t += dot(ua_$j, xa_$t) + dot(ub_$j, xb_$t);
//#end
//#end
    }
//#endif
//#endif
  }
//#unroll j RPT
//#unroll t TN
  if (r0 + $ju < p.rows && t0 + $tu < p.n) {
    out[(t0 + $tu) * p.rows + r0 + $ju] = g_$j_$t / (1.0 + exp(-g_$j_$t)) * u_$j_$t;
  }
//#end
//#end
}
