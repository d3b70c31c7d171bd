/*
 * slm_kernels.h — the innermost quantized matmuls and f16 attention helpers of slmd,
 * with runtime CPU dispatch. Dependency-free C; compiled by SwiftPM without special
 * flags (each SIMD function carries its own target attribute) and by plain gcc for the
 * cross-architecture test driver (Tests/CKernels/driver.c).
 *
 * Paths, best first:  x86-64:  avx512vnni -> avx2 -> portable
 *                     aarch64: neon-dotprod -> neon -> portable
 * The best supported path is chosen on first use; slm_kernels_force() overrides it (tests).
 *
 * NUMERICS CONTRACT (quantized matmuls) — every path returns bit-identical results, equal
 * to ReferenceKernels in Swift. For each (row, token), over blocks b = 0, 1, ... in order:
 *     sumi = exact integer dot of the block (Q4_0 nibbles count as q - 8)
 *     acc  = fmaf(d_w[b] * d_x[b], (float)sumi, acc)      (product rounded, then fused)
 *     accm = fmaf(m_w[b], s_x[b], accm)                     (Q4_1 only)
 *     y    = Q4_1 ? acc + accm : acc
 * Fast paths vectorise across rows and tokens (one lane per (row, token) pair), never
 * across blocks, so the float chain per pair is the same as the scalar one. A sequence's
 * output therefore does not depend on batch size, row split or CPU path.
 *
 * f16 helpers: slm_axpy_f16 and slm_f32_to_f16 are exact on every path (element-wise fma,
 * round-to-nearest-even). slm_dot_f16 sums in several lanes, so it differs from the
 * sequential reference by float rounding only: |fast - ref| <= 2 * n * 2^-24 * sum|q_i k_i|.
 */
#ifndef SLM_KERNELS_H
#define SLM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Kernel paths. SLM_PATH_AUTO selects the best supported one. */
enum {
    SLM_PATH_AUTO = 0,
    SLM_PATH_PORTABLE = 1,
    SLM_PATH_AVX2 = 2,          /* AVX2 + FMA + F16C */
    SLM_PATH_AVX512VNNI = 3,    /* AVX-512 F/BW/VL/VNNI (+ AVX2, FMA, F16C) */
    SLM_PATH_NEON = 4,          /* AArch64 Advanced SIMD (Raspberry Pi 4, Cortex-A72) */
    SLM_PATH_NEON_DOTPROD = 5,  /* + ARMv8.2 dot product (Raspberry Pi 5, Cortex-A76) */
    SLM_PATH_COUNT = 6
};

/* Name of the active path, e.g. "x86-avx512vnni", "arm64-neon-dotprod", "portable-c". */
const char *slm_kernels_path(void);
/* Tokens the active path's Q4_0/Q4_1/Q8_0 and tile16 matmuls serve per sweep of a weight
 * group (its unpacked weights then meet that many tokens' activations in registers); a
 * matmul over more tokens sweeps each group again per further tile, so its cost rises in
 * steps. 0 where one sweep serves any count (portable-c). K-quant kernels tile on their own. */
int slm_kernels_token_tile(void);
/* Whether this CPU (and build) can run `path`. AUTO and PORTABLE are always supported. */
int slm_kernels_supported(int path);
/* Makes `path` active for the whole process if supported; returns 1 on success, 0 if not
 * supported (the active path is then unchanged). Meant for tests and benchmarks: do not
 * call while kernels run on other threads. */
int slm_kernels_force(int path);

/* Int8-quantized activations, one 32-element block at a time (Q8Activations in Swift).
 * Values in qs may be any int8; the quantizer produces [-127, 127]. */
typedef struct slm_q8_acts {
    const int8_t *qs;     /* [tokens][cols]      int8 values                     */
    const float *d;       /* [tokens][cols/32]   block scales (f16-rounded)      */
    const float *s;       /* [tokens][cols/32]   f16(d * isum), Q4_1's min term  */
    const int32_t *isum;  /* [tokens][cols/32]   exact sum of the block's qs     */
    ptrdiff_t cols;       /* row length, a positive multiple of 32               */
    ptrdiff_t tokens;     /* number of activation rows                           */
} slm_q8_acts;

/* y[t * y_stride + r] = W[r] . x[t] for r in [row_begin, row_end), t in [0, x->tokens).
 * `w` is the matrix base (row 0); row r starts at w + r * row_bytes and holds x->cols
 * elements in ggml's block layout (Q4_1: 20 B, Q4_0: 18 B, Q8_0: 34 B per 32 elements).
 * No allocation, no threads: callers split rows across threads. */
void slm_matmul_q4_1(const void *w, ptrdiff_t row_bytes, ptrdiff_t row_begin, ptrdiff_t row_end,
                     const slm_q8_acts *x, float *y, ptrdiff_t y_stride);
void slm_matmul_q4_0(const void *w, ptrdiff_t row_bytes, ptrdiff_t row_begin, ptrdiff_t row_end,
                     const slm_q8_acts *x, float *y, ptrdiff_t y_stride);
void slm_matmul_q8_0(const void *w, ptrdiff_t row_bytes, ptrdiff_t row_begin, ptrdiff_t row_end,
                     const slm_q8_acts *x, float *y, ptrdiff_t y_stride);

/* ---- K-quants and 5-bit types: Q5_0, Q5_1, Q4_K, Q5_K, Q6_K (row layout; Q5 also tile16) ----
 * ggml's block layouts (little-endian, f16 scales):
 *   Q5_0 (32 el., 22 B): d, qh u32, qs[16]      element j = (nib_j | bit_j(qh) << 4) - 16, times d
 *   Q5_1 (32 el., 24 B): d, m, qh u32, qs[16]   element j = (nib_j | bit_j(qh) << 4) * d + m
 *        nib_j = low nibble of qs[j] for j < 16, high nibble of qs[j - 16] otherwise
 *   Q4_K (256 el., 144 B): d, dmin, scales[12], qs[128]
 *   Q5_K (256 el., 176 B): d, dmin, scales[12], qh[32], qs[128]
 *        eight 32-element sub-blocks; sub-block s has a 6-bit scale sc_s and min mn_s packed in
 *        scales[12] (s < 4: scales[s] & 63, scales[s + 4] & 63; else low/high nibble of
 *        scales[s + 4] with the top two bits of scales[s - 4] / scales[s]); its quants are the
 *        low (s even) or high (s odd) nibbles of qs[32 (s / 2) .. + 32], Q5_K adding bit s of
 *        qh[0..32) as 16; element = (d * sc_s) * q - dmin * mn_s
 *   Q6_K (256 el., 210 B): ql[128], qh[64], scales[16] (int8), d
 *        sub-block s (32 el.) = half h = s / 4, g = s % 4: low (g < 2) or high nibble of
 *        ql[64h + 32 (g & 1) .. + 32] | ((qh[32h .. + 32] >> 2g) & 3) << 4, minus 32;
 *        element e has scale scales[e / 16]: element = (d * sc) * q
 * NUMERICS CONTRACT for these types: the activations are the same 32-element Q8 blocks, so a
 * row is a sequence of 32-element sub-blocks k = 0, 1, ... (8 per K super-block). Per (row,
 * token), over k in order, with q_j the integer weights above (Q5_0 minus 16, Q6_K minus 32):
 *     sumi = sc_lo * sum_{j<16} q_j x_j + sc_hi * sum_{j>=16} q_j x_j   (exact int32)
 *            (sc_lo = sc_hi = 1 for Q5_0/Q5_1, = sc_k for Q4_K/Q5_K, the two int8 scales for Q6_K)
 *     acc  = fmaf(d_w * d_x[k], (float)sumi, acc)       d_w: the block's d (super-block d for K)
 *     accm = fmaf(m_w, s_x[k], accm)                      Q5_1
 *     accm = fmaf(dmin * d_x[k], (float)(mn_k * isum_x[k]), accm)   Q4_K, Q5_K
 *     y    = Q5_1 ? acc + accm : Q4_K/Q5_K ? acc - accm : acc
 * (llama.cpp pairs K-quants with 256-element q8_K activations; ours are finer, and the
 * results agree within the reference tests' tolerances.) Rows need cols % 256 == 0 for K. */
enum { SLM_WTYPE_Q5_0 = 6, SLM_WTYPE_Q5_1 = 7, SLM_WTYPE_Q4_K = 12, SLM_WTYPE_Q5_K = 13, SLM_WTYPE_Q6_K = 14 };
/* slm_matmul_q4_1's arguments for one of the SLM_WTYPE_Q5_0 .. Q6_K types (row layout);
 * does nothing for any other wtype. */
void slm_matmul_kq(int wtype, const void *w, ptrdiff_t row_bytes, ptrdiff_t row_begin, ptrdiff_t row_end,
                   const slm_q8_acts *x, float *y, ptrdiff_t y_stride);

/* ---- Tile-interleaved ("tile16") weight layout ----
 * A permutation of a row-layout matrix, same size, made once at model load so the AVX-512
 * kernel reads each 16-row tile with plain vector loads instead of a gather and 16 inserts
 * per block (decode streams every weight once per token, so that work is not amortised).
 * Rows [0, 16 * (rows / 16)) form whole tiles; tile k occupies the same bytes as rows
 * 16k..16k+15 did, block b of the tile at tile + b * 16 * block_bytes:
 *     [0, 32)        d of rows i = 0..15 (f16)
 *     [32, 64)       m of rows i (Q4_1, Q5_1)
 *     then (Q5_0, Q5_1) 64 bytes: row i's qh word at + 4 * i, its bits permuted so that
 *                    bit 8k + c = qh bit 4c + k and bit 8k + 4 + c = qh bit 16 + 4c + k
 *                    (k, c = 0..3): the fifth bits of quant dword c's low and high nibbles
 *                    reach bit 4 of each byte with one shift of the word each (left by
 *                    4 - c, right by c), no per-row variable shift or bit gather
 *     then the quants, 16 * quant_bytes: dword c of row i (quant bytes 4c..4c+3, in the
 *     block's own order) at quants + 64 * c + 4 * i
 * so vector c lane i = row i, and one vpdpbusd against 4 broadcast activation bytes yields
 * per-row partial sums with no transpose. The other paths read the same layout in narrower
 * slices: on AVX2, 32 bytes at quants + 64 * c + 32 * h are rows 8h..8h+7 (vpmaddubsw
 * against 4 broadcast activation bytes); on ARM, 16 bytes at quants + 64 * c + 16 * g are
 * rows 4g..4g+3 (one SDOT by element, or SMLAL against replicated activation bytes without
 * dot products). Rows past the last whole tile keep the row layout. Types: Q4_0, Q4_1, Q8_0,
 * Q5_0, Q5_1, Q4_K, Q5_K and Q6_K (the tile16 functions do nothing for any other wtype).
 * Q4_K: super-block b of a tile (16 * 144 bytes) at tile + 2304 b holds the 16 rows' d at
 * [0, 32) and dmin at [32, 64), their 6-bit sub-block scales and mins unpacked (row i =
 * 8h + k: [64 + 64h + 8j + k] = (sc_j & 15) | (mn_j & 15) << 4, [192 + 32h + 8 (j % 4) + k]
 * = sc_j >> 4 | (mn_j >> 4) << 2, in the high nibble for j >= 4), then at 256 + 256j
 * sub-block j in Q4_1's quant form (row i's byte e = element e | element 16 + e << 4, dword c
 * at + 64c + 4i): the kernels run Q4_1's inner loop with a per-row scale. Q5_K: Q4_K's
 * with 320 bytes per sub-block (at 256 + 320j), its 256 quant bytes then its fifth bits as
 * row i's Q5 tile16 qh word (above) at + 256 + 4i. Q6_K (16 * 210 bytes): d at [0, 32),
 * then sub-block j in 416 bytes at 32 + 416j: row i's two int8 half scales at + 2i, then at
 * + 32 the low 4 bits of u = q + 32 in Q4_1's quant form and two 64-byte planes of the top 2
 * bits (row i's word at + 256 + 4i for elements 4c + b, + 320 + 4i for 16 + 4c + b, element
 * 4c + b's at bits 8b + 2c). Each sub-block's bytes are together: a decode token then reads
 * one stream. Exact offsets: kquants.h.
 * Values are those of ggml's type ids, like WeightType in Swift. */
enum { SLM_WTYPE_Q4_0 = 2, SLM_WTYPE_Q4_1 = 3, SLM_WTYPE_Q8_0 = 8 };
enum { SLM_LAYOUT_ROWS = 0, SLM_LAYOUT_TILE16 = 1 };

/* The layout the active path reads fastest: TILE16 on every SIMD path (x86-avx512vnni,
 * x86-avx2, arm64-neon-dotprod, arm64-neon), ROWS on portable-c. Every path computes both
 * layouts, bit-identically. */
int slm_preferred_layout(void);
/* Whether the active path computes a `wtype` matrix faster in tile16 than in row layout:
 * the preferred layout is TILE16 and the path has a kernel for the type (a path without
 * K-quant tile kernels computes tile16 K-quants through the portable loop, correct but slow). */
int slm_tile16_preferred(int wtype);
/* dst (rows * row_bytes bytes, not overlapping src) = the tile16 permutation of src. */
void slm_repack_tile16(int wtype, const void *src, void *dst, ptrdiff_t row_bytes, ptrdiff_t rows);
/* Inverse of slm_repack_tile16 for one row: copies row r of a tile16 matrix, in row layout,
 * to out (row_bytes bytes). */
void slm_unpack_row_tile16(int wtype, const void *w, ptrdiff_t row_bytes, ptrdiff_t rows, ptrdiff_t r, void *out);
/* slm_matmul_* (slm_matmul_kq for Q5_0/Q5_1) for a tile16 matrix of `rows` rows (any row
 * range; the type's numerics contract, so bit-identical to the row layout). */
void slm_matmul_tile16(int wtype, const void *w, ptrdiff_t row_bytes, ptrdiff_t rows, ptrdiff_t row_begin,
                       ptrdiff_t row_end, const slm_q8_acts *x, float *y, ptrdiff_t y_stride);

/* sum_i q[i] * f16(k[i]); q is expected to hold f16-representable values. */
float slm_dot_f16(const float *q, const uint16_t *k, ptrdiff_t n);
/* y[i] = fmaf(a, f16(v[i]), y[i]). */
void slm_axpy_f16(float a, const uint16_t *v, float *y, ptrdiff_t n);
/* out[i] = f16 bits of x[i], rounded to nearest even. */
void slm_f32_to_f16(const float *x, uint16_t *out, ptrdiff_t n);

/* y[i] = the nearest f16 value of y[i] (round to nearest even), in place. */
void slm_round_f16(float *y, ptrdiff_t n);

/* One attention head: out[0..d) = softmax_j(scale · q·k_j) weighted sum of v_j over the
 * n rows k_j = k + j·stride, v_j = v + j·stride (f16). The value accumulator is rounded
 * to f16 after every update, reproducing llama.cpp's CPU flash attention with an f16
 * cache; the scores differ from a sequential reference only through slm_dot_f16. */
void slm_attn_f16(const float *q, const uint16_t *k, const uint16_t *v, ptrdiff_t stride, ptrdiff_t n,
                  ptrdiff_t d, float scale, float *out);

/* Quantizes one row of `cols` floats (a multiple of 32) per 32-block to int8, exactly as
 * Q8Activations.quantizeRow in Swift: d = amax/127, q = round-to-nearest-even(x * (127/amax))
 * (0 when amax is 0), d[b] = f16(d), s[b] = f16(d * isum), isum[b] = exact sum of q.
 * Bit-identical on every path. */
void slm_quantize_q8(const float *x, ptrdiff_t cols, int8_t *qs, float *d, float *s, int32_t *isum);

/* The constants of the SwiGLU's e^x, one definition for Swift's FastMath.exp (the reference)
 * and slm_silu_mul: the clamp, the 1.5 * 2^23 rounding constant (and its bits), log2 e, ln 2
 * in two parts (Cody-Waite), and the Cephes polynomial, highest degree first. */
#define SLM_EXP_LO (-87.0f)
#define SLM_EXP_HI 88.0f
#define SLM_EXP_MAGIC 12582912.0f
#define SLM_EXP_MAGIC_BITS 0x4B400000u
#define SLM_EXP_LOG2E 1.44269504f
#define SLM_EXP_LN2_HI 0.693359375f
#define SLM_EXP_LN2_LO (-2.1219444e-4f)
#define SLM_EXP_P0 1.98756915e-4f
#define SLM_EXP_P1 1.39819995e-3f
#define SLM_EXP_P2 8.3334519e-3f
#define SLM_EXP_P3 4.16657959e-2f
#define SLM_EXP_P4 1.66666655e-1f
#define SLM_EXP_P5 5.00000012e-1f

/* SwiGLU in place: g[i] = g[i] / (1 + e^-g[i]) * u[i] for i < n, with e^x as Swift's
 * FastMath.exp (x clamped to [-87, 88], NaN to -87; Cody-Waite reduction; the Cephes
 * polynomial; 2^n through the exponent field), every step a separately rounded IEEE
 * operation in FastMath's order. Bit-identical to FastMath.siluMul on every path and for
 * every element, wherever a range starts. */
void slm_silu_mul(float *g, const float *u, ptrdiff_t n);

#ifdef __cplusplus
}
#endif
#endif /* SLM_KERNELS_H */
