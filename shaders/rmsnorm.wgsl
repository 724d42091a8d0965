// RMSNorm of each row: out[t, i] = x[t, i] / sqrt(mean_i(x[t, :]^2) + eps) * w[i]   (f32 math)
//
// bindings: 0 params; 1 x: array<f32> (n, d); 2 w: array<f32> (d); 3 out: array<f32> (n, d)
// dispatch: (n)    workgroup: 64 threads per row, tree reduction in workgroup memory
struct Params { n: u32, d: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wg.x;
  let base = t * p.d;
  var ss = 0.0;
  for (var i = lid; i < p.d; i += 64u) { let v = x[base + i]; ss += v * v; }
  red[lid] = ss;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = inverseSqrt(red[0] / f32(p.d) + p.eps);
  for (var i = lid; i < p.d; i += 64u) { out[base + i] = x[base + i] * r * w[i]; }
}
