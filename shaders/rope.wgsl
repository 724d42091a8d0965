// Rotary position embedding, Hugging Face "rotate_half" layout, in place on n rows of n_heads heads:
// for pair i < head_dim/2 with angle a = pos * inv_freq[i] (cos/sin from a table computed in f64 on
// the CPU: GPU cos/sin lose accuracy for large angles):
//   x[i] <- x[i] cos a - x[i + half] sin a;   x[i + half] <- x[i + half] cos a + x[i] sin a
//
// bindings: 0 params; 1 x: array<f32>, row t starts at offset + t * stride; 2 positions: array<u32>;
//           3 table: array<vec2<f32>> (max_pos, head_dim / 2) of (cos, sin)
// dispatch: (ceil(n_heads * head_dim / 2 / 64), n)
struct Params { n: u32, n_heads: u32, head_dim: u32, stride: u32, offset: u32, pos_offset: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> table: array<vec2<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let half = p.head_dim / 2u;
  let t = gid.y;
  if (gid.x >= p.n_heads * half || t >= p.n) { return; }
  let h = gid.x / half;
  let i = gid.x % half;
  let cs = table[positions[p.pos_offset + t] * half + i];
  let b = p.offset + t * p.stride + h * p.head_dim;
  let x1 = x[b + i];
  let x2 = x[b + i + half];
  x[b + i] = x1 * cs.x - x2 * cs.y;
  x[b + i + half] = x2 * cs.x + x1 * cs.y;
}
