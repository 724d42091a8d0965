// Rotary position embedding, Hugging Face "rotate_half" layout, in place on n rows of n_heads heads:
// for pair i < head_dim/2 with angle a = pos * inv_freq[i] (cos/sin from a table computed in f64 on
// the CPU: GPU cos/sin lose accuracy for large angles):
//   x[i] <- x[i] cos a - x[i + half] sin a;   x[i + half] <- x[i + half] cos a + x[i] sin a
//
// bindings: 0 params; 1 x: array<f32>, row t starts at offset + t * stride; 2 positions: array<u32>;
//           3 table: array<vec2<f32>> (max_pos, head_dim / 2) of (cos, sin)
// dispatch: (ceil(n_heads * head_dim / 2 / 64), n)
// PACK (bool): not in place: x is a compact f32 source (n, n_heads * head_dim) and the rotated rows go to
//   4 out: an f16 KV cache (array<u32>, element e in word e / 2, even element low), row t at
//   offset + t * stride; one thread per output word (two adjacent elements, each with its partner).
struct Params { n: u32, n_heads: u32, head_dim: u32, stride: u32, offset: u32, pos_offset: u32 }
@group(0) @binding(0) var<uniform> p: Params;
//#if PACK
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;
//#else
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
//#endif
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> table: array<vec2<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let half = p.head_dim / 2u;
  let t = gid.y;
  if (gid.x >= p.n_heads * half || t >= p.n) { return; }
//#if PACK
  let pos = positions[p.pos_offset + t];
  let src = t * p.n_heads * p.head_dim;
  var pair = vec2<f32>(0.0);
//#unroll b 2
  {
    let e = 2u * gid.x + $bu; // element of the row; head_dim is even, so a word never straddles heads
    let i = e % p.head_dim;
    let cs = table[pos * half + i % half];
    let x1 = x[src + e];
    if (i < half) { pair[$bu] = x1 * cs.x - x[src + e + half] * cs.y; } else { pair[$bu] = x1 * cs.x + x[src + e - half] * cs.y; }
  }
//#end
  out[(p.offset + t * p.stride) / 2u + gid.x] = pack2x16float(pair);
  return;
//#else
  let h = gid.x / half;
  let i = gid.x % half;
  let cs = table[positions[p.pos_offset + t] * half + i];
  let b = p.offset + t * p.stride + h * p.head_dim;
  let x1 = x[b + i];
  let x2 = x[b + i + half];
  x[b + i] = x1 * cs.x - x2 * cs.y;
  x[b + i + half] = x2 * cs.x + x1 * cs.y;
//#endif
}
