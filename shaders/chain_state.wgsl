// The end of one fused speculative step of a chain (src/gpu/llama/multi_step.ts), after tree_verify.wgsl
// and the two KV commits it feeds, in the same submission: turn its result into the next step's state
// on the device, so the next step can be submitted without reading anything back. The commits moved the
// target's accepted rows right after its root (target_base + 1 + i) and the draft's forwarded prefix of
// the path right after its root (root_slot + 1 + i); the next step writes its rows after the most rows a
// step can keep, so what is left between is masked out by these bitmaps:
//   - target: the root and the accepted rows become visible;
//   - draft: this step's x row (the previous step's last accepted token, forwarded again; x_slot, NONE
//     for the chain's first step), the root and the kept prefix become visible, except the last accepted
//     token's own row when it has one: the next step forwards that token again as its x row (so every
//     later step's pending rows are [x, bonus]);
//   - tokens: [0] (the next root) = bonus, [n] = x = the last accepted token (the root's when none),
//     [n + 1] = bonus;
//   - state[0] (the root's position) += 1 + accepted;
//   - results[r_off ..] = out[0 .. 2 + max_depth) (the host reads every step's at once).
// Sequential and tiny (a few words per accepted node): one thread.
//
// bindings: 0 params; 1 out: array<u32> tree_verify's output (count, bonus, path; the draft's kept count
//           at d_off); 2 state: array<u32>; 3 vis_t, 4 vis_d: array<u32> slot bitmaps of the target's
//           and the draft's cache; 5 tokens: array<u32> (>= n + 2); 6 results: array<u32>
// dispatch: (1)
struct Params {
  n: u32, max_depth: u32, target_base: u32, x_slot: u32, root_slot: u32, d_off: u32, r_off: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> out: array<u32>;
@group(0) @binding(2) var<storage, read_write> state: array<u32>;
@group(0) @binding(3) var<storage, read_write> vis_t: array<u32>;
@group(0) @binding(4) var<storage, read_write> vis_d: array<u32>;
@group(0) @binding(5) var<storage, read_write> tokens: array<u32>;
@group(0) @binding(6) var<storage, read_write> results: array<u32>;

const NONE: u32 = 0xffffffffu;

fn show_t(slot: u32) { vis_t[slot >> 5u] = vis_t[slot >> 5u] | (1u << (slot & 31u)); }
fn show_d(slot: u32) { vis_d[slot >> 5u] = vis_d[slot >> 5u] | (1u << (slot & 31u)); }

@compute @workgroup_size(1)
fn main() {
  let count = out[0];
  let bonus = out[1];
  for (var i = 0u; i <= count; i++) { show_t(p.target_base + i); }
  if (p.x_slot != NONE) { show_d(p.x_slot); }
  // Draft rows root_slot, root_slot + 1 .. + kept: all but the last when it is the last accepted token.
  let kept = out[p.d_off];
  var shown = 1u + kept;
  if (kept == count) { shown = kept; }
  for (var i = 0u; i < shown; i++) { show_d(p.root_slot + i); }
  var x = tokens[0];
  if (count > 0u) { x = out[1u + count] & 0xffffffu; }
  tokens[0] = bonus;
  tokens[p.n] = x;
  tokens[p.n + 1u] = bonus;
  state[0] = state[0] + 1u + count;
  for (var i = 0u; i < 2u + p.max_depth; i++) { results[p.r_off + i] = out[i]; }
}
