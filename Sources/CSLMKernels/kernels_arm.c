/* AArch64 paths: NEON (baseline on every AArch64 core) and NEON + dot product. Only the
 * dotprod copy carries a target attribute, so the file builds for plain armv8-a and the
 * dispatcher picks dotprod only when the kernel reports it (HWCAP_ASIMDDP). */
#include "internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>

/* ---------------- NEON ---------------- */
#define SLM_DOTPROD 0
#define FN(name) neon_##name
#include "arm_tile.h"
#undef FN
#undef SLM_DOTPROD

/* Lanes change the summation order: tolerance documented in slm_kernels.h. */
static float neon_dot_f16(const float *q, const uint16_t *k, ptrdiff_t n) {
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, vld1q_f32(q + i), vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(k + i))));
        a1 = vfmaq_f32(a1, vld1q_f32(q + i + 4), vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(k + i + 4))));
    }
    float acc = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++) acc = fmaf(q[i], slm_f16_to_f32(k[i]), acc);
    return acc;
}

/* Element-wise fma: bit-identical to the scalar loop. */
static void neon_axpy_f16(float a, const uint16_t *v, float *y, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(v + i))), a));
    for (; i < n; i++) y[i] = fmaf(a, slm_f16_to_f32(v[i]), y[i]);
}

/* FCVTN rounds by FPCR, which is round-to-nearest-even unless someone changed it. */
static void neon_to_f16(const float *x, uint16_t *out, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(out + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) out[i] = slm_f32_to_f16_scalar(x[i]);
}

/* Round-trips through f16 with FCVTN/FCVTL: exact, matches the scalar definition. */
static void neon_scale_round_f16(float *y, float a, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vcvt_f32_f16(vcvt_f16_f32(vmulq_n_f32(vld1q_f32(y + i), a))));
    for (; i < n; i++) y[i] = slm_f16_to_f32(slm_f32_to_f16_scalar(y[i] * a));
}

static void neon_mad_round_f16(float a, const uint16_t *v, float *y, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t r = vfmaq_n_f32(vld1q_f32(y + i), vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(v + i))), a);
        vst1q_f32(y + i, vcvt_f32_f16(vcvt_f16_f32(r)));
    }
    for (; i < n; i++) y[i] = slm_f16_to_f32(slm_f32_to_f16_scalar(fmaf(slm_f16_to_f32(v[i]), a, y[i])));
}

/* ---------------- NEON + dot product ---------------- */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("arch=armv8.2-a+dotprod"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif

#define SLM_DOTPROD 1
#define FN(name) dotprod_##name
#include "arm_tile.h"
#undef FN
#undef SLM_DOTPROD

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

/* No NEON quantize_q8, attn_f16 or matmul_tile16 yet: those fall back to the generic C
 * (issue #11). */
const slm_impl slm_impl_neon = {
    .id = SLM_PATH_NEON, .name = "arm64-neon",
    .q4_1 = neon_q4_1, .q4_0 = neon_q4_0, .q8_0 = neon_q8_0,
    .dot_f16 = neon_dot_f16, .axpy_f16 = neon_axpy_f16, .to_f16 = neon_to_f16,
    .scale_round_f16 = neon_scale_round_f16, .mad_round_f16 = neon_mad_round_f16,
};
const slm_impl slm_impl_neon_dotprod = {
    .id = SLM_PATH_NEON_DOTPROD, .name = "arm64-neon-dotprod",
    .q4_1 = dotprod_q4_1, .q4_0 = dotprod_q4_0, .q8_0 = dotprod_q8_0,
    .dot_f16 = neon_dot_f16, .axpy_f16 = neon_axpy_f16, .to_f16 = neon_to_f16,
    .scale_round_f16 = neon_scale_round_f16, .mad_round_f16 = neon_mad_round_f16,
};

#endif /* __aarch64__ */
