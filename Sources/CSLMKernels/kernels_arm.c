/* AArch64 paths: NEON (baseline on every AArch64 core) and NEON + dot product. Only the
 * dotprod copy carries a target attribute, so the file builds for plain armv8-a and the
 * dispatcher picks dotprod only when the kernel reports it (HWCAP_ASIMDDP). */
#include "internal.h"
#include "kquants.h"

#if defined(__aarch64__)
#include <arm_neon.h>

/* ---------------- NEON ---------------- */
#define SLM_DOTPROD 0
#define FN(name) neon_##name
#include "arm_tile.h"
#include "arm_kquants.h"
#undef FN
#undef SLM_DOTPROD

/* Lanes change the summation order: tolerance documented in slm_kernels.h. Always inlined
 * into neon_attn_f16 too, which must reproduce this exact sum. */
static SLM_ALWAYS_INLINE float neon_dot_f16_body(const float *q, const uint16_t *k, ptrdiff_t n) {
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
static float neon_dot_f16(const float *q, const uint16_t *k, ptrdiff_t n) { return neon_dot_f16_body(q, k, n); }

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

static SLM_ALWAYS_INLINE float32x4_t neon_round_f16x4(float32x4_t x) { return vcvt_f32_f16(vcvt_f16_f32(x)); }

/* slm_silu_mul1 in 4 lanes, twice per step: the same operations (SLM_EXP_REDUCE's sequence;
 * FMUL then FADD, never FMLA), the clamp's FCMGE/FCMGT false on NaN as the scalar form; the
 * tail runs the scalar form. */
static SLM_ALWAYS_INLINE float32x4_t neon_silu_mul4(float32x4_t gv, float32x4_t uv) {
    const float32x4_t lo = vdupq_n_f32(SLM_EXP_LO), hi = vdupq_n_f32(SLM_EXP_HI);
    const float32x4_t one = vdupq_n_f32(1.0f);
    const float32x4_t nx = vnegq_f32(gv);
    float32x4_t x = vbslq_f32(vcgeq_f32(nx, lo), nx, lo);
    x = vbslq_f32(vcgtq_f32(x, hi), hi, x);
    float32x4_t t, er;
    SLM_EXP_REDUCE(x, t, er, vmulq_f32, vaddq_f32, vsubq_f32, vdupq_n_f32);
    const uint32x4_t sb = vshlq_n_u32(vaddq_u32(vreinterpretq_u32_f32(t), vdupq_n_u32(127u - SLM_EXP_MAGIC_BITS)), 23);
    const float32x4_t den = vaddq_f32(one, vmulq_f32(er, vreinterpretq_f32_u32(sb)));
    return vmulq_f32(vdivq_f32(gv, den), uv);
}

static void neon_silu_mul(float *g, const float *u, ptrdiff_t n) {
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t a = neon_silu_mul4(vld1q_f32(g + i), vld1q_f32(u + i));
        const float32x4_t b = neon_silu_mul4(vld1q_f32(g + i + 4), vld1q_f32(u + i + 4));
        vst1q_f32(g + i, a);
        vst1q_f32(g + i + 4, b);
    }
    for (; i < n; i++) g[i] = slm_silu_mul1(g[i], u[i]);
}

/* Bit-identical to portable_quantize_q8: the same amax (max is exact), the same single
 * multiply by 127/amax, FCVTNS rounds to nearest even like rintf, |q| <= 127 so the
 * narrowing is exact, and d and s go through FCVTN/FCVTL (round to nearest even). */
static void neon_quantize_q8(const float *x, ptrdiff_t cols, int8_t *qs, float *d, float *s, int32_t *isum) {
    for (ptrdiff_t b = 0; b < cols / SLM_QK; b++) {
        const float *xb = x + b * SLM_QK;
        float32x4_t v[8];
        for (int i = 0; i < 8; i++) v[i] = vld1q_f32(xb + 4 * i);
        /* FMAXNM ignores a NaN operand, like the reference's `a > amax` test. */
        const float32x4_t a0 = vmaxnmq_f32(vabsq_f32(v[0]), vabsq_f32(v[1])), a1 = vmaxnmq_f32(vabsq_f32(v[2]), vabsq_f32(v[3]));
        const float32x4_t a2 = vmaxnmq_f32(vabsq_f32(v[4]), vabsq_f32(v[5])), a3 = vmaxnmq_f32(vabsq_f32(v[6]), vabsq_f32(v[7]));
        const float amax = vmaxnmvq_f32(vmaxnmq_f32(vmaxnmq_f32(a0, a1), vmaxnmq_f32(a2, a3)));
        const float dd = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int32x4_t q[8];
        for (int i = 0; i < 8; i++) q[i] = vcvtnq_s32_f32(vmulq_n_f32(v[i], id));
        const int32x4_t t = vaddq_s32(vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3])),
                                      vaddq_s32(vaddq_s32(q[4], q[5]), vaddq_s32(q[6], q[7])));
        const int32_t sum = vaddvq_s32(t);
        for (int h = 0; h < 2; h++) {
            const int16x8_t lo = vcombine_s16(vqmovn_s32(q[4 * h]), vqmovn_s32(q[4 * h + 1]));
            const int16x8_t hi = vcombine_s16(vqmovn_s32(q[4 * h + 2]), vqmovn_s32(q[4 * h + 3]));
            vst1q_s8(qs + b * SLM_QK + 16 * h, vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi)));
        }
        const float ds[4] = {dd, dd * (float)sum, 0.0f, 0.0f};
        const float32x4_t r = neon_round_f16x4(vld1q_f32(ds));
        d[b] = vgetq_lane_f32(r, 0);
        s[b] = vgetq_lane_f32(r, 1);
        isum[b] = sum;
    }
}

/* slm_attn_f16_generic over the NEON helpers, for 64-dim heads, with no indirect calls:
 * scores for up to 64 positions at a time (neon_dot_f16's exact sum), then the online
 * update with the 64-float accumulator held in 16 registers. Every element sees the same
 * f16-rounded mul / fma sequence as neon_scale_round_f16 / neon_mad_round_f16, and the
 * scalar softmax state the same operations in the same order, so the result is
 * bit-identical to the generic loop on both NEON paths. */
static void neon_attn_f16(const float *q, const uint16_t *k, const uint16_t *v, ptrdiff_t stride, ptrdiff_t n,
                          ptrdiff_t d, float scale, float *out) {
    if (d != 64) { slm_attn_f16_generic(&slm_impl_neon, q, k, v, stride, n, d, scale, out); return; }
    enum { CHUNK = 64 };
    float sc[CHUNK];
    float32x4_t acc[16];
    for (int i = 0; i < 16; i++) acc[i] = vdupq_n_f32(0.0f);
    float m = -INFINITY, sum = 0.0f;
    for (ptrdiff_t j0 = 0; j0 < n; j0 += CHUNK) {
        const ptrdiff_t jn = n - j0 < CHUNK ? n - j0 : CHUNK;
        for (ptrdiff_t jj = 0; jj < jn; jj++) sc[jj] = neon_dot_f16_body(q, k + (j0 + jj) * stride, 64) * scale;
        for (ptrdiff_t jj = 0; jj < jn; jj++) {
            const float sj = sc[jj];
            float ms = 1.0f, vs = 1.0f;
            if (sj > m) {
                ms = expf(m - sj);
                m = sj;
                for (int i = 0; i < 16; i++) acc[i] = neon_round_f16x4(vmulq_n_f32(acc[i], ms));
            } else {
                vs = expf(sj - m);
            }
            const uint16_t *vr = v + (j0 + jj) * stride;
            for (int i = 0; i < 16; i++)
                acc[i] = neon_round_f16x4(vfmaq_n_f32(acc[i], vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(vr + 4 * i))), vs));
            sum = sum * ms + vs;
        }
    }
    const float inv = 1.0f / sum;
    for (int i = 0; i < 16; i++) vst1q_f32(out + 4 * i, vmulq_n_f32(acc[i], inv));
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
#include "arm_kquants.h"
#undef FN
#undef SLM_DOTPROD

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

/* The f16 helpers, the quantizer and the attention head need no dot product: both paths
 * share them. Both read the tile16 layout with plain loads (arm_tile.h), so both prefer it. */
const slm_impl slm_impl_neon = {
    .id = SLM_PATH_NEON, .name = "arm64-neon",
    .q4_1 = neon_q4_1, .q4_0 = neon_q4_0, .q8_0 = neon_q8_0,
    .dot_f16 = neon_dot_f16, .axpy_f16 = neon_axpy_f16, .to_f16 = neon_to_f16,
    .scale_round_f16 = neon_scale_round_f16, .mad_round_f16 = neon_mad_round_f16,
    .quantize_q8 = neon_quantize_q8, .attn_f16 = neon_attn_f16, .silu_mul = neon_silu_mul,
    .matmul_tile16 = neon_matmul_tile16,
    .matmul_tile16_k = neon_matmul_tile16_k, .matmul_kq = neon_matmul_kq, .layout = SLM_LAYOUT_TILE16,
    .token_tile = neon_token_tile,
};
const slm_impl slm_impl_neon_dotprod = {
    .id = SLM_PATH_NEON_DOTPROD, .name = "arm64-neon-dotprod",
    .q4_1 = dotprod_q4_1, .q4_0 = dotprod_q4_0, .q8_0 = dotprod_q8_0,
    .dot_f16 = neon_dot_f16, .axpy_f16 = neon_axpy_f16, .to_f16 = neon_to_f16,
    .scale_round_f16 = neon_scale_round_f16, .mad_round_f16 = neon_mad_round_f16,
    .quantize_q8 = neon_quantize_q8, .attn_f16 = neon_attn_f16, .silu_mul = neon_silu_mul,
    .matmul_tile16 = dotprod_matmul_tile16,
    .matmul_tile16_k = dotprod_matmul_tile16_k, .matmul_kq = dotprod_matmul_kq,
    .layout = SLM_LAYOUT_TILE16, .token_tile = dotprod_token_tile,
};

#endif /* __aarch64__ */
