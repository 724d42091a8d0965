// Step k + 1's inputs of a chain of fused speculative steps, finished on the device (no readback between
// steps, src/gpu/llama/multi_step.ts): the host staged every row's position relative to the step's
// root and every mask row with the step's own columns only (its slots are known in advance: a chained
// step writes its rows after the previous step's, rejected rows included). What the host cannot know is
// where the root is (P, written by chain_state.wgsl) and which earlier slots were accepted (the `vis`
// bitmap), so this kernel sets positions[i] = P + rel[i] - shift and ORs vis into every mask row.
//
// bindings: 0 params; 1 state: array<u32> [0] P, the root's position; 2 vis: array<u32> (>= mask_words)
//           bit j set = slot j visible to every later row; 3 positions: array<u32> (>= pos_offset +
//           rows) relative positions in, absolute out; 4 mask: array<u32> (rows, mask_words) from
//           word mask_offset, ORed with vis
// dispatch: (ceil(rows * mask_words / 64))
struct Params { rows: u32, pos_offset: u32, shift: u32, mask_offset: u32, mask_words: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read> vis: array<u32>;
@group(0) @binding(3) var<storage, read_write> positions: array<u32>;
@group(0) @binding(4) var<storage, read_write> mask: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i < p.rows) {
    let at = p.pos_offset + i;
    positions[at] = state[0] + positions[at] - p.shift;
  }
  if (i < p.rows * p.mask_words) {
    mask[p.mask_offset + i] = mask[p.mask_offset + i] | vis[i % p.mask_words];
  }
}
