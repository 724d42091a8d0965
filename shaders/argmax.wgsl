// Row-wise argmax of logits (first index on ties, like torch.argmax), written as a token id.
//
// bindings: 0 params; 1 logits: array<f32> (n, vocab); 2 out: array<u32>, row t -> out[out_offset + t]
// dispatch: (n)    workgroup: 256 threads per row
struct Params { n: u32, vocab: u32, out_offset: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

//#include best_index

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let base = wg.x * p.vocab;
  var bv = -3.4e38;
  var bi = 0xffffffffu;
  for (var i = lid; i < p.vocab; i += 256u) {
    let v = logits[base + i];
    if (v > bv) { bv = v; bi = i; }
  }
  reduce_best(lid, bv, bi);
  if (lid == 0u) { out[p.out_offset + wg.x] = best_i[0]; }
}
