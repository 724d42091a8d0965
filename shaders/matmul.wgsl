// y[t, col] (+)= sum_i W[r, i] * x[t, i]  for token rows t < n and weight rows r of this chunk,
// col = row_start + r. W is an HF Linear weight (out, in), row-major; a matrix bigger than one binding
// is split into row chunks, one dispatch each (row_start, rows). f32 accumulation.
//
// Each workgroup: 4 weight rows x TN token rows; 16 lanes per weight row split the `in` dimension and
// reduce in workgroup memory. Each weight element is loaded once per TN token rows: that is what makes
// verifying n tree tokens cost little more than 1 while n <= TN.
//
// bindings: 0 params; 1 w: the chunk, (rows, in): VEC -> array<vec4<u32>> (8 halves or 4 f32 per load,
//           needs in % 8 == 0), else array<u32>; 2 x: array<f32>, row t at x_offset + t * in
//           (VEC: array<vec4<f32>>); 3 y: array<f32>, element (t, col) at y_offset + t * y_stride + col
// dispatch: (ceil(rows / 4), ceil(n / TN))
// defines: DTYPE (0 F32, 1 F16, 2 BF16), VEC (bool), TN (token rows per workgroup), ACC (bool: y += ...)
struct Params { n: u32, in_dim: u32, rows: u32, row_start: u32, x_offset: u32, y_offset: u32, y_stride: u32 }
@group(0) @binding(0) var<uniform> p: Params;
//#if VEC
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
//#else
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
//#endif
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const LANES: u32 = 16u;
var<workgroup> red: array<f32, 64 * TN>;

fn unpack2(word: u32) -> vec2<f32> {
  if (DTYPE == 1u) { return unpack2x16float(word); }
  return vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let lane = lid % LANES;
  let r = wg.x * 4u + lid / LANES;
  let t0 = wg.y * TN;
  var acc: array<f32, TN>;
  for (var t = 0u; t < TN; t++) { acc[t] = 0.0; }
  if (r < p.rows) {
//#if VEC
    if (DTYPE == 0u) {
      // 4 f32 weights per vec4<u32> load
      let per_row = p.in_dim / 4u;
      for (var c = lane; c < per_row; c += LANES) {
        let a = bitcast<vec4<f32>>(w[r * per_row + c]);
        for (var t = 0u; t < TN; t++) {
          if (t0 + t < p.n) { acc[t] += dot(a, x[(p.x_offset + (t0 + t) * p.in_dim) / 4u + c]); }
        }
      }
    } else {
      // 8 16-bit weights per vec4<u32> load
      let per_row = p.in_dim / 8u;
      for (var c = lane; c < per_row; c += LANES) {
        let q = w[r * per_row + c];
        let a = vec4<f32>(unpack2(q.x), unpack2(q.y));
        let b = vec4<f32>(unpack2(q.z), unpack2(q.w));
        for (var t = 0u; t < TN; t++) {
          if (t0 + t < p.n) {
            let xb = (p.x_offset + (t0 + t) * p.in_dim) / 4u + 2u * c;
            acc[t] += dot(a, x[xb]) + dot(b, x[xb + 1u]);
          }
        }
      }
    }
//#else
    for (var i = lane; i < p.in_dim; i += LANES) {
      let e = r * p.in_dim + i;
      var wv: f32;
      if (DTYPE == 0u) {
        wv = bitcast<f32>(w[e]);
      } else {
        let pair = unpack2(w[e >> 1u]);
        wv = select(pair.x, pair.y, (e & 1u) == 1u);
      }
      for (var t = 0u; t < TN; t++) {
        if (t0 + t < p.n) { acc[t] += wv * x[p.x_offset + (t0 + t) * p.in_dim + i]; }
      }
    }
//#endif
  }
  for (var t = 0u; t < TN; t++) { red[lid * TN + t] = acc[t]; }
  workgroupBarrier();
  for (var s = LANES / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      for (var t = 0u; t < TN; t++) { red[lid * TN + t] += red[(lid + s) * TN + t]; }
    }
    workgroupBarrier();
  }
  if (lane == 0u && r < p.rows) {
    for (var t = 0u; t < TN; t++) {
      if (t0 + t < p.n) {
        let o = p.y_offset + (t0 + t) * p.y_stride + p.row_start + r;
//#if ACC
        y[o] += red[lid * TN + t];
//#else
        y[o] = red[lid * TN + t];
//#endif
      }
    }
  }
}
