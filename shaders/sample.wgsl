// Row-wise sampling from softmax(logits / T) restricted by top-k and top-p, on the GPU, so only the
// token id is read back. Same semantics as src/model/sampling.ts: top-k first; top-p keeps the
// shortest most-likely set whose mass (of the top-k renormalised distribution) reaches top_p, the
// crossing token included; then one uniform u (drawn on the CPU from the seeded RNG) selects the token
// by cumulative mass in index order. Thresholds are found exactly by bisection on the order-preserving
// u32 key of the logit (32 rounds); tokens tied exactly at a threshold are all kept (CPU: by index).
//
// bindings: 0 params; 1 logits: array<f32> (n, vocab); 2 uniforms: array<f32> (u_offset + n);
//           3 out: array<u32>, row t -> out[out_offset + t]
// dispatch: (n)    workgroup: 256 threads per row
struct Params { n: u32, vocab: u32, top_k: u32, out_offset: u32, u_offset: u32, inv_temp: f32, top_p: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> uniforms: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

var<workgroup> chosen: u32;
//#include sampling_common

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wg.x;
  let base = t * p.vocab;
  let mx = row_max(lid, base, p.vocab);
  let tp = keep_threshold(lid, base, p.vocab, mx, p.inv_temp, p.top_k, p.top_p);
  // mass of each thread's contiguous chunk of the kept set, then pick by cumulative mass in index order
  chunk_masses(lid, base, p.vocab, mx, p.inv_temp, tp);
  if (lid == 0u) { chosen = pick_by_mass(base, p.vocab, mx, p.inv_temp, tp, uniforms[p.u_offset + t]); }
  workgroupBarrier();
  if (lid == 0u) { out[p.out_offset + t] = chosen; }
}
