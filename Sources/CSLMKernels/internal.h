/* Private to CSLMKernels: the per-path function table and shared scalar helpers. */
#ifndef SLM_KERNELS_INTERNAL_H
#define SLM_KERNELS_INTERNAL_H

#include "slm_kernels.h"
#include <math.h>
#include <string.h>

/* The numerics contract depends on the compiler not fusing a*b+c on its own: keep
 * contraction off (clang honours this pragma; gcc builds pass -ffp-contract=off, and
 * the code never writes a*b+c where a fused result would differ from the contract). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define SLM_QK 32
#define SLM_ALWAYS_INLINE inline __attribute__((always_inline))
/* A rare path kept out of the unrolled loop that calls it, and the hint that it is rare. */
#define SLM_NOINLINE __attribute__((noinline))
#define SLM_UNLIKELY(c) __builtin_expect(!!(c), 0)
/* Fully unrolls the loop that follows (its trip count is a constant after inlining): the
 * tile kernels index register arrays by the loop variable, and a loop left rolled keeps
 * them in memory. */
#if defined(__clang__)
#define SLM_UNROLL _Pragma("clang loop unroll(full)")
#else
#define SLM_UNROLL _Pragma("GCC unroll 16")
#endif
/* Keeps the loop that follows rolled: where a tile's register arrays are indexed by inner
 * (unrolled) loops only, unrolling the outer one let the compiler hoist every iteration's
 * loads and unpacking to the top and spill the accumulators (x86_avx2.h, its chunk loops). */
#if defined(__clang__)
#define SLM_ROLLED _Pragma("clang loop unroll(disable)")
#else
#define SLM_ROLLED _Pragma("GCC unroll 1")
#endif

/* Internal weight types of the Q4/Q8 row kernels and the tile16 kernels. The Q5 types and
 * the K-quants have tile16 kernels only: their row layout goes through slm_matmul_kq. */
enum { SLM_T_Q4_1, SLM_T_Q4_0, SLM_T_Q8_0, SLM_T_Q5_0, SLM_T_Q5_1, SLM_T_Q4_K, SLM_T_Q6_K, SLM_T_Q5_K };

typedef void (*slm_matmul_fn)(const void *w, ptrdiff_t row_bytes, ptrdiff_t row_begin, ptrdiff_t row_end,
                              const slm_q8_acts *x, float *y, ptrdiff_t y_stride);

/* Software prefetch distance, in row tiles, of the row-major (mapped) x86 matmuls
 * (x86_avx2.h, x86_avx512.h): with rows interleaved across tiles the hardware prefetchers
 * see several streams and fall behind. */
#ifndef SLM_PF_TILES
#define SLM_PF_TILES 2
#endif

typedef struct slm_impl {
    int id;
    const char *name;
    slm_matmul_fn q4_1, q4_0, q8_0;
    float (*dot_f16)(const float *q, const uint16_t *k, ptrdiff_t n);
    void (*axpy_f16)(float a, const uint16_t *v, float *y, ptrdiff_t n);
    void (*to_f16)(const float *x, uint16_t *out, ptrdiff_t n);
    /* y = f16(y * a) and y = f16(fma(v, a, y)), element-wise (exact on every path). */
    void (*scale_round_f16)(float *y, float a, ptrdiff_t n);
    void (*mad_round_f16)(float a, const uint16_t *v, float *y, ptrdiff_t n);
    /* Q8 activation quantizer, bit-identical to the portable one, and a fused attention
     * head with the numerics of slm_attn_f16_generic over this path's helpers. */
    void (*quantize_q8)(const float *x, ptrdiff_t cols, int8_t *qs, float *d, float *s, int32_t *isum);
    void (*attn_f16)(const float *q, const uint16_t *k, const uint16_t *v, ptrdiff_t stride, ptrdiff_t n,
                     ptrdiff_t d, float scale, float *out);
    /* slm_silu_mul: bit-identical to slm_silu_mul1 element by element. */
    void (*silu_mul)(float *g, const float *u, ptrdiff_t n);
    /* Matmul over a tile16 matrix (slm_kernels.h); type is SLM_T_*. */
    void (*matmul_tile16)(int type, const void *w, ptrdiff_t row_bytes, ptrdiff_t rows, ptrdiff_t row_begin,
                          ptrdiff_t row_end, const slm_q8_acts *x, float *y, ptrdiff_t y_stride);
    /* Optional (NULL: the portable loop in kquants.c): slm_matmul_tile16 for a K-quant
     * matrix, type SLM_T_Q4_K, SLM_T_Q5_K or SLM_T_Q6_K. A path without one keeps them in
     * row layout (slm_tile16_preferred). */
    void (*matmul_tile16_k)(int type, const void *w, ptrdiff_t row_bytes, ptrdiff_t rows, ptrdiff_t row_begin,
                            ptrdiff_t row_end, const slm_q8_acts *x, float *y, ptrdiff_t y_stride);
    /* Optional (NULL: the portable loop in kquants.h): slm_matmul_kq for SLM_WTYPE_Q5_0..Q6_K. */
    void (*matmul_kq)(int wtype, const void *w, ptrdiff_t row_bytes, ptrdiff_t row_begin, ptrdiff_t row_end,
                      const slm_q8_acts *x, float *y, ptrdiff_t y_stride);
    /* SLM_LAYOUT_*: the layout this path reads fastest (slm_preferred_layout). Every entry
     * above is set on every path (no NULL), so the dispatchers call them unconditionally. */
    int layout;
    /* slm_kernels_token_tile: the tokens one sweep of a tile16 (or Q4_0/Q4_1/Q8_0 row)
     * weight group serves, 0 where the whole pass is one sweep (portable). */
    int token_tile;
} slm_impl;

extern const slm_impl slm_impl_portable;
#if defined(__x86_64__)
extern const slm_impl slm_impl_avx2;
extern const slm_impl slm_impl_avx512vnni;
#endif
#if defined(__aarch64__)
extern const slm_impl slm_impl_neon;
extern const slm_impl slm_impl_neon_dotprod;
#endif

#if defined(__x86_64__)
/* AVX2's expf, 8 lanes at a time, glibc's values (the fused attention's softmax factors),
 * and its 2^(i/32) table: exported for the C driver's check against libm. */
void slm_avx2_expf(const float *x, float *y, ptrdiff_t n);
extern const uint64_t slm_exp2_32nds[32];
#endif

/* The attention head as a loop over the path's f16 helpers (fallback for attn_f16). */
void slm_attn_f16_generic(const slm_impl *p, const float *q, const uint16_t *k, const uint16_t *v, ptrdiff_t stride,
                          ptrdiff_t n, ptrdiff_t d, float scale, float *out);

/* Bytes per block and offset of the quants inside a block, per type (ggml's layouts). */
/* FastMath.exp's reduction and polynomial in FastMath's order, written once for every form
 * of slm_silu_mul (the scalar one below, AVX2, NEON) over a float type's element-wise MUL,
 * ADD and SUB and its splat SET. In: x, already clamped. Out: t = x * log2 e + 1.5 * 2^23
 * (its low mantissa bits are n) and er = e^r, the polynomial; e^x = er * 2^n. */
#define SLM_EXP_REDUCE(x, t, er, MUL, ADD, SUB, SET)                   \
    do {                                                               \
        t = ADD(MUL(x, SET(SLM_EXP_LOG2E)), SET(SLM_EXP_MAGIC));       \
        const __typeof__(x) nf_ = SUB(t, SET(SLM_EXP_MAGIC));          \
        __typeof__(x) r_ = SUB(x, MUL(nf_, SET(SLM_EXP_LN2_HI)));       \
        r_ = SUB(r_, MUL(nf_, SET(SLM_EXP_LN2_LO)));                   \
        __typeof__(x) p_ = SET(SLM_EXP_P0);                            \
        p_ = ADD(MUL(p_, r_), SET(SLM_EXP_P1));                        \
        p_ = ADD(MUL(p_, r_), SET(SLM_EXP_P2));                        \
        p_ = ADD(MUL(p_, r_), SET(SLM_EXP_P3));                        \
        p_ = ADD(MUL(p_, r_), SET(SLM_EXP_P4));                        \
        p_ = ADD(MUL(p_, r_), SET(SLM_EXP_P5));                        \
        er = ADD(ADD(MUL(p_, MUL(r_, r_)), r_), SET(1.0f));            \
    } while (0)
#define SLM_F32_MUL(a, b) ((a) * (b))
#define SLM_F32_ADD(a, b) ((a) + (b))
#define SLM_F32_SUB(a, b) ((a) - (b))
#define SLM_F32_SET(c) (c)

/* One element of slm_silu_mul: FastMath.siluMul's lane, operation for operation (no
 * contraction: the pragma above). Every path's tail runs it, so it is the definition the
 * vector bodies must match. */
static SLM_ALWAYS_INLINE float slm_silu_mul1(float g, float u) {
    const float nx = -g;
    float x = nx >= SLM_EXP_LO ? nx : SLM_EXP_LO;  /* NaN fails the test: -87, as in Swift */
    x = x > SLM_EXP_HI ? SLM_EXP_HI : x;
    float t, er;
    SLM_EXP_REDUCE(x, t, er, SLM_F32_MUL, SLM_F32_ADD, SLM_F32_SUB, SLM_F32_SET);
    uint32_t tb, sb;
    memcpy(&tb, &t, 4);
    sb = (tb - SLM_EXP_MAGIC_BITS + 127u) << 23;  /* 2^n into the exponent field */
    float scale;
    memcpy(&scale, &sb, 4);
    return g / (1.0f + er * scale) * u;
}

static SLM_ALWAYS_INLINE int slm_block_bytes(int type) {
    return type == SLM_T_Q4_1 ? 20 : type == SLM_T_Q4_0 ? 18 : type == SLM_T_Q5_0 ? 22 : type == SLM_T_Q5_1 ? 24
         : type == SLM_T_Q4_K ? 144 : type == SLM_T_Q5_K ? 176 : type == SLM_T_Q6_K ? 210 : 34;
}
static SLM_ALWAYS_INLINE int slm_quant_offset(int type) {
    return type == SLM_T_Q4_1 ? 4 : type == SLM_T_Q5_0 ? 6 : type == SLM_T_Q5_1 ? 8 : 2;
}
/* Types with a min term m (f16 at block byte 2): y = acc + accm. */
static SLM_ALWAYS_INLINE int slm_has_m(int type) { return type == SLM_T_Q4_1 || type == SLM_T_Q5_1; }
/* How a (row, token)'s two chains make its result, by ggml type id (slm_kernels.h's contract):
 * +1 y = acc + accm (Q4_1, Q5_1), -1 y = acc - accm (Q4_K, Q5_K), 0 y = acc (no min term;
 * adding a zero accm would turn -0 into +0). */
static SLM_ALWAYS_INLINE int slm_wtype_min_sign(int wt) {
    return wt == SLM_WTYPE_Q4_1 || wt == SLM_WTYPE_Q5_1 ? 1 : wt == SLM_WTYPE_Q4_K || wt == SLM_WTYPE_Q5_K ? -1 : 0;
}
static SLM_ALWAYS_INLINE int slm_is_q5(int type) { return type == SLM_T_Q5_0 || type == SLM_T_Q5_1; }
/* The K-quant tile16 types (256-element super-blocks; slm_impl.matmul_tile16_k). */
static SLM_ALWAYS_INLINE int slm_is_ktile(int type) {
    return type == SLM_T_Q4_K || type == SLM_T_Q5_K || type == SLM_T_Q6_K;
}
/* Types whose row layout (a tile16 matrix's rows past its last whole tile) is slm_matmul_kq's. */
static SLM_ALWAYS_INLINE int slm_rows_by_kq(int type) { return slm_is_q5(type) || slm_is_ktile(type); }
/* Offset of a Q5 block's qh (u32: bit j = bit 4 of element j) inside the block. */
static SLM_ALWAYS_INLINE int slm_qh_offset(int type) { return type == SLM_T_Q5_1 ? 4 : 2; }
/* ggml's type id (SLM_WTYPE_*) of an internal type. */
static SLM_ALWAYS_INLINE int slm_wtype(int type) {
    switch (type) {
    case SLM_T_Q4_1: return SLM_WTYPE_Q4_1;
    case SLM_T_Q4_0: return SLM_WTYPE_Q4_0;
    case SLM_T_Q5_0: return SLM_WTYPE_Q5_0;
    case SLM_T_Q5_1: return SLM_WTYPE_Q5_1;
    case SLM_T_Q4_K: return SLM_WTYPE_Q4_K;
    case SLM_T_Q5_K: return SLM_WTYPE_Q5_K;
    case SLM_T_Q6_K: return SLM_WTYPE_Q6_K;
    default: return SLM_WTYPE_Q8_0;
    }
}

/* slm_wtype_min_sign of an internal type. */
static SLM_ALWAYS_INLINE int slm_min_sign(int type) { return slm_wtype_min_sign(slm_wtype(type)); }

/* Tile16 layout (slm_kernels.h): offsets inside one block of a 16-row tile. */
#define SLM_TILE 16
static SLM_ALWAYS_INLINE ptrdiff_t slm_tile16_quants(int type) { return (ptrdiff_t)SLM_TILE * slm_quant_offset(type); }
/* Offset of quant byte q (0-based, block order) of tile row i from the block's start. */
static SLM_ALWAYS_INLINE ptrdiff_t slm_tile16_qbyte(int type, int i, int q) {
    return slm_tile16_quants(type) + 64 * (q / 4) + 4 * i + (q % 4);
}
/* Q5: offset of the 16 rows' tile16-form qh words (row i's at + 4 i) from the block's start. */
static SLM_ALWAYS_INLINE ptrdiff_t slm_tile16_qh(int type) { return (ptrdiff_t)SLM_TILE * slm_qh_offset(type); }

static SLM_ALWAYS_INLINE uint16_t slm_load_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static SLM_ALWAYS_INLINE uint32_t slm_load_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* Tile16 form of a Q5 block's qh (slm_kernels.h): bit 8k + c holds qh bit 4c + k (the high
 * bit of low-nibble byte k of quant dword c) and bit 8k + 4 + c holds qh bit 16 + 4c + k (its
 * high nibble's), so for dword c a lane gets the bit-4 planes of both nibble vectors with one
 * constant shift and mask each: (P << (4 - c)) & 0x10101010 and (P >> c) & 0x10101010. */
static SLM_ALWAYS_INLINE uint32_t slm_q5_qh_to_tile16(uint32_t qh) {
    uint32_t p = 0;
    for (int c = 0; c < 4; c++)
        for (int k = 0; k < 4; k++) {
            p |= ((qh >> (4 * c + k)) & 1u) << (8 * k + c);
            p |= ((qh >> (16 + 4 * c + k)) & 1u) << (8 * k + 4 + c);
        }
    return p;
}
static SLM_ALWAYS_INLINE uint32_t slm_q5_qh_from_tile16(uint32_t p) {
    uint32_t qh = 0;
    for (int c = 0; c < 4; c++)
        for (int k = 0; k < 4; k++) {
            qh |= ((p >> (8 * k + c)) & 1u) << (4 * c + k);
            qh |= ((p >> (8 * k + 4 + c)) & 1u) << (16 + 4 * c + k);
        }
    return qh;
}

/* Exact f16 -> f32 (no F16C/fp16 hardware assumed). */
static inline float slm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0) {
        float f = (float)man * 0x1p-24f;  /* subnormal (or zero): exact in f32 */
        memcpy(&bits, &f, 4);
        bits |= sign;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

/* f32 -> f16 bits, round to nearest even (what F16C and AArch64 FCVT do by default). */
static inline uint16_t slm_f32_to_f16_scalar(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu)); /* quiet NaN */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  /* >= 65520 (or inf) -> inf */
    if (ax < 0x38800000u) {
        /* Below the smallest normal f16: the result is round(|f| * 2^24) units of 2^-24.
         * The scaling is exact; adding and removing 2^23 rounds to an integer in the
         * current (nearest-even) mode. 1024 correctly encodes the smallest normal. */
        float v;
        memcpy(&v, &ax, 4);
        volatile float big = 0x1p23f;  /* volatile: keep the compiler from folding the rounding away */
        float r = (v * 0x1p24f + big) - big;
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t h = (((ax >> 23) - 112u) << 10) | ((ax >> 13) & 0x3ffu);
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;  /* a carry into the exponent is correct */
    return (uint16_t)(sign | h);
}

#endif
