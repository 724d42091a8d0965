// Shared by sample.wgsl and tree_draw.wgsl (inlined with //#include): workgroup reductions over a
// vocabulary row of `logits` and the kept-set threshold of temperature / top-k / top-p sampling.
// Needs a 256-thread workgroup and a `logits: array<f32>` binding.
var<workgroup> red: array<f32, 256>;
var<workgroup> redu: array<u32, 256>;

// Order-preserving u32 key of an f32 (larger float -> larger key).
fn key(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn reduce_sum(lid: u32, x: f32) -> f32 {
  red[lid] = x;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn reduce_max(lid: u32, x: f32) -> f32 {
  red[lid] = x;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn reduce_count(lid: u32, x: u32) -> u32 {
  redu[lid] = x;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (lid < s) { redu[lid] += redu[lid + s]; }
    workgroupBarrier();
  }
  let r = redu[0];
  workgroupBarrier();
  return r;
}

// Largest logit of the row.
fn row_max(lid: u32, base: u32, vocab: u32) -> f32 {
  var m = -3.4e38;
  for (var i = lid; i < vocab; i += 256u) { m = max(m, logits[base + i]); }
  return reduce_max(lid, m);
}

// The key threshold of the kept set: tokens with key(logit) >= it survive top-k, then top-p (of the
// top-k renormalised mass, crossing token kept). Found exactly by bisection on the u32 key, 32 rounds
// each; tokens tied exactly at a threshold are all kept.
fn keep_threshold(lid: u32, base: u32, vocab: u32, mx: f32, inv_temp: f32, top_k: u32, top_p: f32) -> u32 {
  var tk = 0u;
  if (top_k > 0u && top_k < vocab) {
    for (var bit = 31i; bit >= 0i; bit--) {
      let cand = tk | (1u << u32(bit));
      var c = 0u;
      for (var i = lid; i < vocab; i += 256u) { c += select(0u, 1u, key(logits[base + i]) >= cand); }
      if (reduce_count(lid, c) >= top_k) { tk = cand; }
    }
  }
  if (top_p >= 1.0) { return tk; }
  var zk = 0.0;
  for (var i = lid; i < vocab; i += 256u) {
    let l = logits[base + i];
    if (key(l) >= tk) { zk += exp((l - mx) * inv_temp); }
  }
  let goal = top_p * reduce_sum(lid, zk);
  var tp = 0u;
  for (var bit = 31i; bit >= 0i; bit--) {
    let cand = tp | (1u << u32(bit));
    var z = 0.0;
    for (var i = lid; i < vocab; i += 256u) {
      let l = logits[base + i];
      if (key(l) >= cand) { z += exp((l - mx) * inv_temp); }
    }
    if (reduce_sum(lid, z) >= goal) { tp = cand; }
  }
  return max(tp, tk);
}

// Kept mass of each thread's contiguous chunk of the row into red[lid] (then a barrier), for
// pick_by_mass: sampling by cumulative mass in index order, like src/model/sampling.ts sampleFrom.
fn chunk_masses(lid: u32, base: u32, vocab: u32, mx: f32, inv_temp: f32, tp: u32) {
  let chunk = (vocab + 255u) / 256u;
  let lo = lid * chunk;
  let hi = min(lo + chunk, vocab);
  var cz = 0.0;
  for (var i = lo; i < hi; i++) {
    let l = logits[base + i];
    if (key(l) >= tp) { cz += exp((l - mx) * inv_temp); }
  }
  red[lid] = cz;
  workgroupBarrier();
}

// One thread, after chunk_masses: the kept token at cumulative mass fraction u in [0, 1) (index order).
fn pick_by_mass(base: u32, vocab: u32, mx: f32, inv_temp: f32, tp: u32, u: f32) -> u32 {
  let chunk = (vocab + 255u) / 256u;
  var total = 0.0;
  for (var c = 0u; c < 256u; c++) { total += red[c]; }
  let goal = u * total;
  var acc = 0.0;
  var last = 0u;
  var found = 0xffffffffu;
  for (var c = 0u; c < 256u && found == 0xffffffffu; c++) {
    if (red[c] <= 0.0) { continue; }
    last = c;
    if (acc + red[c] <= goal) { acc += red[c]; continue; }
    for (var i = c * chunk; i < min(c * chunk + chunk, vocab); i++) {
      let l = logits[base + i];
      if (key(l) >= tp) {
        acc += exp((l - mx) * inv_temp);
        found = i;
        if (goal < acc) { break; }
      }
    }
  }
  if (found == 0xffffffffu) {
    // rounding put the goal past the last chunk's mass: take the last kept token
    for (var i = last * chunk; i < min(last * chunk + chunk, vocab); i++) { if (key(logits[base + i]) >= tp) { found = i; } }
  }
  return found;
}
