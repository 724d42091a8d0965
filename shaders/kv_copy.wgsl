// One half of KV-cache compaction after a speculative step: copy `count` rows of kv_dim floats of both
// the key and the value cache of one layer, from rows src_slots[i] to dst rows (GATHER: cache -> tmp
// rows i; else SCATTER: tmp rows i -> cache rows dst_base + i). Two passes through tmp because the
// accepted path's source and destination rows can overlap.
//
// bindings: 0 params; 1 slots: array<u32> (count) source slots; 2 k, 3 v: array<f32> (slots, kv_dim);
//           4 tmp: array<f32> (2, count, kv_dim)
// dispatch: (ceil(kv_dim / 64), count)     defines: GATHER (bool)
struct Params { count: u32, kv_dim: u32, dst_base: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> slots: array<u32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> tmp: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let i = gid.y;
  if (c >= p.kv_dim || i >= p.count) { return; }
  let t = i * p.kv_dim + c;
  let half = p.count * p.kv_dim;
  if (GATHER == 1u) {
    let s = slots[i] * p.kv_dim + c;
    tmp[t] = k[s];
    tmp[half + t] = v[s];
  } else {
    let d = (p.dst_base + i) * p.kv_dim + c;
    k[d] = tmp[t];
    v[d] = tmp[half + t];
  }
}
