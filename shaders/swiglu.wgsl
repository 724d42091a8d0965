// SwiGLU activation, in place: gate[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)).
//
// bindings: 0 params; 1 gate: array<f32> (count) read_write; 2 up: array<f32> (count)
// dispatch: (ceil(count / 256))
struct Params { count: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.y * 65535u * 256u + gid.x;
  if (i >= p.count) { return; }
  let g = gate[i];
  gate[i] = g / (1.0 + exp(-g)) * up[i];
}
