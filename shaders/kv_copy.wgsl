// One half of KV-cache compaction after a speculative step: copy `count` rows of `row_words` u32 words
// (kv_dim f32 values, or kv_dim / 2 words of f16 pairs: bits are copied, whatever the dtype) of both
// the key and the value cache of one layer, from rows src_slots[i] to dst rows (GATHER: cache -> tmp
// rows i; else SCATTER: tmp rows i -> cache rows dst_base + i). Two passes through tmp because the
// accepted path's source and destination rows can overlap.
//
// bindings: 0 params; 1 slots: array<u32> (count) source slots; 2 k, 3 v: array<u32> (slots, row_words);
//           4 tmp: array<u32> (2, count, row_words)
// INDIRECT: the count is slots[0] and the sources follow (slots[1 + i]), written on the GPU by
// tree_verify.wgsl; the dispatch covers the most rows a step may move and rows past the count return.
// dispatch: (ceil(row_words / 64), count)     defines: GATHER (bool), INDIRECT (bool)
struct Params { count: u32, row_words: u32, dst_base: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> slots: array<u32>;
@group(0) @binding(2) var<storage, read_write> k: array<u32>;
@group(0) @binding(3) var<storage, read_write> v: array<u32>;
@group(0) @binding(4) var<storage, read_write> tmp: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let i = gid.y;
//#if INDIRECT
  let count = slots[0];
  let src = slots[1u + min(i, count)];
//#else
  let count = p.count;
  let src = slots[i];
//#endif
  if (c >= p.row_words || i >= count) { return; }
  let t = i * p.row_words + c;
  let half = p.count * p.row_words;
  if (GATHER == 1u) {
    let s = src * p.row_words + c;
    tmp[t] = k[s];
    tmp[half + t] = v[s];
  } else {
    let d = (p.dst_base + i) * p.row_words + c;
    k[d] = tmp[t];
    v[d] = tmp[half + t];
  }
}
