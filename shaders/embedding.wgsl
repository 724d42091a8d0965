// Embedding gather: out[t, :] = table[tokens[tok_offset + t] - row_start, :] for tokens inside this
// row chunk of the table (a table bigger than one binding is split into row chunks, one dispatch each).
//
// bindings: 0 params; 1 tokens: array<u32> (>= tok_offset + n); 2 table: array<u32>, (rows, d) packed
//           two 16-bit values per word (DTYPE 1 = F16, 2 = BF16) or one f32 (DTYPE 0);
//           3 out: array<f32> (n, d)
// dispatch: (ceil(d / 64), n)     defines: DTYPE
struct Params { n: u32, d: u32, row_start: u32, rows: u32, tok_offset: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn load_w(idx: u32) -> f32 {
  if (DTYPE == 0u) { return bitcast<f32>(table[idx]); }
  let word = table[idx >> 1u];
  let half = select(word & 0xffffu, word >> 16u, (idx & 1u) == 1u);
  if (DTYPE == 1u) { return unpack2x16float(half).x; }
  return bitcast<f32>(half << 16u);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let t = gid.y;
  if (c >= p.d || t >= p.n) { return; }
  let tok = tokens[p.tok_offset + t];
  if (tok < p.row_start || tok >= p.row_start + p.rows) { return; }
  out[t * p.d + c] = load_w((tok - p.row_start) * p.d + c);
}
