// Weight loads for every type the kernels read, dequantized in registers (src/gpu/weight_layout.ts has
// the buffer layout; ggml_quants.ts the block formats and the CPU twin). Included once per weight
// binding as `//#include wload W=<binding>`; the binding is array<vec4<u32>> holding one row chunk of
// `rows` rows of `in_dim` columns. Needs the DTYPE define (0 F32 .. 7 Q6_K, weight_layout.ts DTYPE_CODE)
// and `fn unpack2(word) -> vec2<f32>` (the 16-bit pair decoder) in the including shader. Only the code
// of DTYPE survives the preprocessor (`//#if DTYPE ...`): a const-false branch still costs compile time
// on lavapipe (several-fold for the unrolled kernels).
//
// w8_W(r, g, in_dim): the 8 16-bit weights (DTYPE 1, 2) of row r at columns 8g .. 8g + 7.
// Block types (in_dim % 32 == 0; Q4_K / Q6_K: % 256) are read a 32-element block at a time, its
// scales once (each vec4 load is a per-lane gather on a CPU adapter, so the words of a block are
// loaded once and every scale once per block, not per 8 weights):
//   wsc_W(r, b)  -> (a0, c0, a1, c1): 8-group q of block b contributes a * dot(raw, x) + c * sum(x),
//                   (a, c) = (a0, c0) for q < 2, (a1, c1) for q >= 2 (Q6_K's scales change every 16)
//   wblk_W(r, b) -> the block's packed words; wdec_W(words, q, b) -> raw: 8 unscaled values as f32
//   Q8_0  raw = q + 128 (sign bit flipped), (d, -128 d)   Q4_0  nibbles, (d, -8 d)   Q4_1  (d, m)
//   Q4_K  nibbles of the 64-element chunk, (d sc, -dmin m)    Q6_K  6-bit values, (d sc, -32 d sc)
// w1_W(r, col, in_dim, rows): one weight (the embedding gather).

fn ww_$W(i: u32) -> u32 {
  return $W[i >> 2u][i & 3u];
}

//#if DTYPE >= 1
//#if DTYPE <= 2
fn w8_$W(r: u32, g: u32, in_dim: u32) -> array<vec4<f32>, 2> {
  let q = $W[r * (in_dim / 8u) + g];
  return array<vec4<f32>, 2>(vec4<f32>(unpack2(q.x), unpack2(q.y)), vec4<f32>(unpack2(q.z), unpack2(q.w)));
}
//#endif
//#endif

fn w1_$W(r: u32, col: u32, in_dim: u32, rows: u32) -> f32 {
//#if DTYPE == 0
  return bitcast<f32>(ww_$W(r * in_dim + col));
//#endif
//#if DTYPE >= 1
//#if DTYPE <= 2
  let e = r * in_dim + col;
  let pair = unpack2(ww_$W(e >> 1u));
  return select(pair.x, pair.y, (e & 1u) == 1u);
//#endif
//#endif
//#if DTYPE >= 3
  let b = col / 32u;
  let q = (col / 8u) & 3u;
  let s = wsc_$W(r, b, in_dim, rows);
  let v = wdec_$W(wblk_$W(r, b, in_dim), q, b);
  let k = col & 7u;
  let raw = select(v[0][k & 3u], v[1][k & 3u], k >= 4u);
  return s[(q >> 1u) * 2u] * raw + s[(q >> 1u) * 2u + 1u];
//#endif
}

//#if DTYPE >= 3
// f16 number h of the buffer (two per word, the even one in the low half).
fn wh_$W(h: u32) -> f32 {
  let word = ww_$W(h >> 1u);
  return unpack2x16float(select(word, word >> 16u, (h & 1u) == 1u)).x;
}

fn wsc_$W(r: u32, b: u32, in_dim: u32, rows: u32) -> vec4<f32> {
//#if DTYPE <= 4
  // Q8_0 / Q4_0: d after the rows * nb body blocks (32 / 16 bytes: 16 / 8 halves each).
  let nb = in_dim / 32u;
  let d = wh_$W(rows * nb * select(8u, 16u, DTYPE == 3u) + r * nb + b);
  let c = select(-8.0 * d, -128.0 * d, DTYPE == 3u);
  return vec4<f32>(d, c, d, c);
//#endif
//#if DTYPE == 5
  // Q4_1: (d, m) words after the 4-word bodies.
  let nb = in_dim / 32u;
  let dm = unpack2x16float(ww_$W(rows * nb * 4u + r * nb + b));
  return vec4<f32>(dm.x, dm.y, dm.x, dm.y);
//#endif
//#if DTYPE == 6
  // Q4_K: super-block = 36 words (d|dmin, 3 words of 6-bit scales and mins, 32 of nibbles).
  let nb = in_dim / 256u;
  let base = (r * nb + (b >> 3u)) * 36u;
  let s = b & 7u;
  let dm = unpack2x16float(ww_$W(base));
  var sc: u32;
  var mn: u32;
  if (s < 4u) {
    sc = (ww_$W(base + 1u) >> (8u * s)) & 63u;
    mn = (ww_$W(base + 2u) >> (8u * s)) & 63u;
  } else {
    // bytes s + 4 (low/high nibble), s - 4 and s (top two bits)
    let b4 = (ww_$W(base + 3u) >> (8u * (s - 4u))) & 255u;
    let bl = (ww_$W(base + 1u) >> (8u * (s - 4u))) & 255u;
    let bh = (ww_$W(base + 2u) >> (8u * (s - 4u))) & 255u;
    sc = (b4 & 15u) | ((bl >> 6u) << 4u);
    mn = (b4 >> 4u) | ((bh >> 6u) << 4u);
  }
  let a = dm.x * f32(sc);
  let c = -dm.y * f32(mn);
  return vec4<f32>(a, c, a, c);
//#endif
//#if DTYPE == 7
  // Q6_K: block b = elements 32b .. of super-block b / 8 (52 body words: ql, qh, int8 scales; d after
  // the bodies): half n, quarter qq; scales sb, sb + 1 for its two 16-element runs.
  let nb = in_dim / 256u;
  let i = r * nb + (b >> 3u);
  let bb = b & 7u;
  let sb = (bb >> 2u) * 8u + (bb & 3u) * 2u;
  let scw = ww_$W(i * 52u + 48u + sb / 4u);
  let sh = 8u * (sb & 3u);
  let s0 = f32(bitcast<i32>(scw << (24u - sh)) >> 24u);
  let s1 = f32(bitcast<i32>(scw << (16u - sh)) >> 24u);
  let d = wh_$W(rows * nb * 104u + i);
  return vec4<f32>(d * s0, -32.0 * d * s0, d * s1, -32.0 * d * s1);
//#endif
}

// The packed words of 32-element block b of row r, loaded once per block (each vec4 load is a per-lane
// gather on a CPU adapter: loading a word twice costs as much as loading it once more from memory):
// Q8_0 8 words (int8 x 4 each), Q4_0 / Q4_1 4 words (groups 0 and 1: low nibbles of words 0-1 / 2-3;
// 2 and 3: the high ones), Q4_K 8 words of its 64-element chunk, Q6_K 8 ql words then 8 qh words.
fn wblk_$W(r: u32, b: u32, in_dim: u32) -> array<vec4<u32>, 4> {
  let z = vec4<u32>(0u);
//#if DTYPE == 3
  let i = (r * (in_dim / 32u) + b) * 2u;
  return array<vec4<u32>, 4>($W[i], $W[i + 1u], z, z);
//#endif
//#if DTYPE >= 4
//#if DTYPE <= 5
  return array<vec4<u32>, 4>($W[r * (in_dim / 32u) + b], z, z, z);
//#endif
//#endif
//#if DTYPE == 6
  // words base + 4 + (s / 2) * 8 .. + 8: vec4 index (base + 4) / 4 + (s / 2) * 2
  let v = (r * (in_dim / 256u) + (b >> 3u)) * 9u + 1u + ((b & 7u) >> 1u) * 2u;
  return array<vec4<u32>, 4>($W[v], $W[v + 1u], z, z);
//#endif
//#if DTYPE == 7
  let bb = b & 7u;
  let n = bb >> 2u;
  let qq = bb & 3u;
  let base = (r * (in_dim / 256u) + (b >> 3u)) * 13u; // 52 words = 13 vec4
  let ql = base + n * 4u + (qq & 1u) * 2u;
  let qh = base + 8u + n * 2u;
  return array<vec4<u32>, 4>($W[ql], $W[ql + 1u], $W[qh], $W[qh + 1u]);
//#endif
}

// 8-group q (0..3) of block b's words as unscaled values (see wsc).
fn wdec_$W(k: array<vec4<u32>, 4>, q: u32, b: u32) -> array<vec4<f32>, 2> {
//#if DTYPE == 3
  let v = k[q >> 1u];
  let p = select(v.xy, v.zw, (q & 1u) == 1u);
  // int8 q as unsigned q + 128 (the sign bit flipped): unpack4xU8 lowers to fewer instructions than
  // the sign-extending unpack4xI8 on llvmpipe; wsc's c = -128 d takes the offset back out.
  return array<vec4<f32>, 2>(
    vec4<f32>(unpack4xU8(p.x ^ 0x80808080u)),
    vec4<f32>(unpack4xU8(p.y ^ 0x80808080u)),
  );
//#endif
//#if DTYPE >= 4
//#if DTYPE <= 6
//#if DTYPE <= 5
  // Q4_0 / Q4_1: groups 0, 1 low nibbles of words 0-1 / 2-3; groups 2, 3 the high nibbles.
  let p = select(k[0].xy, k[0].zw, (q & 1u) == 1u);
  let sh = (q >> 1u) * 4u;
//#else
  // Q4_K: the 64-element chunk's words; even sub-blocks the low nibbles, odd the high.
  let v = k[q >> 1u];
  let p = select(v.xy, v.zw, (q & 1u) == 1u);
  let sh = (b & 1u) * 4u;
//#endif
  return array<vec4<f32>, 2>(
    vec4<f32>(unpack4xU8((p.x >> sh) & 0x0f0f0f0fu)),
    vec4<f32>(unpack4xU8((p.y >> sh) & 0x0f0f0f0fu)),
  );
//#endif
//#endif
//#if DTYPE == 7
  // Q6_K: 4 low bits from ql (nibble by quarter), 2 high bits from qh (pair by quarter).
  let qq = b & 3u;
  let vl = k[q >> 1u];
  let vh = k[2u + (q >> 1u)];
  let l = select(vl.xy, vl.zw, (q & 1u) == 1u);
  let h = select(vh.xy, vh.zw, (q & 1u) == 1u);
  let shl = (qq >> 1u) * 4u;
  let shh = 2u * qq;
  return array<vec4<f32>, 2>(
    vec4<f32>(unpack4xU8(((l.x >> shl) & 0x0f0f0f0fu) | (((h.x >> shh) & 0x03030303u) << 4u))),
    vec4<f32>(unpack4xU8(((l.y >> shl) & 0x0f0f0f0fu) | (((h.y >> shh) & 0x03030303u) << 4u))),
  );
//#endif
}
//#endif
