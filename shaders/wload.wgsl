// Weight loads for every type the kernels read, dequantized in registers (src/gpu/weight_layout.ts has
// the buffer layout; ggml_quants.ts the block formats and the CPU twin). Included once per weight
// binding as `//#include wload W=<binding>`; the binding is array<vec4<u32>> holding one row chunk of
// `rows` rows of `in_dim` columns. Needs the DTYPE define (0 F32 .. 7 Q6_K, weight_layout.ts DTYPE_CODE)
// and `fn unpack2(word) -> vec2<f32>` (the 16-bit pair decoder) in the including shader.
//
// w8_W(r, g, in_dim, rows): the 8 weights of row r at columns 8g .. 8g + 7 (DTYPE >= 1). Block types
// need in_dim % 32 == 0 (Q4_K / Q6_K: % 256). Each 8-group is one or two word loads plus its scale:
//   Q8_0  2 int8 words            x d
//   Q4_0  2 nibble words           (q - 8) x d        elements 0..15 low nibbles, 16..31 high
//   Q4_1  2 nibble words           q x d + m
//   Q4_K  2 nibble words of the 64-element chunk; the sub-block's 6-bit scale and min (12 packed bytes)
//   Q6_K  2 ql words (4 low bits) + 2 qh words (2 high bits), int8 scale per 16 elements, x d
// w1_W(r, col, in_dim, rows): one weight (the embedding gather).

fn ww_$W(i: u32) -> u32 {
  return $W[i >> 2u][i & 3u];
}

// f16 number h of the buffer (two per word, the even one in the low half).
fn wh_$W(h: u32) -> f32 {
  let word = ww_$W(h >> 1u);
  return unpack2x16float(select(word, word >> 16u, (h & 1u) == 1u)).x;
}

// Two words at even word index i (one vec4 load).
fn w2_$W(i: u32) -> vec2<u32> {
  let v = $W[i >> 2u];
  return select(v.xy, v.zw, (i & 2u) != 0u);
}

fn w8_$W(r: u32, g: u32, in_dim: u32, rows: u32) -> array<vec4<f32>, 2> {
  if (DTYPE == 1u || DTYPE == 2u) {
    let q = $W[r * (in_dim / 8u) + g];
    return array<vec4<f32>, 2>(vec4<f32>(unpack2(q.x), unpack2(q.y)), vec4<f32>(unpack2(q.z), unpack2(q.w)));
  }
  if (DTYPE == 3u) {
    // Q8_0: block i = 8 body words; scale i after the rows * nb * 8 body words (rows * nb * 16 halves).
    let nb = in_dim / 32u;
    let i = r * nb + (g >> 2u);
    let q = w2_$W(i * 8u + (g & 3u) * 2u);
    let d = wh_$W(rows * nb * 16u + i);
    return array<vec4<f32>, 2>(vec4<f32>(unpack4xI8(q.x)) * d, vec4<f32>(unpack4xI8(q.y)) * d);
  }
  if (DTYPE == 4u || DTYPE == 5u) {
    // Q4_0 / Q4_1: block i = 4 nibble words; quarter 0/1 = low nibbles of words 0-1/2-3, 2/3 = high.
    let nb = in_dim / 32u;
    let i = r * nb + (g >> 2u);
    let qq = g & 3u;
    let words = w2_$W(i * 4u + (qq & 1u) * 2u);
    let sh = (qq >> 1u) * 4u;
    let lo = vec4<f32>(unpack4xU8((words.x >> sh) & 0x0f0f0f0fu));
    let hi = vec4<f32>(unpack4xU8((words.y >> sh) & 0x0f0f0f0fu));
    if (DTYPE == 4u) {
      let d = wh_$W(rows * nb * 8u + i);
      return array<vec4<f32>, 2>((lo - 8.0) * d, (hi - 8.0) * d);
    }
    let dm = unpack2x16float(ww_$W(rows * nb * 4u + i));
    return array<vec4<f32>, 2>(lo * dm.x + dm.y, hi * dm.x + dm.y);
  }
  if (DTYPE == 6u) {
    // Q4_K: super-block i = 36 words: d|dmin, 3 words of scales, 32 words of nibbles. 8-group g of row
    // = sub-block s (32 elements) = chunk s / 2 (64 elements: low nibbles for even s, high for odd).
    let nb = in_dim / 256u;
    let gi = g & 31u;
    let base = (r * nb + (g >> 5u)) * 36u;
    let s = gi >> 2u;
    let words = w2_$W(base + 4u + (s >> 1u) * 8u + (gi & 3u) * 2u);
    let sh = (s & 1u) * 4u;
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
    let d = dm.x * f32(sc);
    let m = dm.y * f32(mn);
    let lo = vec4<f32>(unpack4xU8((words.x >> sh) & 0x0f0f0f0fu));
    let hi = vec4<f32>(unpack4xU8((words.y >> sh) & 0x0f0f0f0fu));
    return array<vec4<f32>, 2>(lo * d - m, hi * d - m);
  }
  // Q6_K: super-block i = 52 body words (ql 32, qh 16, scales 4); d after rows * nb * 104 halves.
  // Element e = 8 gi: half n = e / 128, quarter qq = (e % 128) / 32, l = e % 32.
  let nb = in_dim / 256u;
  let gi = g & 31u;
  let i = r * nb + (g >> 5u);
  let base = i * 52u;
  let n = gi >> 4u;
  let qq = (gi >> 2u) & 3u;
  let l = (gi & 3u) * 8u;
  let ql = w2_$W(base + (n * 64u + (qq & 1u) * 32u + l) / 4u);
  let qh = w2_$W(base + 32u + (n * 32u + l) / 4u);
  let shl = (qq >> 1u) * 4u;
  let shh = 2u * qq;
  let sb = n * 8u + qq * 2u + l / 16u;
  let scw = ww_$W(base + 48u + sb / 4u);
  let sc = f32((bitcast<i32>(scw << (24u - 8u * (sb & 3u)))) >> 24u);
  let d = wh_$W(rows * nb * 104u + i) * sc;
  let lo = vec4<f32>(unpack4xU8(((ql.x >> shl) & 0x0f0f0f0fu) | (((qh.x >> shh) & 0x03030303u) << 4u)));
  let hi = vec4<f32>(unpack4xU8(((ql.y >> shl) & 0x0f0f0f0fu) | (((qh.y >> shh) & 0x03030303u) << 4u)));
  return array<vec4<f32>, 2>((lo - 32.0) * d, (hi - 32.0) * d);
}

fn w1_$W(r: u32, col: u32, in_dim: u32, rows: u32) -> f32 {
  if (DTYPE == 0u) {
    return bitcast<f32>(ww_$W(r * in_dim + col));
  }
  if (DTYPE == 1u || DTYPE == 2u) {
    let e = r * in_dim + col;
    let pair = unpack2(ww_$W(e >> 1u));
    return select(pair.x, pair.y, (e & 1u) == 1u);
  }
  let v = w8_$W(r, col / 8u, in_dim, rows);
  let k = col & 7u;
  return select(v[0][k & 3u], v[1][k & 3u], k >= 4u);
}
