// Masked multi-head attention with grouped-query heads over the KV cache (slots [0, past + n): the
// cached prefix and the n new tokens, whose keys/values were written at slots past.. before this).
// Row t may attend to slot j when CAUSAL-mode and j <= past + t, else when bit j of its mask row is set
// (the tree's ancestor mask). Scores go through a scratch buffer so any context length fits.
//
// bindings: 0 params; 1 q: array<f32> (n, n_heads * head_dim); 2 k, 3 v: array<f32> (slots, kv_dim);
//           4 mask: array<u32>, row t at mask_offset + t * mask_words, bits over slots; 5 scratch: array<f32> (n, n_heads, cap);
//           6 out: array<f32> (n, n_heads * head_dim)
//           (F16: k, v array<u32>, element e in word e / 2, even element low)
// dispatch: (n_heads, n)    one workgroup of 64 threads per (row, head)    defines: F16 (bool)
struct Params {
  n: u32, past: u32, n_heads: u32, group: u32, head_dim: u32, kv_dim: u32,
  mask_words: u32, causal: u32, cap: u32, scale: f32, mask_offset: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
//#if F16
@group(0) @binding(2) var<storage, read> k: array<u32>;
@group(0) @binding(3) var<storage, read> v: array<u32>;
fn kf(e: u32) -> f32 { let h = unpack2x16float(k[e / 2u]); return select(h.x, h.y, (e & 1u) == 1u); }
fn vf(e: u32) -> f32 { let h = unpack2x16float(v[e / 2u]); return select(h.x, h.y, (e & 1u) == 1u); }
//#else
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
fn kf(e: u32) -> f32 { return k[e]; }
fn vf(e: u32) -> f32 { return v[e]; }
//#endif
@group(0) @binding(4) var<storage, read> mask: array<u32>;
@group(0) @binding(5) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, 64>;

fn visible(t: u32, j: u32) -> bool {
  if (p.causal == 1u) { return j <= p.past + t; }
  return ((mask[p.mask_offset + t * p.mask_words + j / 32u] >> (j % 32u)) & 1u) == 1u;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wg.x;
  let t = wg.y;
  let total = p.past + p.n;
  let qb = t * p.n_heads * p.head_dim + h * p.head_dim;
  let kvb = (h / p.group) * p.head_dim;
  let sb = (t * p.n_heads + h) * p.cap;

  // 1. scores and their max
  var m = -3.0e38;
  for (var j = lid; j < total; j += 64u) {
    var s = -3.0e38;
    if (visible(t, j)) {
      var d = 0.0;
      for (var i = 0u; i < p.head_dim; i++) { d += q[qb + i] * kf(j * p.kv_dim + kvb + i); }
      s = d * p.scale;
    }
    scratch[sb + j] = s;
    m = max(m, s);
  }
  red[lid] = m;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let mx = red[0];
  workgroupBarrier();

  // 2. exponentials and their sum (masked slots contribute exactly 0)
  var sum = 0.0;
  for (var j = lid; j < total; j += 64u) {
    var e = 0.0;
    if (visible(t, j)) { e = exp(scratch[sb + j] - mx); }
    scratch[sb + j] = e;
    sum += e;
  }
  red[lid] = sum;
  storageBarrier();
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let inv = 1.0 / red[0];

  // 3. weighted sum of values, one output dimension per thread
  for (var i = lid; i < p.head_dim; i += 64u) {
    var acc = 0.0;
    for (var j = 0u; j < total; j++) { acc += scratch[sb + j] * vf(j * p.kv_dim + kvb + i); }
    out[qb + i] = acc * inv;
  }
}
