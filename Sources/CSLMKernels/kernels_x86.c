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

/* The generic attention loop (kernels.c) for 64-dim heads with no indirect calls: scores for
 * up to 64 positions at a time (same dot as avx2_dot_f16), then the online update with the
 * accumulator held in registers; every element sees the same f16-rounded fma/mul sequence,
 * so the result is bit-identical to slm_attn_f16_generic on this path. */
static void avx2_attn_f16(const float *q, const uint16_t *k, const uint16_t *v, ptrdiff_t stride, ptrdiff_t n,
                          ptrdiff_t d, float scale, float *out) {
    if (d != 64) { slm_attn_f16_generic(&slm_impl_avx2, q, k, v, stride, n, d, scale, out); return; }
    enum { CHUNK = 64 };
    float sc[CHUNK];
    __m256 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    float m = -INFINITY, sum = 0.0f;
    for (ptrdiff_t j0 = 0; j0 < n; j0 += CHUNK) {
        const ptrdiff_t jn = n - j0 < CHUNK ? n - j0 : CHUNK;
        for (ptrdiff_t jj = 0; jj < jn; jj++) sc[jj] = avx2_dot_f16_body(q, k + (j0 + jj) * stride, 64) * scale;
        for (ptrdiff_t jj = 0; jj < jn; jj++) {
            const float s = sc[jj];
            float ms = 1.0f, vs = 1.0f;
            if (s > m) {
                ms = expf(m - s);
                m = s;
                const __m256 vms = _mm256_set1_ps(ms);
                for (int i = 0; i < 8; i++)
                    acc[i] = _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(acc[i], vms), _MM_FROUND_TO_NEAREST_INT));
            } else {
                vs = expf(s - m);
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
    .quantize_q8 = avx2_quantize_q8, .attn_f16 = avx2_attn_f16, .matmul_tile16 = avx2_matmul_tile16,
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
    .quantize_q8 = avx2_quantize_q8, .attn_f16 = avx2_attn_f16, .matmul_tile16 = vnni_matmul_tile16,
    .matmul_tile16_k = avx2_matmul_tile16_k, .matmul_kq = vnni_matmul_kq, .layout = SLM_LAYOUT_TILE16,
    .token_tile = vnni_token_tile,
};

#endif /* __x86_64__ */
