// The Llama forward pass in WebAssembly with 128-bit SIMD: the kernels of the wasm backend
// (src/wasm/). Built by scripts/build_wasm.sh into llama.wasm beside this file (committed; a test
// rebuilds it and compares bytes).
//
// Memory: one shared WebAssembly.Memory, imported, that every thread's instance of this module uses.
// Nothing here allocates: the TypeScript side lays out weights, KV caches, scratch and the two structs
// below, and passes their addresses. There are no mutable C globals (each thread's instance would have
// its own copy); the stack pointer is set per instance by the loader.
//
// Threads: every thread runs the whole forward (run_forward) on its slice of each phase, with a
// barrier between phases (llama.cpp's scheme): ~9 barriers per layer, each ~1 us when threads spin.
// Thread 0 is the caller's JS thread; threads 1..N-1 sit in worker_loop.
//
// Exactness: the greedy speculative output must equal AR's on this engine, so a token's logits must
// not depend on which other tokens share its forward. Every per-token result below is computed by the
// same sequence of IEEE operations whatever n is: tokens are processed in groups of up to 4 that share
// weight loads, but each token has its own accumulators, updated in the same order. No -ffast-math.
//
// Arithmetic:
// - F32/F16/BF16 weights: f32 multiply-adds against f32 activations (f16 -> f32 by bit operations).
// - Quantized weights (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K): activations are quantized per 32-element block to
//   int16 (scale = max|x| / 32767, round to nearest even), each block's dot product is exact in int32
//   (i32x4.dot_i16x8_s), then scaled in f32. The int16 rounding is 2^-16 relative to a block's largest
//   value: far below the weights' own quantization step (and 16x finer than llama.cpp's int8
//   activations), at half the instructions of dequantizing to f32.

#include <stdint.h>
#include <wasm_simd128.h>

#define SEQ __ATOMIC_SEQ_CST

// ggml type ids (GGUF), as in src/model/ggml_quants.ts.
enum { T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q8_0 = 8, T_Q4_K = 12, T_Q6_K = 14, T_BF16 = 30 };

// A weight matrix: (rows, cols) row-major in its ggml type.
typedef struct {
  int32_t type;
  uint32_t data;
} Mat;

// One decoder layer. Norm gains are f32; caches are (capacity, kv_dim) f32.
typedef struct {
  Mat wq, wk, wv, wo, gate, up, down;
  uint32_t attn_norm, mlp_norm;
  uint32_t k_cache, v_cache;
} Layer;

// A model and its next forward. Every field is 4 bytes (the TS mirror, src/wasm/layout.ts, writes them
// by index; ctx_size() lets it check the count).
typedef struct {
  // config
  int32_t d, n_layers, n_heads, n_kv_heads, head_dim, hidden, vocab, capacity;
  float eps;
  int32_t quantized;  // 1 when any matrix is quantized: activations are also quantized to int16
  // weights
  Mat lm_head;
  uint32_t final_norm, layers;  // f32 (d); Layer[n_layers]
  // this forward
  int32_t n, n_seqs, n_logits;
  uint32_t seqs;        // Seq[n_seqs]: which sequence each token row belongs to
  uint32_t rope_cos;    // f32 (n, head_dim / 2)
  uint32_t rope_sin;    // f32 (n, head_dim / 2)
  uint32_t logit_rows;  // i32 (n_logits)
  uint32_t logits;      // f32 (n_logits, vocab) out
  // scratch, sized for max_batch tokens
  uint32_t x;       // f32 (n, d) residual stream; the embeddings on entry
  uint32_t xn;      // f32 (n, wide) normed input of the next matmul; wide = max(d, hidden, n_heads * head_dim)
  uint32_t q;       // f32 (n, n_heads * head_dim)
  uint32_t att;     // f32 (n, n_heads * head_dim)
  uint32_t gate;    // f32 (n, hidden)
  uint32_t up;      // f32 (n, hidden)
  uint32_t xq;      // i16 (n, wide) quantized xn
  uint32_t xd;      // f32 (n, wide / 32) block scales of xq
  uint32_t xs;      // f32 (n, wide / 32) block sums of the dequantized xq
  uint32_t scores;  // f32 (n_threads, capacity) per-thread attention scores
  uint32_t acc;     // f32 (n_threads, head_dim) per-thread attention output row
  uint32_t kv_new;  // f32 (n, 2 kv_dim) this forward's keys and values before they go to their slots
} Ctx;

// One sequence's share of a forward (a batch of several streams is one forward): its token rows
// [t0, t0 + n), which all belong to it, in row order; its cache region, slots [base, base + capacity)
// of every layer's cache, of which [base, base + past) are in use; its new rows' keys and values go to
// base + past + i. Attention of a row reads its own region only, so a token's result is the same
// whichever sequences share the forward (the matmuls treat every row alike, see the header).
typedef struct {
  int32_t t0, n, base, past;
  uint32_t mask;  // u8 (n, past + n) visibility in its region, 0 = causal
} Seq;

// What the threads share: the job they run and the barrier.
typedef struct {
  int32_t n_threads;
  int32_t job_gen;   // bumped by thread 0 to start a job
  int32_t job_kind;  // JOB_FORWARD or JOB_QUIT
  uint32_t job_ctx;  // Ctx* of the job
  int32_t bar_count, bar_gen;
} Pool;

enum { JOB_FORWARD = 1, JOB_QUIT = 2 };

#define P(T, a) ((T*)(uintptr_t)(a))

// ---------------------------------------------------------------------------------------------------
// scalar math without libc

static inline float f32_from_bits(uint32_t b) {
  union { uint32_t u; float f; } v = {b};
  return v.f;
}

static inline float f16_to_f32(uint16_t h) {
  // The same bit trick as the SIMD path (f16_pair below): exact for normals and subnormals.
  int32_t u = ((int32_t)((uint32_t)h << 16)) >> 3;
  return f32_from_bits((uint32_t)u & 0x8FFFE000u) * 0x1p112f;
}

// f16 -> f32 of the blocks' scales by table (filled once by init()): two loads instead of ~8 scalar ops.
// The table lives in the shared linear memory (not a wasm global), so every thread sees the one copy.
static float F16_TABLE[65536];

static inline float ld_f16(const uint8_t* p) { return F16_TABLE[*(const uint16_t*)p]; }

// e^x for f32: Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, degree-6 Taylor polynomial
// (relative error < 2e-7), then scale by 2^k through the exponent bits.
static float exp_f32(float x) {
  if (x < -87.0f) return 0.0f;
  if (x > 88.0f) x = 88.0f;
  float k = __builtin_rintf(x * 1.44269504088896341f);
  float r = x - k * 0.693145751953125f - k * 1.42860682030941723e-6f;
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
  return p * f32_from_bits((uint32_t)((int32_t)k + 127) << 23);
}

static inline float hsum(v128_t v) {
  return (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1)) +
         (wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3));
}

static inline int32_t hsum_i32(v128_t v) {
  return (wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1)) +
         (wasm_i32x4_extract_lane(v, 2) + wasm_i32x4_extract_lane(v, 3));
}

// [s, e) of `total` items for thread `tid` of `nth`.
static inline void split(int total, int tid, int nth, int* s, int* e) {
  *s = (int)((int64_t)total * tid / nth);
  *e = (int)((int64_t)total * (tid + 1) / nth);
}

// ---------------------------------------------------------------------------------------------------
// threads

static void barrier(Pool* p) {
  if (p->n_threads <= 1) return;
  int gen = __atomic_load_n(&p->bar_gen, SEQ);
  if (__atomic_add_fetch(&p->bar_count, 1, SEQ) == p->n_threads) {
    __atomic_store_n(&p->bar_count, 0, SEQ);
    __atomic_add_fetch(&p->bar_gen, 1, SEQ);
    __builtin_wasm_memory_atomic_notify(&p->bar_gen, 0x7fffffff);
  } else {
    // Spin first (phases are microseconds apart); sleep when a thread is descheduled.
    int spins = 0;
    while (__atomic_load_n(&p->bar_gen, SEQ) == gen) {
      if (++spins > 20000) __builtin_wasm_memory_atomic_wait32(&p->bar_gen, gen, 200000);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// activations

// rmsnorm of x row (d) into out: out = x / sqrt(mean(x^2) + eps) * w.
static void rmsnorm_row(const float* x, const float* w, int d, float eps, float* out) {
  v128_t ss = wasm_f32x4_splat(0.0f);
  int i = 0;
  for (; i + 4 <= d; i += 4) {
    v128_t v = wasm_v128_load(x + i);
    ss = wasm_f32x4_add(ss, wasm_f32x4_mul(v, v));
  }
  float s = hsum(ss);
  for (; i < d; i++) s += x[i] * x[i];
  float r = 1.0f / __builtin_sqrtf(s / (float)d + eps);
  v128_t rv = wasm_f32x4_splat(r);
  i = 0;
  for (; i + 4 <= d; i += 4) {
    wasm_v128_store(out + i, wasm_f32x4_mul(wasm_f32x4_mul(wasm_v128_load(x + i), rv), wasm_v128_load(w + i)));
  }
  for (; i < d; i++) out[i] = x[i] * r * w[i];
}

// Quantize a row of `cols` f32 (cols / 32 whole blocks; a tail is left unquantized) to int16 per
// 32-block: xq = round(x / dx), dx = max|x| / 32767; xs = dx * sum(xq) (for the min terms of Q4_1, Q4_K).
static void quantize_row(const float* x, int cols, int16_t* xq, float* xd, float* xs) {
  int nb = cols / 32;
  for (int b = 0; b < nb; b++) {
    const float* xb = x + 32 * b;
    v128_t m = wasm_f32x4_splat(0.0f);
    for (int i = 0; i < 32; i += 4) m = wasm_f32x4_max(m, wasm_f32x4_abs(wasm_v128_load(xb + i)));
    m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 2, 3, 0, 1));
    m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2));
    const float amax = wasm_f32x4_extract_lane(m, 0);
    float d = amax / 32767.0f;
    float id = d > 0.0f ? 1.0f / d : 0.0f;
    v128_t idv = wasm_f32x4_splat(id);
    v128_t sum = wasm_i32x4_splat(0);
    for (int i = 0; i < 32; i += 8) {
      v128_t a = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(xb + i), idv)));
      v128_t c = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(xb + i + 4), idv)));
      sum = wasm_i32x4_add(sum, wasm_i32x4_add(a, c));
      wasm_v128_store(xq + 32 * b + i, wasm_i16x8_narrow_i32x4(a, c));
    }
    xd[b] = d;
    xs[b] = d * (float)hsum_i32(sum);
  }
}

// ---------------------------------------------------------------------------------------------------
// matmul: out[t * os + r] (+)= dot(W[r, :], x_t) for rows [r0, r1), tokens [0, n)

typedef struct {
  const float* x;    // f32 (n, cols), rows xstride apart: the input of float matrices
  const int16_t* q;  // i16 (n, cols), rows qstride apart: quantized x, for quantized matrices
  const float* d;    // f32 (n, cols / 32), rows bstride apart: block scales of q
  const float* s;    // f32 (n, cols / 32): block sums of the dequantized q
  int xstride, qstride, bstride;
} Act;

// f16 x 8 -> two f32x4: (h << 16) >>s 3 puts sign, exponent and mantissa where an f32 with a 5-bit
// exponent field wants them; masking the sign copies and scaling by 2^112 rebias it (exact).
static inline void f16x8(v128_t h, v128_t* lo, v128_t* hi) {
  const v128_t z = wasm_i32x4_splat(0), m = wasm_i32x4_splat((int32_t)0x8FFFE000u);
  const v128_t s = wasm_f32x4_splat(0x1p112f);
  *lo = wasm_f32x4_mul(wasm_v128_and(wasm_i32x4_shr(wasm_i16x8_shuffle(z, h, 0, 8, 1, 9, 2, 10, 3, 11), 3), m), s);
  *hi = wasm_f32x4_mul(wasm_v128_and(wasm_i32x4_shr(wasm_i16x8_shuffle(z, h, 0, 12, 1, 13, 2, 14, 3, 15), 3), m), s);
}

// int32 dot of 32 int8 weights (two i8x16) with token t's 32 int16 activations.
static inline v128_t dot32(v128_t w0, v128_t w1, const int16_t* x) {
  v128_t s = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(w0), wasm_v128_load(x));
  s = wasm_i32x4_add(s, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(w0), wasm_v128_load(x + 8)));
  s = wasm_i32x4_add(s, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(w1), wasm_v128_load(x + 16)));
  return wasm_i32x4_add(s, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(w1), wasm_v128_load(x + 24)));
}

// 16 int8 weights with 16 int16 activations.
static inline v128_t dot16(v128_t w, const int16_t* x) {
  v128_t s = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(w), wasm_v128_load(x));
  return wasm_i32x4_add(s, wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(w), wasm_v128_load(x + 8)));
}

// Unpack the 6-bit scale and min of sub-block j (0..7) of a Q4_K block's 12 scale bytes.
static inline void scale_min_k4(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// The K-quant rows (Q4_K, Q6_K), R rows at once for G tokens (res is (G, R)): per token, f32x4 acc +=
// f32(int32 sub-block dot) * (d * sc * dx); Q4_K's min terms go to a scalar. Block order, and so every
// token's sum, is the same for any R and G.
static inline __attribute__((always_inline)) void rows_k(int type, const uint8_t* w, int rb, int R, int cols,
                                                          const Act* a, int G, float* res) {
  v128_t acc[8];
  float accm[8];
  for (int k = 0; k < R * G; k++) {
    acc[k] = wasm_f32x4_splat(0.0f);
    accm[k] = 0.0f;
  }
  const v128_t lo4 = wasm_i8x16_splat(0x0F);
  const int nb = cols / 256;
  if (type == T_Q4_K) {
    for (int b = 0; b < nb; b++) {
      for (int r = 0; r < R; r++) {
        const uint8_t* blk = w + r * rb + b * 144;
        float d = ld_f16(blk), dmin = ld_f16(blk + 2);
        const uint8_t* sc = blk + 4;
        const uint8_t* qs = blk + 16;
        for (int j = 0; j < 4; j++) {
          // 32 bytes: low nibbles are sub-block 2j, high nibbles 2j+1.
          v128_t qa = wasm_v128_load(qs + 32 * j), qb = wasm_v128_load(qs + 32 * j + 16);
          v128_t la = wasm_v128_and(qa, lo4), lb = wasm_v128_and(qb, lo4);
          v128_t ha = wasm_u8x16_shr(qa, 4), hb = wasm_u8x16_shr(qb, 4);
          int s1, m1, s2, m2;
          scale_min_k4(2 * j, sc, &s1, &m1);
          scale_min_k4(2 * j + 1, sc, &s2, &m2);
          const float d1 = d * (float)s1, d2 = d * (float)s2, n1 = dmin * (float)m1, n2 = dmin * (float)m2;
          const int xb = b * 8 + 2 * j;
          for (int t = 0; t < G; t++) {
            const int k = t * R + r;
            const int16_t* x = a->q + t * a->qstride + 32 * xb;
            const float* xd = a->d + t * a->bstride + xb;
            const float* xs = a->s + t * a->bstride + xb;
            v128_t s = dot32(la, lb, x);
            acc[k] = wasm_f32x4_add(acc[k], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(s), wasm_f32x4_splat(d1 * xd[0])));
            s = dot32(ha, hb, x + 32);
            acc[k] = wasm_f32x4_add(acc[k], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(s), wasm_f32x4_splat(d2 * xd[1])));
            accm[k] += n1 * xs[0];
            accm[k] += n2 * xs[1];
          }
        }
      }
    }
    for (int k = 0; k < R * G; k++) accm[k] = -accm[k];
  } else {  // T_Q6_K
    const v128_t three = wasm_i8x16_splat(3), k32 = wasm_i8x16_splat(32);
    for (int b = 0; b < nb; b++) {
      for (int r = 0; r < R; r++) {
        const uint8_t* blk = w + r * rb + b * 210;
        const float d = ld_f16(blk + 208);
        for (int half = 0; half < 2; half++) {
          const uint8_t* ql = blk + 64 * half;
          const uint8_t* qh = blk + 128 + 32 * half;
          const int8_t* sc = (const int8_t*)(blk + 192 + 8 * half);
          v128_t l0 = wasm_v128_load(ql), l1 = wasm_v128_load(ql + 16);
          v128_t l2 = wasm_v128_load(ql + 32), l3 = wasm_v128_load(ql + 48);
          v128_t h0 = wasm_v128_load(qh), h1 = wasm_v128_load(qh + 16);
          // Element groups of 16 in storage order: [l, l+16) for l = 0, 16 (q1), 32, 48 (q2), 64, 80 (q3),
          // 96, 112 (q4); group g has scale sc[g].
          v128_t q[8];
          q[0] = wasm_i8x16_sub(wasm_v128_or(wasm_v128_and(l0, lo4), wasm_i8x16_shl(wasm_v128_and(h0, three), 4)), k32);
          q[1] = wasm_i8x16_sub(wasm_v128_or(wasm_v128_and(l1, lo4), wasm_i8x16_shl(wasm_v128_and(h1, three), 4)), k32);
          q[2] = wasm_i8x16_sub(
              wasm_v128_or(wasm_v128_and(l2, lo4), wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(h0, 2), three), 4)), k32);
          q[3] = wasm_i8x16_sub(
              wasm_v128_or(wasm_v128_and(l3, lo4), wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(h1, 2), three), 4)), k32);
          q[4] = wasm_i8x16_sub(
              wasm_v128_or(wasm_u8x16_shr(l0, 4), wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(h0, 4), three), 4)), k32);
          q[5] = wasm_i8x16_sub(
              wasm_v128_or(wasm_u8x16_shr(l1, 4), wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(h1, 4), three), 4)), k32);
          q[6] = wasm_i8x16_sub(wasm_v128_or(wasm_u8x16_shr(l2, 4), wasm_i8x16_shl(wasm_u8x16_shr(h0, 6), 4)), k32);
          q[7] = wasm_i8x16_sub(wasm_v128_or(wasm_u8x16_shr(l3, 4), wasm_i8x16_shl(wasm_u8x16_shr(h1, 6), 4)), k32);
          const int xb0 = b * 8 + half * 4;
          for (int t = 0; t < G; t++) {
            const int kk = t * R + r;
            const int16_t* x = a->q + t * a->qstride + 32 * xb0;
            const float* xd = a->d + t * a->bstride + xb0;
            for (int k = 0; k < 4; k++) {
              // Two 16-groups per 32-block of x: scale each int32 dot by its int8 scale (exact in int32:
              // |q| <= 32, |x| <= 32767, 4 products per lane, |sc| <= 128).
              v128_t s = wasm_i32x4_add(wasm_i32x4_mul(dot16(q[2 * k], x + 32 * k), wasm_i32x4_splat(sc[2 * k])),
                                        wasm_i32x4_mul(dot16(q[2 * k + 1], x + 32 * k + 16), wasm_i32x4_splat(sc[2 * k + 1])));
              acc[kk] = wasm_f32x4_add(acc[kk], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(s), wasm_f32x4_splat(d * xd[k])));
            }
          }
        }
      }
    }
  }
  for (int k = 0; k < R * G; k++) res[k] = hsum(acc[k]) + accm[k];
}

// The 32-element block types (Q8_0, Q4_0, Q4_1), R rows at once for G tokens (res is (G, R)): per
// token, f32x4 acc += f32(int32 block dot) * (dw * dx); a scalar holds Q4_1's min terms. Block order, and
// so every token's sum, is the same for any R and G.
static inline __attribute__((always_inline)) void rows_q32(int type, const uint8_t* w, int rb, int R, int cols,
                                                            const Act* a, int G, float* res) {
  v128_t acc[8];
  float accm[8];
  for (int k = 0; k < R * G; k++) {
    acc[k] = wasm_f32x4_splat(0.0f);
    accm[k] = 0.0f;
  }
  const v128_t lo4 = wasm_i8x16_splat(0x0F);
  const int nb = cols / 32, bytes = type == T_Q8_0 ? 34 : type == T_Q4_0 ? 18 : 20;
  for (int b = 0; b < nb; b++) {
    for (int r = 0; r < R; r++) {
      const uint8_t* blk = w + r * rb + b * bytes;
      v128_t w0, w1;
      if (type == T_Q8_0) {
        w0 = wasm_v128_load(blk + 2);
        w1 = wasm_v128_load(blk + 18);
      } else {
        v128_t q = wasm_v128_load(blk + (type == T_Q4_0 ? 2 : 4));
        w0 = wasm_v128_and(q, lo4);
        w1 = wasm_u8x16_shr(q, 4);
        if (type == T_Q4_0) {
          w0 = wasm_i8x16_sub(w0, wasm_i8x16_splat(8));
          w1 = wasm_i8x16_sub(w1, wasm_i8x16_splat(8));
        }
      }
      const float dw = ld_f16(blk);
      for (int t = 0; t < G; t++) {
        const int k = t * R + r;
        v128_t s = dot32(w0, w1, a->q + t * a->qstride + 32 * b);
        acc[k] = wasm_f32x4_add(acc[k], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(s), wasm_f32x4_splat(dw * a->d[t * a->bstride + b])));
        if (type == T_Q4_1) accm[k] += ld_f16(blk + 2) * a->s[t * a->bstride + b];
      }
    }
  }
  for (int k = 0; k < R * G; k++) res[k] = hsum(acc[k]) + accm[k];
}

// Float rows (F32, F16, BF16), R at a time for G tokens (res is (G, R)): two f32x4 accumulators per
// (row, token) (even and odd 4-lane chunks of each 8), then a scalar tail; the same order for any R, G.
static inline __attribute__((always_inline)) void rows_float(int type, const uint8_t* w, int rb, int R, int cols,
                                                              const Act* a, int G, float* res) {
  v128_t acc0[8], acc1[8];
  for (int k = 0; k < R * G; k++) acc0[k] = acc1[k] = wasm_f32x4_splat(0.0f);
  int i = 0;
  for (; i + 8 <= cols; i += 8) {
    for (int r = 0; r < R; r++) {
      const uint8_t* wr = w + r * rb;
      v128_t w0, w1;
      if (type == T_F32) {
        w0 = wasm_v128_load(wr + 4 * i);
        w1 = wasm_v128_load(wr + 4 * i + 16);
      } else if (type == T_F16) {
        f16x8(wasm_v128_load(wr + 2 * i), &w0, &w1);
      } else {
        const v128_t z = wasm_i32x4_splat(0);
        v128_t h = wasm_v128_load(wr + 2 * i);
        w0 = wasm_i16x8_shuffle(z, h, 0, 8, 1, 9, 2, 10, 3, 11);
        w1 = wasm_i16x8_shuffle(z, h, 0, 12, 1, 13, 2, 14, 3, 15);
      }
      for (int t = 0; t < G; t++) {
        const float* x = a->x + t * a->xstride + i;
        const int k = t * R + r;
        acc0[k] = wasm_f32x4_add(acc0[k], wasm_f32x4_mul(w0, wasm_v128_load(x)));
        acc1[k] = wasm_f32x4_add(acc1[k], wasm_f32x4_mul(w1, wasm_v128_load(x + 4)));
      }
    }
  }
  for (int k = 0; k < R * G; k++) res[k] = hsum(wasm_f32x4_add(acc0[k], acc1[k]));
  for (; i < cols; i++) {
    for (int r = 0; r < R; r++) {
      const uint8_t* wr = w + r * rb;
      float wv = type == T_F32 ? P(const float, (uintptr_t)(wr + 4 * i))[0]
                 : type == T_F16 ? ld_f16(wr + 2 * i)
                                 : f32_from_bits((uint32_t)(wr[2 * i] | (wr[2 * i + 1] << 8)) << 16);
      for (int t = 0; t < G; t++) res[t * R + r] += wv * a->x[t * a->xstride + i];
    }
  }
}

static inline int is_quant(int type) { return type != T_F32 && type != T_F16 && type != T_BF16; }

static int row_bytes(int type, int cols) {
  switch (type) {
    case T_F32: return 4 * cols;
    case T_F16:
    case T_BF16: return 2 * cols;
    case T_Q8_0: return cols / 32 * 34;
    case T_Q4_0: return cols / 32 * 18;
    case T_Q4_1: return cols / 32 * 20;
    case T_Q4_K: return cols / 256 * 144;
    default: return cols / 256 * 210;  // T_Q6_K
  }
}

// `Act` advanced to token t0.
static inline Act act_at(const Act* a, int t0) {
  Act at = *a;
  at.x += t0 * a->xstride;
  at.q += t0 * a->qstride;
  at.d += t0 * a->bstride;
  at.s += t0 * a->bstride;
  return at;
}

// One pass of R rows x G tokens (constant R, G and type after inlining; res is (G, R)).
#define PASS(R, G)                                                                     \
  do {                                                                                 \
    switch (W->type) {                                                                 \
      case T_Q8_0: rows_q32(T_Q8_0, row, rb, R, cols, &at, G, res); break;             \
      case T_Q4_0: rows_q32(T_Q4_0, row, rb, R, cols, &at, G, res); break;             \
      case T_Q4_1: rows_q32(T_Q4_1, row, rb, R, cols, &at, G, res); break;             \
      case T_Q4_K: rows_k(T_Q4_K, row, rb, R, cols, &at, G, res); break;               \
      case T_Q6_K: rows_k(T_Q6_K, row, rb, R, cols, &at, G, res); break;               \
      case T_F32: rows_float(T_F32, row, rb, R, cols, &at, G, res); break;             \
      case T_F16: rows_float(T_F16, row, rb, R, cols, &at, G, res); break;             \
      default: rows_float(T_BF16, row, rb, R, cols, &at, G, res); break;               \
    }                                                                                  \
  } while (0)

// Rows [r0, r1) in passes of R rows x up to GT tokens: several rows per pass are independent weight
// streams (more loads in flight) sharing the tokens' activation loads; several tokens per pass share
// the rows' decoding. Decoding (n = 1): 8 rows (Q8_0), 4 (Q4_0, Q4_1: 8 measured slower; float
// types), 1 (K-quants, whose decoding is the cost: more rows measured no faster); n >= 2: 2 rows x 4 tokens for quantized types,
// 2 rows x 2 tokens for float types at n = 2, else 1 row x 4 (their two accumulators per pair: measured
// faster).
// Leftover rows go one at a time. Every pass computes a (row, token) pair with the same operations.
__attribute__((noinline)) static void matmul_rows(const Mat* W, int cols, int r0, int r1, const Act* a, int n, float* out, int os, int accum) {
  const int rb = row_bytes(W->type, cols), q = is_quant(W->type);
  const int q32 = W->type == T_Q8_0 || W->type == T_Q4_0 || W->type == T_Q4_1;
  const uint8_t* base = P(const uint8_t, W->data);
  const int R0 = n == 1 ? (W->type == T_Q8_0 ? 8 : q32 || !q ? 4 : 1) : q || n == 2 ? 2 : 1;
  const int GT = n == 1 ? 1 : n == 2 ? 2 : 4;
  for (int r = r0; r < r1;) {
    const int R = r + R0 <= r1 ? R0 : 1;
    const uint8_t* row = base + (int64_t)r * rb;
    for (int t0 = 0; t0 < n; t0 += GT) {
      float res[8];
      const Act at = act_at(a, t0);
      const int g = n - t0 < GT ? n - t0 : GT;
      if (R == 8) {
        rows_q32(T_Q8_0, row, rb, 8, cols, &at, 1, res);  // Q8_0 only
      } else if (R == 4) {
        PASS(4, 1);
      } else if (R == 2) {
        switch (g) {
          case 4: PASS(2, 4); break;
          case 3: PASS(2, 3); break;
          case 2: PASS(2, 2); break;
          default: PASS(2, 1); break;
        }
      } else {
        switch (g) {
          case 4: PASS(1, 4); break;
          case 3: PASS(1, 3); break;
          case 2: PASS(1, 2); break;
          default: PASS(1, 1); break;
        }
      }
      for (int t = 0; t < g; t++)
        for (int k = 0; k < R; k++) {
          float* o = out + (t0 + t) * os + r + k;
          *o = accum ? *o + res[t * R + k] : res[t * R + k];
        }
    }
    r += R;
  }
}

// ---------------------------------------------------------------------------------------------------
// rope, attention, swiglu

// RoPE (HF rotate_half) on `heads` heads of one row, with this token's cos/sin (head_dim / 2 each).
static void rope_row(float* x, int heads, int hd, const float* cs, const float* sn) {
  const int half = hd / 2;
  for (int h = 0; h < heads; h++) {
    float* b = x + h * hd;
    for (int i = 0; i < half; i++) {
      float x1 = b[i], x2 = b[i + half];
      b[i] = x1 * cs[i] - x2 * sn[i];
      b[i + half] = x2 * cs[i] + x1 * sn[i];
    }
  }
}

static inline float dot_f32(const float* a, const float* b, int n) {
  v128_t s = wasm_f32x4_splat(0.0f);
  int i = 0;
  for (; i + 4 <= n; i += 4) s = wasm_f32x4_add(s, wasm_f32x4_mul(wasm_v128_load(a + i), wasm_v128_load(b + i)));
  float r = hsum(s);
  for (; i < n; i++) r += a[i] * b[i];
  return r;
}

// One query row and head over the visible slots of (k, v) (capacity, kv_dim): softmax(q.k / sqrt(hd)) v.
// mask: the row's (past + n) visibility bytes, or 0 for causal (slots [0, limit)).
static void attend(const float* q, const float* kc, const float* vc, int kv_dim, int hd, const uint8_t* mask,
                   int limit, float* scores, float* acc, float* out) {
  const float scale = 1.0f / __builtin_sqrtf((float)hd);
  float mx = -3.4e38f;
  for (int j = 0; j < limit; j++) {
    if (mask && !mask[j]) continue;
    float s = dot_f32(q, kc + j * kv_dim, hd) * scale;
    scores[j] = s;
    if (s > mx) mx = s;
  }
  float sum = 0.0f;
  for (int i = 0; i < hd; i++) acc[i] = 0.0f;
  for (int j = 0; j < limit; j++) {
    if (mask && !mask[j]) continue;
    const float p = exp_f32(scores[j] - mx);
    sum += p;
    const v128_t pv = wasm_f32x4_splat(p);
    const float* v = vc + j * kv_dim;
    int i = 0;
    for (; i + 4 <= hd; i += 4) wasm_v128_store(acc + i, wasm_f32x4_add(wasm_v128_load(acc + i), wasm_f32x4_mul(pv, wasm_v128_load(v + i))));
    for (; i < hd; i++) acc[i] += p * v[i];
  }
  const float inv = 1.0f / sum;
  for (int i = 0; i < hd; i++) out[i] = acc[i] * inv;
}

static inline void copy_f32(float* dst, const float* src, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(dst + i, wasm_v128_load(src + i));
  for (; i < n; i++) dst[i] = src[i];
}

static inline float silu_mul(float g, float u) { return g / (1.0f + exp_f32(-g)) * u; }

// ---------------------------------------------------------------------------------------------------
// the forward pass

// Elements per token of the xn and xq scratch rows: the widest matmul input.
static inline int wide_of(const Ctx* c) {
  const int qdim = c->n_heads * c->head_dim;
  const int w = c->d > c->hidden ? c->d : c->hidden;
  return w > qdim ? w : qdim;
}

// The matmul input `x` (rows xstride apart) with the quantized scratch (rows `wide` apart).
static inline Act act_of(const Ctx* c, const float* x, int xstride) {
  const int wide = wide_of(c);
  Act a = {x, P(const int16_t, c->xq), P(const float, c->xd), P(const float, c->xs), xstride, wide, wide / 32};
  return a;
}

// Normalize rows [s, e) of x into xn (and quantize them when the model has quantized matrices).
static void norm_rows(Ctx* c, const float* x, int stride, const float* w, int s, int e) {
  const int wide = wide_of(c);
  for (int t = s; t < e; t++) {
    float* o = P(float, c->xn) + t * wide;
    rmsnorm_row(x + t * stride, w, c->d, c->eps, o);
    if (c->quantized)
      quantize_row(o, c->d, P(int16_t, c->xq) + t * wide, P(float, c->xd) + t * (wide / 32), P(float, c->xs) + t * (wide / 32));
  }
}

static void run_forward(Pool* p, Ctx* c, int tid) {
  const int nth = p->n_threads, n = c->n, d = c->d, hd = c->head_dim;
  const int qdim = c->n_heads * hd, kvd = c->n_kv_heads * hd, hid = c->hidden, group = c->n_heads / c->n_kv_heads;
  const int wide = wide_of(c);
  float* x = P(float, c->x);
  float* xn = P(float, c->xn);
  float* qb = P(float, c->q);
  float* att = P(float, c->att);
  float* kn = P(float, c->kv_new);
  float* vn = kn + n * kvd;
  float* scores = P(float, c->scores) + tid * c->capacity;
  float* acc = P(float, c->acc) + tid * hd;
  const Layer* layers = P(const Layer, c->layers);
  const Seq* seqs = P(const Seq, c->seqs);
  int s, e;
  for (int l = 0; l < c->n_layers; l++) {
    const Layer* L = layers + l;
    float* kc = P(float, L->k_cache);
    float* vc = P(float, L->v_cache);
    split(n, tid, nth, &s, &e);
    norm_rows(c, x, d, P(const float, L->attn_norm), s, e);
    barrier(p);
    // q, k, v as one row space [0, qdim + 2 kvd); k and v rows land in kv_new, then in their slots.
    Act a = act_of(c, xn, wide);
    split(qdim + 2 * kvd, tid, nth, &s, &e);
    if (s < qdim) matmul_rows(&L->wq, d, s, e < qdim ? e : qdim, &a, n, qb, qdim, 0);
    if (e > qdim && s < qdim + kvd) {
      const int r0 = (s > qdim ? s : qdim) - qdim, r1 = (e < qdim + kvd ? e : qdim + kvd) - qdim;
      matmul_rows(&L->wk, d, r0, r1, &a, n, kn, kvd, 0);
    }
    if (e > qdim + kvd) {
      const int r0 = (s > qdim + kvd ? s : qdim + kvd) - qdim - kvd, r1 = e - qdim - kvd;
      matmul_rows(&L->wv, d, r0, r1, &a, n, vn, kvd, 0);
    }
    barrier(p);
    split(n, tid, nth, &s, &e);
    const Seq* sq = seqs;
    for (int t = s; t < e; t++) {
      while (t >= sq->t0 + sq->n) sq++;
      const float* cs = P(const float, c->rope_cos) + t * (hd / 2);
      const float* sn = P(const float, c->rope_sin) + t * (hd / 2);
      rope_row(qb + t * qdim, c->n_heads, hd, cs, sn);
      rope_row(kn + t * kvd, c->n_kv_heads, hd, cs, sn);
      const int slot = sq->base + sq->past + (t - sq->t0);
      copy_f32(kc + slot * kvd, kn + t * kvd, kvd);
      copy_f32(vc + slot * kvd, vn + t * kvd, kvd);
    }
    barrier(p);
    split(n * c->n_heads, tid, nth, &s, &e);
    sq = seqs;
    for (int i = s; i < e; i++) {
      const int t = i / c->n_heads, h = i % c->n_heads, g = h / group;
      while (t >= sq->t0 + sq->n) sq++;
      const int r = t - sq->t0, w = sq->past + sq->n;
      const uint8_t* m = sq->mask ? P(const uint8_t, sq->mask) + r * w : 0;
      const int off = sq->base * kvd + g * hd;
      attend(qb + t * qdim + h * hd, kc + off, vc + off, kvd, hd, m, m ? w : sq->past + r + 1, scores, acc,
             att + t * qdim + h * hd);
    }
    barrier(p);
    if (c->quantized) {
      split(n, tid, nth, &s, &e);
      for (int t = s; t < e; t++)
        quantize_row(att + t * qdim, qdim, P(int16_t, c->xq) + t * wide, P(float, c->xd) + t * (wide / 32),
                     P(float, c->xs) + t * (wide / 32));
      barrier(p);
    }
    a = act_of(c, att, qdim);
    split(d, tid, nth, &s, &e);
    matmul_rows(&L->wo, qdim, s, e, &a, n, x, d, 1);
    barrier(p);
    split(n, tid, nth, &s, &e);
    norm_rows(c, x, d, P(const float, L->mlp_norm), s, e);
    barrier(p);
    a = act_of(c, xn, wide);
    split(2 * hid, tid, nth, &s, &e);
    if (s < hid) matmul_rows(&L->gate, d, s, e < hid ? e : hid, &a, n, P(float, c->gate), hid, 0);
    if (e > hid) matmul_rows(&L->up, d, (s > hid ? s : hid) - hid, e - hid, &a, n, P(float, c->up), hid, 0);
    barrier(p);
    split(n, tid, nth, &s, &e);
    for (int t = s; t < e; t++) {
      float* g = P(float, c->gate) + t * hid;
      const float* u = P(const float, c->up) + t * hid;
      float* o = xn + t * wide;
      for (int i = 0; i < hid; i++) o[i] = silu_mul(g[i], u[i]);
      if (c->quantized)
        quantize_row(o, hid, P(int16_t, c->xq) + t * wide, P(float, c->xd) + t * (wide / 32), P(float, c->xs) + t * (wide / 32));
    }
    barrier(p);
    a = act_of(c, xn, wide);
    split(d, tid, nth, &s, &e);
    matmul_rows(&L->down, hid, s, e, &a, n, x, d, 1);
    barrier(p);
  }
  // Logit rows: normalize the selected rows into xn rows [0, n_logits), then the LM head.
  const int32_t* rows = P(const int32_t, c->logit_rows);
  split(c->n_logits, tid, nth, &s, &e);
  for (int r = s; r < e; r++) {
    float* o = xn + r * wide;
    rmsnorm_row(x + rows[r] * d, P(const float, c->final_norm), d, c->eps, o);
    if (c->quantized)
      quantize_row(o, d, P(int16_t, c->xq) + r * wide, P(float, c->xd) + r * (wide / 32), P(float, c->xs) + r * (wide / 32));
  }
  barrier(p);
  Act a = act_of(c, xn, wide);
  split(c->vocab, tid, nth, &s, &e);
  matmul_rows(&c->lm_head, d, s, e, &a, c->n_logits, P(float, c->logits), c->vocab, 0);
  barrier(p);
}

// ---------------------------------------------------------------------------------------------------
// exports

#define EXPORT(name) __attribute__((export_name(#name)))

// Fill the tables; the runtime calls it once, on thread 0, before any other export.
EXPORT(init) void init(void) {
  for (int h = 0; h < 65536; h++) F16_TABLE[h] = f16_to_f32((uint16_t)h);
}

EXPORT(ctx_size) int ctx_size(void) { return (int)sizeof(Ctx); }
EXPORT(layer_size) int layer_size(void) { return (int)sizeof(Layer); }
EXPORT(pool_size) int pool_size(void) { return (int)sizeof(Pool); }

// Thread 0: run one forward of `c` on every thread of `p`.
EXPORT(forward) void forward(Pool* p, Ctx* c) {
  if (p->n_threads > 1) {
    __atomic_store_n(&p->job_ctx, (uint32_t)(uintptr_t)c, SEQ);
    __atomic_store_n(&p->job_kind, JOB_FORWARD, SEQ);
    __atomic_add_fetch(&p->job_gen, 1, SEQ);
    __builtin_wasm_memory_atomic_notify(&p->job_gen, 0x7fffffff);
  }
  run_forward(p, c, 0);
}

// Thread 0: make the workers return from worker_loop.
EXPORT(stop_workers) void stop_workers(Pool* p) {
  __atomic_store_n(&p->job_kind, JOB_QUIT, SEQ);
  __atomic_add_fetch(&p->job_gen, 1, SEQ);
  __builtin_wasm_memory_atomic_notify(&p->job_gen, 0x7fffffff);
}

// Threads 1..N-1: run jobs until told to quit. `seen` is job_gen when the pool was made (so a job posted
// before this thread reached the loop is not missed).
EXPORT(worker_loop) void worker_loop(Pool* p, int tid, int seen) {
  for (;;) {
    int spins = 0, g;
    while ((g = __atomic_load_n(&p->job_gen, SEQ)) == seen) {
      // Spin a few milliseconds (4M loads), then sleep: the JS between two forwards (sampling, the
      // next tree, a yield to the event loop) takes that long, and waking a sleeping thread cost ~2 ms
      // per forward here (tiny target t(1) 3.1 ms instead of 1.1 ms in an engine worker that yields).
      if (++spins > 4000000) __builtin_wasm_memory_atomic_wait32(&p->job_gen, seen, -1);
    }
    seen = g;
    if (__atomic_load_n(&p->job_kind, SEQ) == JOB_QUIT) return;
    run_forward(p, P(Ctx, __atomic_load_n(&p->job_ctx, SEQ)), tid);
  }
}

// Single-kernel launchers for the parity tests (one thread).

EXPORT(k_rmsnorm) void k_rmsnorm(const float* x, const float* w, int n, int d, float eps, float* out) {
  for (int t = 0; t < n; t++) rmsnorm_row(x + t * d, w, d, eps, out + t * d);
}

EXPORT(k_quantize) void k_quantize(const float* x, int n, int cols, int16_t* xq, float* xd, float* xs) {
  for (int t = 0; t < n; t++) quantize_row(x + t * cols, cols, xq + t * cols, xd + t * (cols / 32), xs + t * (cols / 32));
}

// out (n, rows) = x (n, cols) W^T: x as f32 for float W, as (xq, xd, xs) from k_quantize for quantized W.
EXPORT(k_matmul) void k_matmul(int type, const uint8_t* w, int rows, int cols, const float* x, const int16_t* xq,
                               const float* xd, const float* xs, int n, float* out, int accum) {
  Mat m = {type, (uint32_t)(uintptr_t)w};
  Act a = {x, xq, xd, xs, cols, cols, cols / 32};
  matmul_rows(&m, cols, 0, rows, &a, n, out, rows, accum);
}

EXPORT(k_rope) void k_rope(float* x, int n, int heads, int hd, const float* cs, const float* sn) {
  for (int t = 0; t < n; t++) rope_row(x + t * heads * hd, heads, hd, cs + t * (hd / 2), sn + t * (hd / 2));
}

// Attention of n query rows (n, heads * hd) over (slots, kv_heads * hd) caches with an (n, slots) mask.
EXPORT(k_attention) void k_attention(const float* q, const float* kc, const float* vc, const uint8_t* mask, int n,
                                     int slots, int heads, int kv_heads, int hd, float* scores, float* acc,
                                     float* out) {
  const int group = heads / kv_heads, kvd = kv_heads * hd;
  for (int t = 0; t < n; t++)
    for (int h = 0; h < heads; h++)
      attend(q + (t * heads + h) * hd, kc + (h / group) * hd, vc + (h / group) * hd, kvd, hd, mask + t * slots, slots,
             scores, acc, out + (t * heads + h) * hd);
}

EXPORT(k_swiglu) void k_swiglu(const float* g, const float* u, int n, float* out) {
  for (int i = 0; i < n; i++) out[i] = silu_mul(g[i], u[i]);
}

EXPORT(k_exp) float k_exp(float x) { return exp_f32(x); }
