// Masked grouped-query attention over the KV cache in ONE pass with an online softmax ("flash"
// attention): slots [0, past + n) are walked in tiles of TK keys; each tile's K and V rows are staged in
// workgroup memory once and serve every query vector of the workgroup — the G = n_heads / n_kv_heads
// query heads of one KV head times R query rows (tree verification and prefill). Per query vector the
// running max m and sum l are kept and the output accumulator rescaled by exp(m_old - m_new) whenever
// a tile raises the max, so no scores buffer sized by the context is needed (any context length) and
// K/V are read once per (KV head, R rows) instead of once per (query head, row).
// Row t may attend to slot j when causal and j <= past + t, else when bit j of its mask row is set.
//
// Per tile, four phases separated by barriers: (1) coalesced loads of the tile (consecutive threads read
// consecutive elements of a K/V row); (2) the R*G*TK scores, thread -> (query vector, key) with
// consecutive threads on consecutive keys (K rows padded to HD + 1 floats so they hit different banks);
// (3) one thread per query vector takes the tile's max, turns scores into exp(s - m), updates m and l;
// (4) each thread rescales and accumulates its NU output elements (registers, //#unroll).
//
// Workgroup memory (f32): qs R*G*HD + ks TK*(HD+1) + vs TK*HD + ps R*G*TK + 2 R*G; the launcher keeps it
// within 32 KiB (SmolLM2 at R = 4: 3 + 8.1 + 8 + 1.5 KiB). A GPU with more workgroup memory can take a
// larger TK (fewer barriers per slot) or R (more rows per K/V load): only the launcher's choice changes.
//
// bindings: 0 params; 1 q: array<f32> (n, q_stride) with q_stride = n_heads * HD;
//           2 k, 3 v: the cache, (slots, kv_dim) f32, or F16: array<u32> with element e in word e / 2
//           (even element in the low half, pack2x16float); 4 mask: array<u32>, row t at
//           mask_offset + t * mask_words, bits over slots; 5 out: array<f32> (n, q_stride)
// dispatch: (n_kv_heads, ceil(n / R))
// defines: HD (head dim), G (query heads per KV head), R (query rows per workgroup), TK (keys per tile),
//          WG (threads), NU = ceil(R * G * HD / WG) (output elements per thread), F16 (bool)
struct Params {
  n: u32, past: u32, q_stride: u32, kv_dim: u32, mask_words: u32, causal: u32, scale: f32, mask_offset: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
//#if F16
@group(0) @binding(2) var<storage, read> k: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read> v: array<vec2<u32>>;
//#else
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
//#endif
@group(0) @binding(4) var<storage, read> mask: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

const WG: u32 = TK; // one thread per key of a tile in the score phase
const HD4: u32 = HD / 4u; // vec4s per head row
const KS4: u32 = HD4 + 1u; // padded K row stride in vec4s (rows start in different banks)
const PS: u32 = TK + 1u; // padded score row stride
const NEG: f32 = -3.0e38; // masked score (exp(NEG - m) is never taken: masked slots weigh exactly 0)
// Output vec4s per thread repeat one dimension when WG is a multiple of HD4 (V loads then shared).
const SAME_D: bool = WG % HD4 == 0u;

var<workgroup> qs: array<vec4<f32>, QV * HD4>; // queries, pre-scaled by 1 / sqrt(HD)
var<workgroup> ks: array<vec4<f32>, TK * KS4>;
var<workgroup> vs: array<vec4<f32>, TK * HD4>;
var<workgroup> ps: array<f32, QV * PS>; // scores, then weights exp(s - m)
var<workgroup> m_run: array<f32, QV>; // running max per query vector
var<workgroup> l_run: array<f32, QV>; // running sum of exp(s - m_run)
var<workgroup> alpha: array<f32, QV>; // this tile's rescale factor exp(m_old - m_new)

fn visible(t: u32, j: u32) -> bool {
  if (p.causal == 1u) { return j <= p.past + t; }
  return ((mask[p.mask_offset + t * p.mask_words + j / 32u] >> (j % 32u)) & 1u) == 1u;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wg.x;
  let t0 = wg.y * R;
  let qb4 = g * G * HD4; // this KV head's query heads are contiguous in a q row
  let kb4 = g * HD4;
  let row4 = p.kv_dim / 4u;
  // Causal rows t0 .. t0 + R - 1 see no slot past past + t0 + R - 1: later tiles are skipped.
  var limit = p.past + p.n;
  if (p.causal == 1u) { limit = min(limit, p.past + t0 + R); }

  for (var e = lid; e < QV * HD4; e += WG) {
    let r = e / (G * HD4);
    var x = vec4<f32>(0.0);
    if (t0 + r < p.n) { x = q[(t0 + r) * (p.q_stride / 4u) + qb4 + e % (G * HD4)] * p.scale; }
    qs[e] = x;
  }
  for (var c = lid; c < QV; c += WG) {
    m_run[c] = NEG;
    l_run[c] = 0.0;
  }
  // Output vec4s of this thread: o = lid + u * WG -> query vector o / HD4, dims 4 * (o % HD4) ..
  // (clamped past the end).
//#unroll u NU
  let o_$u = lid + $uu * WG;
  let qo_$u = min(o_$u, QV * HD4 - 1u) / HD4;
  let do_$u = select(o_$u % HD4, lid % HD4, SAME_D);
  var acc_$u = vec4<f32>(0.0);
//#end

  for (var j0 = 0u; j0 < limit; j0 += TK) {
    let tl = min(TK, limit - j0); // keys of this tile
    // (1) stage K and V rows j0 .. j0 + tl, consecutive threads on consecutive vec4s of a row (zeros past the end)
    for (var e = lid; e < TK * HD4; e += WG) {
      let jj = e / HD4;
      let d4 = e % HD4;
      var kk = vec4<f32>(0.0);
      var vv = vec4<f32>(0.0);
      if (jj < tl) {
        let src = (j0 + jj) * row4 + kb4 + d4;
//#if F16
        let kw = k[src];
        let vw = v[src];
        kk = vec4<f32>(unpack2x16float(kw.x), unpack2x16float(kw.y));
        vv = vec4<f32>(unpack2x16float(vw.x), unpack2x16float(vw.y));
//#else
        kk = k[src];
        vv = v[src];
//#endif
      }
      ks[jj * KS4 + d4] = kk;
      vs[jj * HD4 + d4] = vv;
    }
    workgroupBarrier();
    // (2) scores: thread = key lid of the tile, against every query vector (its K row read once per vec4)
    {
//#unroll c QV
      var s_$c = 0.0;
//#end
      for (var i = 0u; i < HD4; i++) {
        let kk = ks[lid * KS4 + i];
//#unroll c QV
        s_$c += dot(qs[$cu * HD4 + i], kk);
//#end
      }
      let j = j0 + lid;
//#unroll c QV
      ps[$cu * PS + lid] = select(NEG, s_$c, lid < tl && t0 + $cu / G < p.n && visible(t0 + $cu / G, j));
//#end
    }
    workgroupBarrier();
    // (3) online softmax update, one thread per query vector
    for (var c = lid; c < QV; c += WG) {
      let m_old = m_run[c];
      var mx = m_old;
      for (var jj = 0u; jj < tl; jj++) { mx = max(mx, ps[c * PS + jj]); }
      var sum = 0.0;
      for (var jj = 0u; jj < tl; jj++) {
        let s = ps[c * PS + jj];
        var e = 0.0;
        if (s > NEG) { e = exp(s - mx); }
        ps[c * PS + jj] = e;
        sum += e;
      }
      let a = exp(m_old - mx); // 1 while nothing was visible yet (NEG - NEG), 0 once a real max replaces NEG
      l_run[c] = l_run[c] * a + sum;
      m_run[c] = mx;
      alpha[c] = a;
    }
    workgroupBarrier();
    // (4) rescale and accumulate this thread's output vec4s
//#unroll u NU
    acc_$u *= alpha[qo_$u];
//#end
    for (var jj = 0u; jj < tl; jj++) {
//#unroll u NU
      acc_$u += ps[qo_$u * PS + jj] * vs[jj * HD4 + do_$u];
//#end
    }
    workgroupBarrier();
  }

//#unroll u NU
  if (o_$u < QV * HD4) {
    let r_$u = o_$u / (G * HD4);
    if (t0 + r_$u < p.n) {
      out[(t0 + r_$u) * (p.q_stride / 4u) + qb4 + o_$u % (G * HD4)] = acc_$u / l_run[qo_$u];
    }
  }
//#end
}
