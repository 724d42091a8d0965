// Drafting a static tree on the GPU: for each parent row r of a draft forward, choose its children
// tokens from the draft distribution q = softmax(logits / T) restricted by top-k / top-p —
//   GREEDY: the top-b tokens by logit (ties by index), as src/spec/draw.ts topIndices;
//   IID:    b tokens drawn i.i.d. from q by inverse CDF in index order (SpecInfer; src/spec/draw.ts drawIid);
//   else:   b tokens without replacement by the exponential race, key_i = log(u_i) / q_i, top-b keys
//           (src/spec/draw.ts drawWithoutReplacement), u_i from a PCG hash of (seed, q_index, i);
// write them to tokens[child_start + k] (feeding the next level's forward without a readback) and the
// row's q to q[q_index] for the CPU verifier. Fewer kept tokens than children: the last one repeats.
//
// bindings: 0 params; 1 logits: array<f32> (rows, vocab); 2 plan: array<u32> (rows, 3) of
//           (child_start, child_count, q_index); 3 tokens: array<u32> read_write; 4 q: array<f32>
//           (q rows, vocab) read_write
// dispatch: (rows)    workgroup: 256 threads per row     defines: MAX_CHILDREN, IID (bool)
struct Params { rows: u32, vocab: u32, top_k: u32, greedy: u32, inv_temp: f32, top_p: f32, seed: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> plan: array<u32>;
@group(0) @binding(3) var<storage, read_write> tokens: array<u32>;
@group(0) @binding(4) var<storage, read_write> q: array<f32>;

//#include sampling_common
//#include best_index
var<workgroup> chosen: array<u32, MAX_CHILDREN>;

fn pcg(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = wg.x;
  let base = r * p.vocab;
  let child_start = plan[r * 3u];
  let count = min(plan[r * 3u + 1u], MAX_CHILDREN);
  let q_index = plan[r * 3u + 2u];
  let mx = row_max(lid, base, p.vocab);
  var tp = 0u;
  var zf = 1.0;
  if (p.greedy == 0u) {
    tp = keep_threshold(lid, base, p.vocab, mx, p.inv_temp, p.top_k, p.top_p);
    var z = 0.0;
    for (var i = lid; i < p.vocab; i += 256u) {
      let l = logits[base + i];
      if (key(l) >= tp) { z += exp((l - mx) * p.inv_temp); }
    }
    zf = reduce_sum(lid, z);
    for (var i = lid; i < p.vocab; i += 256u) {
      let l = logits[base + i];
      q[q_index * p.vocab + i] = select(0.0, exp((l - mx) * p.inv_temp) / zf, key(l) >= tp);
    }
  }
  // Keyed by the node (its q row), not the row: a node draws the same whichever row of the forward it
  // is (a chained step forwards one more pending row than a single step, multi_step.ts).
  let row_seed = pcg(p.seed ^ pcg(q_index + 0x9e3779b9u));
  if (IID == 1u && p.greedy == 0u) {
    // Kept mass of each thread's contiguous chunk, then thread 0 inverts the CDF once per child.
    chunk_masses(lid, base, p.vocab, mx, p.inv_temp, tp);
    if (lid == 0u) {
      for (var k = 0u; k < count; k++) {
        let u = (f32(pcg(row_seed ^ pcg(0x7f4a7c15u + k)) >> 8u) + 0.5) / 16777216.0;
        tokens[child_start + k] = pick_by_mass(base, p.vocab, mx, p.inv_temp, tp, u);
      }
    }
    return;
  }
  for (var k = 0u; k < count; k++) {
    var bv = -3.4e38;
    var bi = 0xffffffffu;
    for (var i = lid; i < p.vocab; i += 256u) {
      var taken = false;
      for (var c = 0u; c < k; c++) { if (chosen[c] == i) { taken = true; } }
      if (taken) { continue; }
      let l = logits[base + i];
      var kv: f32;
      if (p.greedy == 1u) {
        kv = l;
      } else if (key(l) >= tp) {
        // u in (0, 1): 24 random bits, centred
        let u = (f32(pcg(row_seed ^ pcg(i)) >> 8u) + 0.5) / 16777216.0;
        kv = log(u) * zf / exp((l - mx) * p.inv_temp);
      } else {
        continue;
      }
      if (kv > bv) { bv = kv; bi = i; }
    }
    reduce_best(lid, bv, bi);
    if (lid == 0u) {
      var pick = best_i[0];
      if (pick == 0xffffffffu) { pick = select(0u, chosen[max(k, 1u) - 1u], k > 0u); }
      chosen[k] = pick;
      tokens[child_start + k] = pick;
    }
    workgroupBarrier();
  }
}
