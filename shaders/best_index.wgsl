// Shared by argmax.wgsl, tree_draw.wgsl and tree_verify.wgsl (inlined with //#include): the workgroup's
// best (value, index) pair: the larger value, the lower index on ties (first index, like torch.argmax).
// Needs a 256-thread workgroup.
var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

// Reduce every thread's candidate (bv, bi) into best_v[0], best_i[0] (read after it returns: it ends
// with a barrier).
fn reduce_best(lid: u32, bv: f32, bi: u32) {
  best_v[lid] = bv;
  best_i[lid] = bi;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let ov = best_v[lid + s];
      let oi = best_i[lid + s];
      if (ov > best_v[lid] || (ov == best_v[lid] && oi < best_i[lid])) { best_v[lid] = ov; best_i[lid] = oi; }
    }
    workgroupBarrier();
  }
}
