// Embedding gather: out[t, :] = table[tokens[tok_offset + t] - row_start, :] for tokens inside this
// row chunk of the table (a table bigger than one binding is split into row chunks, one dispatch each).
//
// bindings: 0 params; 1 tokens: array<u32> (>= tok_offset + n); 2 table: array<vec4<u32>>, (rows, d) in
//           DTYPE (wload.wgsl: f32, 16-bit pairs, or blocks);
//           3 out: array<f32> (n, d)
// dispatch: (ceil(d / 64), n)     defines: DTYPE
struct Params { n: u32, d: u32, row_start: u32, rows: u32, tok_offset: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn unpack2(word: u32) -> vec2<f32> {
  if (DTYPE == 1u) { return unpack2x16float(word); }
  return vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
}
//#include wload W=table

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let t = gid.y;
  if (c >= p.d || t >= p.n) { return; }
  let tok = tokens[p.tok_offset + t];
  if (tok < p.row_start || tok >= p.row_start + p.rows) { return; }
  out[t * p.d + c] = w1_table(tok - p.row_start, c, p.d, p.rows);
}
