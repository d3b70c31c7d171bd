/* x86-64 paths: AVX2 (+FMA, F16C) and AVX-512 VNNI. Each function gets its target from
 * a pragma rather than from package-wide flags, so the package needs no unsafeFlags and
 * the binary still runs (on the portable path) on CPUs without these extensions. */
#include "internal.h"
#include "kquants.h"

#if defined(__x86_64__)
#include <immintrin.h>

/* ---------------- AVX2 ---------------- */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#define FN(name) avx2_##name
#include "x86_avx2.h"
#define SLM_KQ_VNNI 0
#include "x86_kquants.h"
#undef SLM_KQ_VNNI
#undef FN

/* Two accumulators hide the fma latency; the lanes make the sum order differ from the
 * sequential reference, hence the documented tolerance for this one helper. */
static SLM_ALWAYS_INLINE float avx2_dot_f16_body(const float *q, const uint16_t *k, ptrdiff_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i + 8))), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))), a0);
    a0 = _mm256_add_ps(a0, a1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float acc = _mm_cvtss_f32(s);
    for (; i < n; i++) acc = fmaf(q[i], _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(k[i]))), acc);
    return acc;
}
static float avx2_dot_f16(const float *q, const uint16_t *k, ptrdiff_t n) { return avx2_dot_f16_body(q, k, n); }

/* Element-wise fma: bit-identical to the scalar loop. */
static void avx2_axpy_f16(float a, const uint16_t *v, float *y, ptrdiff_t n) {
    const __m256 va = _mm256_set1_ps(a);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i))),
                                                _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(v[i]))), y[i]);
}

static void avx2_to_f16(const float *x, uint16_t *out, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) out[i] = (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(x[i]), _MM_FROUND_TO_NEAREST_INT), 0);
}

/* Round-trips through f16 with F16C: exact, matches the scalar definition. */
static void avx2_scale_round_f16(float *y, float a, ptrdiff_t n) {
    const __m256 va = _mm256_set1_ps(a);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(y + i), va), _MM_FROUND_TO_NEAREST_INT)));
    for (; i < n; i++) y[i] = slm_f16_to_f32(slm_f32_to_f16_scalar(y[i] * a));
}

static void avx2_mad_round_f16(float a, const uint16_t *v, float *y, ptrdiff_t n) {
    const __m256 va = _mm256_set1_ps(a);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 r = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i))), va, _mm256_loadu_ps(y + i));
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm256_cvtps_ph(r, _MM_FROUND_TO_NEAREST_INT)));
    }
    for (; i < n; i++) y[i] = slm_f16_to_f32(slm_f32_to_f16_scalar(fmaf(slm_f16_to_f32(v[i]), a, y[i])));
}

static SLM_ALWAYS_INLINE float avx2_f16_round(float x) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph(_mm_set_ss(x), _MM_FROUND_TO_NEAREST_INT)));
}

/* slm_silu_mul1 in 8 lanes: the same operations (SLM_EXP_REDUCE's sequence; mul and add never
 * fused), the clamp's compares ordered so NaN fails them as in the scalar form; the tail runs
 * the scalar form.
 * The Swift SIMD8 loop it replaces ran as pairs of SSE operations (3% of a 16-token pass). */
static void avx2_silu_mul(float *g, const float *u, ptrdiff_t n) {
    const __m256 lo = _mm256_set1_ps(SLM_EXP_LO), hi = _mm256_set1_ps(SLM_EXP_HI);
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256i bias = _mm256_set1_epi32(127 - (int32_t)SLM_EXP_MAGIC_BITS);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 gv = _mm256_loadu_ps(g + i);
        const __m256 nx = _mm256_xor_ps(gv, _mm256_set1_ps(-0.0f));
        __m256 x = _mm256_blendv_ps(lo, nx, _mm256_cmp_ps(nx, lo, _CMP_GE_OQ));
        x = _mm256_blendv_ps(x, hi, _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
        __m256 t, er;
        SLM_EXP_REDUCE(x, t, er, _mm256_mul_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_set1_ps);
        /* (bits(t) - bits(magic) + 127) << 23, wrapping as the scalar uint32_t form */
        const __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), bias), 23));
        const __m256 den = _mm256_add_ps(one, _mm256_mul_ps(er, scale));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(gv, den), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = slm_silu_mul1(g[i], u[i]);
}

/* Bit-identical to portable_quantize_q8: the same amax, the same single multiply by
 * 127/amax, cvtps rounds to nearest even (the default MXCSR mode), d and s through F16C. */
static void avx2_quantize_q8(const float *x, ptrdiff_t cols, int8_t *qs, float *d, float *s, int32_t *isum) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (ptrdiff_t b = 0; b < cols / SLM_QK; b++) {
        const float *xb = x + b * SLM_QK;
        const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
        const __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
        const __m256 a = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, x0), _mm256_andnot_ps(sign, x1)),
                                       _mm256_max_ps(_mm256_andnot_ps(sign, x2), _mm256_andnot_ps(sign, x3)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float amax = _mm_cvtss_f32(h);
        const float dd = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(x0, vid)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(x1, vid));
        const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(x2, vid)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(x3, vid));
        const __m256i t = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        __m128i u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0x4e));
        u = _mm_add_epi32(u, _mm_shuffle_epi32(u, 0xb1));
        const int32_t sum = _mm_cvtsi128_si32(u);
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        _mm256_storeu_si256((__m256i *)(qs + b * SLM_QK), _mm256_permutevar8x32_epi32(p, perm));
        d[b] = avx2_f16_round(dd);
        s[b] = avx2_f16_round(dd * (float)sum);
        isum[b] = sum;
    }
}

/* 2^(i/32) as doubles, minus i << 47 (the exponent bits the scaled index adds back): the
 * table of avx2_exp8's 2^(k/32) · 2^r evaluation. Checked against exp2 by the C driver. */
const uint64_t slm_exp2_32nds[32] = {
0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
};

/* e^x in double for 4 floats: the evaluation of glibc's expf (2.28 and later, the FMA build
 * that x86-64 CPUs with AVX2 run): k = round(x · 32/ln 2), r = x · 32/ln 2 − k, both fused;
 * 2^(k/32) from the table and k's high bits; 2^(r/32) by a cubic with glibc's fusions. */
static SLM_ALWAYS_INLINE __m256d avx2_exp_pd(__m128 x) {
    const __m256d xd = _mm256_cvtps_pd(x);
    const __m256d n = _mm256_set1_pd(0x1.71547652b82fep+5), shift = _mm256_set1_pd(0x1.8p52);
    __m256d kd = _mm256_fmadd_pd(n, xd, shift);  /* k in the low bits of kd */
    const __m256i ki = _mm256_castpd_si256(kd);
    kd = _mm256_sub_pd(kd, shift);
    const __m256d r = _mm256_fmsub_pd(n, xd, kd);
    const __m256i t = _mm256_add_epi64(
        _mm256_i64gather_epi64((const long long *)slm_exp2_32nds, _mm256_and_si256(ki, _mm256_set1_epi64x(31)), 8),
        _mm256_slli_epi64(ki, 47));
    const __m256d z = _mm256_fmadd_pd(r, _mm256_set1_pd(0x1.c6af84b912394p-20), _mm256_set1_pd(0x1.ebfce50fac4f3p-13));
    const __m256d r2 = _mm256_mul_pd(r, r);
    __m256d y = _mm256_fmadd_pd(r, _mm256_set1_pd(0x1.62e42ff0c52d6p-6), _mm256_set1_pd(1.0));
    y = _mm256_fmadd_pd(z, r2, y);
    return _mm256_mul_pd(y, _mm256_castsi256_pd(t));
}

/* expf of 8 floats, bit for bit what glibc's expf returns, special cases included (checked
 * over all 2^32 inputs on glibc 2.36; the C driver checks a sample on every run). Why not
 * libm per element: one call per attended position was a third of the attention kernel. */
static SLM_ALWAYS_INLINE __m256 avx2_exp8(__m256 x) {
    __m256 y = _mm256_set_m128(_mm256_cvtpd_ps(avx2_exp_pd(_mm256_extractf128_ps(x, 1))),
                               _mm256_cvtpd_ps(avx2_exp_pd(_mm256_castps256_ps128(x))));
    /* glibc's edges: below log(2^-149) the smallest subnormal (its "may underflow" value),
     * below log(2^-150) zero (-inf included), above log(2^128) inf, NaN as x + x. */
    y = _mm256_blendv_ps(y, _mm256_castsi256_ps(_mm256_set1_epi32(1)), _mm256_cmp_ps(x, _mm256_set1_ps(-0x1.9d1d9ep6f), _CMP_LT_OQ));
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, _mm256_set1_ps(-0x1.9fe368p6f), _CMP_LT_OQ));
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, _mm256_set1_ps(0x1.62e42ep6f), _CMP_GT_OQ));
    return _mm256_blendv_ps(y, _mm256_add_ps(x, x), _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

void slm_avx2_expf(const float *x, float *y, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, avx2_exp8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float a[8] = {0}, b[8];
        for (ptrdiff_t j = i; j < n; j++) a[j - i] = x[j];
        _mm256_storeu_ps(b, avx2_exp8(_mm256_loadu_ps(a)));
        for (ptrdiff_t j = i; j < n; j++) y[j] = b[j - i];
    }
}

/* The generic attention loop (kernels.c) for 64-dim heads with no indirect calls, up to 64
 * positions at a time: their scores (same dot as avx2_dot_f16); then, in order, each one's
 * softmax factor argument (m - s where the running max rises, s - m elsewhere, as the generic
 * loop takes them); all their expf at once (avx2_exp8, glibc's values); then the online
 * update with the accumulator held in registers. Every element sees the same f16-rounded
 * fma/mul sequence, so the result is bit-identical to slm_attn_f16_generic on this path. */
static void avx2_attn_f16(const float *q, const uint16_t *k, const uint16_t *v, ptrdiff_t stride, ptrdiff_t n,
                          ptrdiff_t d, float scale, float *out) {
    if (d != 64) { slm_attn_f16_generic(&slm_impl_avx2, q, k, v, stride, n, d, scale, out); return; }
    enum { CHUNK = 64 };
    float sc[CHUNK], ex[CHUNK];
    unsigned char rises[CHUNK];
    __m256 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    float m = -INFINITY, sum = 0.0f;
    for (ptrdiff_t j0 = 0; j0 < n; j0 += CHUNK) {
        const ptrdiff_t jn = n - j0 < CHUNK ? n - j0 : CHUNK;
        for (ptrdiff_t jj = 0; jj < jn; jj++) sc[jj] = avx2_dot_f16_body(q, k + (j0 + jj) * stride, 64) * scale;
        for (ptrdiff_t jj = 0; jj < jn; jj++) {
            const float s = sc[jj];
            rises[jj] = s > m;
            sc[jj] = s > m ? m - s : s - m;
            m = s > m ? s : m;
        }
        for (ptrdiff_t jj = jn; jj < ((jn + 7) & ~(ptrdiff_t)7); jj++) sc[jj] = 0.0f;  /* the last 8's tail */
        for (ptrdiff_t jj = 0; jj < jn; jj += 8) _mm256_storeu_ps(ex + jj, avx2_exp8(_mm256_loadu_ps(sc + jj)));
        for (ptrdiff_t jj = 0; jj < jn; jj++) {
            float ms = 1.0f, vs = 1.0f;
            if (rises[jj]) {
                ms = ex[jj];
                const __m256 vms = _mm256_set1_ps(ms);
                for (int i = 0; i < 8; i++)
                    acc[i] = _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(acc[i], vms), _MM_FROUND_TO_NEAREST_INT));
            } else {
                vs = ex[jj];
            }
            const uint16_t *vr = v + (j0 + jj) * stride;
            const __m256 vvs = _mm256_set1_ps(vs);
            for (int i = 0; i < 8; i++) {
                const __m256 r = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vr + 8 * i))), vvs, acc[i]);
                acc[i] = _mm256_cvtph_ps(_mm256_cvtps_ph(r, _MM_FROUND_TO_NEAREST_INT));
            }
            sum = sum * ms + vs;
        }
    }
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (int i = 0; i < 8; i++) _mm256_storeu_ps(out + 8 * i, _mm256_mul_ps(acc[i], inv));
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

/* ---------------- AVX-512 VNNI ---------------- */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#endif

#include "x86_avx512.h"
#define FN(name) vnni_##name
#define SLM_KQ_VNNI 1
#include "x86_kquants.h"
#undef SLM_KQ_VNNI
#undef FN

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const slm_impl slm_impl_avx2 = {
    .id = SLM_PATH_AVX2, .name = "x86-avx2",
    .q4_1 = avx2_q4_1, .q4_0 = avx2_q4_0, .q8_0 = avx2_q8_0,
    .dot_f16 = avx2_dot_f16, .axpy_f16 = avx2_axpy_f16, .to_f16 = avx2_to_f16,
    .scale_round_f16 = avx2_scale_round_f16, .mad_round_f16 = avx2_mad_round_f16,
    .quantize_q8 = avx2_quantize_q8, .attn_f16 = avx2_attn_f16, .silu_mul = avx2_silu_mul,
    .matmul_tile16 = avx2_matmul_tile16,
    .matmul_tile16_k = avx2_matmul_tile16_k, .matmul_kq = avx2_matmul_kq, .layout = SLM_LAYOUT_TILE16,
    .token_tile = avx2_token_tile,
};
/* Attention vectors are one head (64 floats): 256-bit f16 helpers are plenty. K-quant tiles
 * run the AVX2 kernels (8-row groups). */
const slm_impl slm_impl_avx512vnni = {
    .id = SLM_PATH_AVX512VNNI, .name = "x86-avx512vnni",
    .q4_1 = vnni_q4_1, .q4_0 = vnni_q4_0, .q8_0 = vnni_q8_0,
    .dot_f16 = avx2_dot_f16, .axpy_f16 = avx2_axpy_f16, .to_f16 = avx2_to_f16,
    .scale_round_f16 = avx2_scale_round_f16, .mad_round_f16 = avx2_mad_round_f16,
    .quantize_q8 = avx2_quantize_q8, .attn_f16 = avx2_attn_f16, .silu_mul = avx2_silu_mul,
    .matmul_tile16 = vnni_matmul_tile16,
    .matmul_tile16_k = avx2_matmul_tile16_k, .matmul_kq = vnni_matmul_kq, .layout = SLM_LAYOUT_TILE16,
    .token_tile = vnni_token_tile,
};

#endif /* __x86_64__ */
