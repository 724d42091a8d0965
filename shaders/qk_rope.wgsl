// The query and key projections with RoPE applied on the way out, in one dispatch: q[t] = rope(Wq x[t])
// and k[past + t] = rope(Wk x[t]) ("rotate_half" layout, cos/sin from the f64 table like rope.wgsl).
// Each thread owns RPT rotation pairs — rows (h * head_dim + i, h * head_dim + i + half) of one head —
// so both rows of a pair are in its registers when it rotates them: two matmuls and two rope kernels
// become one launch (on llvmpipe every dispatch costs a thread-pool wake-up and a wait, ~0.05-0.1 ms,
// 120 of them per SmolLM2-sized step). Workgroups [0, q_groups) take the q pairs, the rest the k pairs
// (the matrix is uniform per workgroup). Per-row sums in matmul.wgsl's row-per-thread order and
// rope.wgsl's rotation: bit-identical to the separate kernels.
//
// bindings: 0 params; 1 wq (q_pairs * 2, in), 2 wk (k_pairs * 2, in): array<vec4<u32>> in DTYPE (needs
//           in % 8 == 0); 3 x: array<vec4<f32>> (n, in); 4 q: array<f32> (n, q_stride);
//           5 k: array<f32>, row t at k_offset + t * k_stride; 6 positions: array<u32>;
//           7 table: array<vec2<f32>> (positions, half) of (cos, sin)
// dispatch: (q_groups + ceil(k_pairs / (WG * RPT)), ceil(n / TN)), q_groups = ceil(q_pairs / (WG * RPT))
// defines: DTYPE (0 F32, 1 F16, 2 BF16, 3.. block types: wload.wgsl), TN (token rows per workgroup),
//          RPT (pairs per thread), WG,
//          KF16 (bool: k is an f16 KV cache, array<u32> with element e in word e / 2, even element low;
//          needs RPT and half even: a thread's pairs 2h, 2h + 1 fill one word of each half of the head)
struct Params {
  n: u32, in_dim: u32, q_pairs: u32, k_pairs: u32, half: u32, head_dim: u32, q_groups: u32,
  q_stride: u32, k_offset: u32, k_stride: u32, pos_offset: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w0: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> w1: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> q: array<f32>;
//#if KF16
@group(0) @binding(5) var<storage, read_write> k: array<u32>;
//#else
@group(0) @binding(5) var<storage, read_write> k: array<f32>;
//#endif
@group(0) @binding(6) var<storage, read> positions: array<u32>;
@group(0) @binding(7) var<storage, read> table: array<vec2<f32>>;

fn unpack2(word: u32) -> vec2<f32> {
  if (DTYPE == 1u) { return unpack2x16float(word); }
  return vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
}
//#include wload W=w0
//#include wload W=w1

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) grp: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let mat = select(1u, 0u, grp.x < p.q_groups);
  let pairs = select(p.k_pairs, p.q_pairs, mat == 0u);
  let p0 = (grp.x - select(p.q_groups, 0u, mat == 0u)) * WG * RPT + lid * RPT;
  let t0 = grp.y * TN;
  // Pairs past the end are clamped for loading and skipped when writing; token rows past n read zeros.
//#unroll j RPT
  let pj_$j = min(p0 + $ju, pairs - 1u);
  let i_$j = pj_$j % p.half;
  let ra_$j = (pj_$j / p.half) * p.head_dim + i_$j;
  let rb_$j = ra_$j + p.half;
//#unroll t TN
  var a_$j_$t = 0.0;
  var b_$j_$t = 0.0;
//#end
//#end
//#unroll m 2
  if (mat == $mu) {
    if (DTYPE == 0u) {
//#if DTYPE == 0
      let per_row = p.in_dim / 4u;
      for (var c = 0u; c < per_row; c++) {
//#unroll t TN
        var x_$t = vec4<f32>(0.0);
        if (t0 + $tu < p.n) { x_$t = x[(t0 + $tu) * per_row + c]; }
//#end
//#unroll j RPT
        let wa_$j = bitcast<vec4<f32>>(w$m[ra_$j * per_row + c]);
        let wb_$j = bitcast<vec4<f32>>(w$m[rb_$j * per_row + c]);
//#unroll t TN
        a_$j_$t += dot(wa_$j, x_$t);
        b_$j_$t += dot(wb_$j, x_$t);
//#end
//#end
      }
//#endif
    } else if (DTYPE >= 3u) {
//#if DTYPE >= 3
      // Block types: matmul.wgsl's block loop (same order of sums: bit-identical to the matmuls).
      let nb = p.in_dim / 32u;
      for (var b = 0u; b < nb; b++) {
//#unroll j RPT
        let sa_$j = wsc_w$m(ra_$j, b, p.in_dim, pairs * 2u);
        let ka_$j = wblk_w$m(ra_$j, b, p.in_dim);
        let sb_$j = wsc_w$m(rb_$j, b, p.in_dim, pairs * 2u);
        let kb_$j = wblk_w$m(rb_$j, b, p.in_dim);
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
        let qa_$q_$j = wdec_w$m(ka_$j, $qu, b);
        let qb_$q_$j = wdec_w$m(kb_$j, $qu, b);
//#unroll t TN
        a_$j_$t += sa_$j[($qu >> 1u) * 2u] * (dot(qa_$q_$j[0], xa_$q_$t) + dot(qa_$q_$j[1], xb_$q_$t)) +
          sa_$j[($qu >> 1u) * 2u + 1u] * sx_$q_$t;
        b_$j_$t += sb_$j[($qu >> 1u) * 2u] * (dot(qb_$q_$j[0], xa_$q_$t) + dot(qb_$q_$j[1], xb_$q_$t)) +
          sb_$j[($qu >> 1u) * 2u + 1u] * sx_$q_$t;
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
        let qa_$j = w8_w$m(ra_$j, c, p.in_dim);
        let qb_$j = w8_w$m(rb_$j, c, p.in_dim);
        let aa_$j = qa_$j[0];
        let ab_$j = qa_$j[1];
        let ba_$j = qb_$j[0];
        let bb_$j = qb_$j[1];
//#unroll t TN
        a_$j_$t += dot(aa_$j, xa_$t) + dot(ab_$j, xb_$t);
        b_$j_$t += dot(ba_$j, xa_$t) + dot(bb_$j, xb_$t);
//#end
//#end
      }
//#endif
//#endif
    }
  }
//#end
//#if KF16
//#unroll t TN
  var ka_$t: array<f32, RPT>;
  var kb_$t: array<f32, RPT>;
//#end
//#endif
//#unroll j RPT
//#unroll t TN
  if (p0 + $ju < pairs && t0 + $tu < p.n) {
    let cs_$j_$t = table[positions[p.pos_offset + t0 + $tu] * p.half + i_$j];
    let oa_$j_$t = a_$j_$t * cs_$j_$t.x - b_$j_$t * cs_$j_$t.y;
    let ob_$j_$t = b_$j_$t * cs_$j_$t.x + a_$j_$t * cs_$j_$t.y;
    if (mat == 0u) {
      let o = (t0 + $tu) * p.q_stride;
      q[o + ra_$j] = oa_$j_$t;
      q[o + rb_$j] = ob_$j_$t;
    } else {
//#if KF16
      ka_$t[$ju] = oa_$j_$t;
      kb_$t[$ju] = ob_$j_$t;
//#else
      let o = p.k_offset + (t0 + $tu) * p.k_stride;
      k[o + ra_$j] = oa_$j_$t;
      k[o + rb_$j] = ob_$j_$t;
//#endif
    }
  }
//#end
//#end
//#if KF16
  // f16 k: pairs 2h and 2h + 1 (i even) are adjacent elements in both halves of the head: one word each.
  if (mat == 1u) {
//#unroll t TN
    for (var j = 0u; j < RPT; j += 2u) {
      if (p0 + j < pairs && t0 + $tu < p.n) {
        let ra = ((p0 + j) / p.half) * p.head_dim + (p0 + j) % p.half;
        let o = (p.k_offset + (t0 + $tu) * p.k_stride + ra) / 2u;
        k[o] = pack2x16float(vec2<f32>(ka_$t[j], ka_$t[j + 1u]));
        k[o + p.half / 2u] = pack2x16float(vec2<f32>(kb_$t[j], kb_$t[j + 1u]));
      }
    }
//#end
  }
//#endif
}
