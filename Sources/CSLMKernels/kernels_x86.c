/* x86-64 paths: AVX2 (+FMA, F16C) and AVX-512 VNNI. Each function gets its target from
 * a pragma rather than from package-wide flags, so the package needs no unsafeFlags and
 * the binary still runs (on the portable path) on CPUs without these extensions. */
#include "internal.h"

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
#undef FN

/* Two accumulators hide the fma latency; the lanes make the sum order differ from the
 * sequential reference, hence the documented tolerance for this one helper. */
static float avx2_dot_f16(const float *q, const uint16_t *k, ptrdiff_t n) {
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

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const slm_impl slm_impl_avx2 = {
    SLM_PATH_AVX2, "x86-avx2", avx2_q4_1, avx2_q4_0, avx2_q8_0, avx2_dot_f16, avx2_axpy_f16, avx2_to_f16, avx2_scale_round_f16, avx2_mad_round_f16,
};
/* Attention vectors are one head (64 floats): 256-bit f16 helpers are plenty. */
const slm_impl slm_impl_avx512vnni = {
    SLM_PATH_AVX512VNNI, "x86-avx512vnni", vnni_q4_1, vnni_q4_0, vnni_q8_0, avx2_dot_f16, avx2_axpy_f16, avx2_to_f16, avx2_scale_round_f16, avx2_mad_round_f16,
};

#endif /* __x86_64__ */
