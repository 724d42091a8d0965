// Verifying a drafted tree on the GPU: walk it from the root against the target's logit rows (and the
// draft's q rows) with one exact rule, so only the accepted path and the bonus token are read back
// (O(depth) words, whatever the vocabulary) instead of every node's (vocab) row. The CPU verifiers
// (src/speculative/verify/) are the oracle: this kernel consumes the step's uniforms in exactly their
// order (src/speculative/verify/uniform_replay.ts), one per draw:
//   RULE 0 greedy:    accept the child equal to argmax(row v) (first index on ties); bonus = that argmax.
//   RULE 1 match:     s ~ p_v (one uniform), accept the child whose token is s; bonus = s (SpecExec).
//   RULE 2 swor,
//   RULE 3 specinfer: at v with children x_1..x_b in draw order, one uniform r per child tried: accept x
//                     if r q[x] < p[x] (or q[x] = 0 < p[x]); else p <- norm(max(p - q, 0)) and, SWOR
//                     only, q[x] <- 0 renormalised (zero when nothing is left). None accepted: bonus ~ p
//                     (one uniform); at a leaf: bonus ~ p_v.
// p_v = softmax(logits_v / T) restricted by top-k / top-p (sampling_common's kept set), sampled by
// cumulative mass in index order like src/model/sampling.ts sampleFrom.
//
// One workgroup walks the whole path (a row is 256-thread parallel; the walk is sequential by nature);
// decisions are broadcast through workgroup memory with workgroupUniformLoad so every barrier stays in
// uniform control flow. Cost: greedy/match one row reduction per visited node; the rejection rules
// two passes over (vocab) per child tried.
//
// Besides the result it writes the two KV commits' source slots for kv_copy (INDIRECT): the target's
// accepted nodes (target_base + node, to move right after the root) and the draft's longest forwarded
// prefix of the path (draft slot of each node; a node without one ends the prefix).
//
// bindings: 0 params; 1 logits: array<f32> (n, vocab) target rows; 2 q: array<f32> (n, vocab) draft
//           rows (node v's row is the distribution its children were drawn from); 3 tree: array<u32>
//           [0, n] CSR starts of each node's children, [n + 1, 2n) the children in draw order, [2n, 3n)
//           the draft slot of each node (0xffffffff: not forwarded); 4 tokens: array<u32> (n) node
//           tokens; 5 uniforms: array<f32> (>= n) in [0, 1); 6 work: array<f32> (2, vocab) scratch;
//           7 out: array<u32>: [0] accepted count, [1] bonus, [2 + i] token | rank << 24 of the i-th
//           accepted node (rank: 1-based index among its parent's children), [t_off] count and
//           [t_off + 1 + i] target source slots, [d_off] count and [d_off + 1 + i] draft source slots
// dispatch: (1)    workgroup: 256 threads     defines: RULE (0..3)
struct Params {
  n: u32, vocab: u32, top_k: u32, inv_temp: f32, top_p: f32, target_base: u32, t_off: u32, d_off: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> tree: array<u32>;
@group(0) @binding(4) var<storage, read> tokens: array<u32>;
@group(0) @binding(5) var<storage, read> uniforms: array<f32>;
@group(0) @binding(6) var<storage, read_write> work: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<u32>;

//#include sampling_common
const NONE: u32 = 0xffffffffu;
var<workgroup> decided: u32;
//#include best_index

// The child of v (CSR range [ks, ke)) whose token is t, as (child, 1-based rank), or (NONE, 0).
fn child_with_token(ks: u32, ke: u32, t: u32) -> vec2<u32> {
  for (var k = ks; k < ke; k++) {
    let c = tree[p.n + 1u + k];
    if (tokens[c] == t) { return vec2<u32>(c, k - ks + 1u); }
  }
  return vec2<u32>(NONE, 0u);
}

//#if RULE == 0
// argmax of row v, first index on ties (best_index's reduction, as argmax.wgsl), as a uniform value.
fn row_argmax(lid: u32, base: u32) -> u32 {
  var bv = -3.4e38;
  var bi = NONE;
  for (var i = lid; i < p.vocab; i += 256u) {
    let v = logits[base + i];
    if (v > bv) { bv = v; bi = i; }
  }
  reduce_best(lid, bv, bi);
  if (lid == 0u) { decided = best_i[0]; }
  return workgroupUniformLoad(&decided);
}
//#endif

// A draw from p_v (kept set of row v) with uniform u, as a uniform value.
fn sample_row(lid: u32, base: u32, u: f32) -> u32 {
  let mx = row_max(lid, base, p.vocab);
  let tp = keep_threshold(lid, base, p.vocab, mx, p.inv_temp, p.top_k, p.top_p);
  chunk_masses(lid, base, p.vocab, mx, p.inv_temp, tp);
  if (lid == 0u) { decided = pick_by_mass(base, p.vocab, mx, p.inv_temp, tp, u); }
  return workgroupUniformLoad(&decided);
}

//#if RULE >= 2
// A draw from the residual p in work[0, vocab) with uniform u: the first index whose cumulative mass
// (positive entries, index order) exceeds u * total; the last positive one when rounding overshoots.
fn sample_work(lid: u32, u: f32) -> u32 {
  let chunk = (p.vocab + 255u) / 256u;
  let lo = lid * chunk;
  let hi = min(lo + chunk, p.vocab);
  var cz = 0.0;
  for (var i = lo; i < hi; i++) { cz += max(work[i], 0.0); }
  red[lid] = cz;
  workgroupBarrier();
  if (lid == 0u) {
    var total = 0.0;
    for (var c = 0u; c < 256u; c++) { total += red[c]; }
    let goal = u * total;
    var acc = 0.0;
    var last_chunk = 0u;
    var found = NONE;
    for (var c = 0u; c < 256u && found == NONE; c++) {
      if (red[c] <= 0.0) { continue; }
      last_chunk = c;
      if (acc + red[c] <= goal) { acc += red[c]; continue; }
      for (var i = c * chunk; i < min(c * chunk + chunk, p.vocab); i++) {
        if (work[i] > 0.0) {
          acc += work[i];
          found = i;
          if (goal < acc) { break; }
        }
      }
    }
    if (found == NONE) {
      // rounding put the goal past the last chunk's mass: the last positive entry
      for (var i = last_chunk * chunk; i < min(last_chunk * chunk + chunk, p.vocab); i++) {
        if (work[i] > 0.0) { found = i; }
      }
    }
    decided = found;
  }
  return workgroupUniformLoad(&decided);
}
//#endif

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  let V = p.vocab;
  var v = 0u;
  var count = 0u;
  var kept = 0u;
  var draft_open = true;
  var c = 0u; // uniforms consumed
  var bonus = 0u;
  loop {
    // A path is at most n - 1 nodes long (the host checks children come after their parents).
    if (count >= p.n) { break; }
    let ks = tree[v];
    let ke = tree[v + 1u];
    let base = v * V;
    var next = vec2<u32>(NONE, 0u);
//#if RULE <= 1
//#if RULE == 0
    let t = row_argmax(lid, base);
//#else
    let t = sample_row(lid, base, uniforms[c]);
    c++;
//#endif
    next = child_with_token(ks, ke, t);
    if (next.x == NONE) { bonus = t; break; }
//#else
    if (ks == ke) {
      bonus = sample_row(lid, base, uniforms[c]);
      c++;
      break;
    }
    // Materialise p_v (work[0, V)) and q_v (work[V, 2V)): the residual updates rewrite them.
    let mx = row_max(lid, base, V);
    let tp = keep_threshold(lid, base, V, mx, p.inv_temp, p.top_k, p.top_p);
    var z = 0.0;
    for (var i = lid; i < V; i += 256u) {
      let l = logits[base + i];
      if (key(l) >= tp) { z += exp((l - mx) * p.inv_temp); }
    }
    let zt = reduce_sum(lid, z);
    for (var i = lid; i < V; i += 256u) {
      let l = logits[base + i];
      work[i] = select(0.0, exp((l - mx) * p.inv_temp) / zt, key(l) >= tp);
      work[V + i] = q[base + i];
    }
    storageBarrier();
    workgroupBarrier();
    for (var k = ks; k < ke; k++) {
      let x = tokens[tree[p.n + 1u + k]];
      let r = uniforms[c];
      c++;
      if (lid == 0u) {
        let px = work[x];
        let qx = work[V + x];
        decided = select(0u, 1u, r * qx < px || (qx == 0.0 && px > 0.0));
      }
      if (workgroupUniformLoad(&decided) == 1u) {
        next = vec2<u32>(tree[p.n + 1u + k], k - ks + 1u);
        break;
      }
      // Rejected: p <- max(p - q, 0) normalised (kept as is when nothing is left).
      var zr = 0.0;
      for (var i = lid; i < V; i += 256u) { zr += max(work[i] - work[V + i], 0.0); }
      let zres = reduce_sum(lid, zr);
//#if RULE == 2
      let qz = 1.0 - work[V + x];
//#endif
      storageBarrier();
      workgroupBarrier();
      for (var i = lid; i < V; i += 256u) {
        if (zres > 0.0) { work[i] = max(work[i] - work[V + i], 0.0) / zres; }
//#if RULE == 2
        // Without replacement: x cannot be drawn again; q renormalised over the rest.
        work[V + i] = select(select(0.0, work[V + i] / qz, qz > 0.0), 0.0, i == x);
//#endif
      }
      storageBarrier();
      workgroupBarrier();
    }
    if (next.x == NONE) {
      bonus = sample_work(lid, uniforms[c]);
      c++;
      break;
    }
//#endif
    if (lid == 0u) {
      out[2u + count] = tokens[next.x] | (next.y << 24u);
      out[p.t_off + 1u + count] = p.target_base + next.x;
      let slot = tree[2u * p.n + next.x];
      if (draft_open && slot != NONE) {
        out[p.d_off + 1u + kept] = slot;
        kept++;
      } else {
        draft_open = false;
      }
    }
    count++;
    v = next.x;
  }
  if (lid == 0u) {
    out[0] = count;
    out[1] = bonus;
    out[p.t_off] = count;
    out[p.d_off] = kept;
  }
}
