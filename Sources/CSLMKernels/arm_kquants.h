/* K-quant and 5-bit matmuls (slm_matmul_kq) for AArch64, included by kernels_arm.c twice:
 * SLM_DOTPROD 1 (sdot, Cortex-A76 / Raspberry Pi 5) and 0 (widening multiplies, Cortex-A72 /
 * Raspberry Pi 4), with FN(name) set. Same scheme as x86_kquants.h on 4 rows: lane i of a
 * float vector is row r0 + i, one vector per token, each (row, token) keeping the
 * contract's sequential fma chain over sub-blocks (slm_kernels.h). A sub-block's quants are
 * unpacked once per tile to signed bytes (the Q5_0 / Q6_K offsets applied: every value fits
 * in [-32, 31]) and reused for up to 32 tokens. Both dot forms are exact: sdot sums in int32;
 * the NEON form adds two products (|p| <= 32 * 128) per int16 lane, then pairs into int32. */

#define KQ_ROWS 4
#define KQ_TOKENS 32

typedef struct { int8x16_t lo, hi; } FN(kq_q);

/* Sub-block j of the block at blk, in activation order: lo = elements 0..15, hi = 16..31. */
static SLM_ALWAYS_INLINE FN(kq_q) FN(kq_quants)(int wt, const uint8_t *blk, int j) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    uint8x16_t lo, hi;
    switch (wt) {
    case SLM_WTYPE_Q5_0:
    case SLM_WTYPE_Q5_1: {
        const int q5_1 = wt == SLM_WTYPE_Q5_1;
        const uint8x16_t v = vld1q_u8(blk + (q5_1 ? KQ_Q5_1_QS : KQ_Q5_0_QS));
        uint32_t qh;
        memcpy(&qh, blk + (q5_1 ? KQ_Q5_1_QH : KQ_Q5_0_QH), 4);
        /* byte e gets the qh byte holding bit e; that bit alone becomes 0x10 */
        static const uint8_t pick_lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
        static const uint8_t pick_hi[16] = {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
        static const uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        const uint8x16_t h = vreinterpretq_u8_u32(vdupq_n_u32(qh)), b = vld1q_u8(bits), x10 = vdupq_n_u8(0x10);
        lo = vorrq_u8(vandq_u8(v, m4), vandq_u8(vtstq_u8(vqtbl1q_u8(h, vld1q_u8(pick_lo)), b), x10));
        hi = vorrq_u8(vshrq_n_u8(v, 4), vandq_u8(vtstq_u8(vqtbl1q_u8(h, vld1q_u8(pick_hi)), b), x10));
        if (!q5_1) { lo = vsubq_u8(lo, x10); hi = vsubq_u8(hi, x10); }
        break;
    }
    case SLM_WTYPE_Q4_K:
    case SLM_WTYPE_Q5_K: {
        const int q5 = wt == SLM_WTYPE_Q5_K;
        const uint8_t *qs = blk + (q5 ? KQ_Q5_K_QS : KQ_Q4_K_QS) + 32 * (j / 2);
        lo = vld1q_u8(qs);
        hi = vld1q_u8(qs + 16);
        if (j & 1) { lo = vshrq_n_u8(lo, 4); hi = vshrq_n_u8(hi, 4); }
        else { lo = vandq_u8(lo, m4); hi = vandq_u8(hi, m4); }
        if (q5) {
            const uint8x16_t b = vdupq_n_u8((uint8_t)(1u << j)), x10 = vdupq_n_u8(0x10);
            lo = vorrq_u8(lo, vandq_u8(vtstq_u8(vld1q_u8(blk + KQ_Q5_K_QH), b), x10));
            hi = vorrq_u8(hi, vandq_u8(vtstq_u8(vld1q_u8(blk + KQ_Q5_K_QH + 16), b), x10));
        }
        break;
    }
    default: { /* Q6_K */
        const int h = j / 4, g = j % 4;
        const uint8_t *ql = blk + 64 * h + 32 * (g & 1), *qh = blk + KQ_Q6_K_QH + 32 * h;
        lo = vld1q_u8(ql);
        hi = vld1q_u8(ql + 16);
        if (g >= 2) { lo = vshrq_n_u8(lo, 4); hi = vshrq_n_u8(hi, 4); }
        else { lo = vandq_u8(lo, m4); hi = vandq_u8(hi, m4); }
        const int8x16_t sh = vdupq_n_s8((int8_t)(-2 * g));
        const uint8x16_t three = vdupq_n_u8(3), x20 = vdupq_n_u8(32);
        lo = vorrq_u8(lo, vshlq_n_u8(vandq_u8(vshlq_u8(vld1q_u8(qh), sh), three), 4));
        hi = vorrq_u8(hi, vshlq_n_u8(vandq_u8(vshlq_u8(vld1q_u8(qh + 16), sh), three), 4));
        lo = vsubq_u8(lo, x20);
        hi = vsubq_u8(hi, x20);
        break;
    }
    }
    FN(kq_q) q = {vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi)};
    return q;
}

/* 4 int32 partial sums of a 16-byte dot. */
static SLM_ALWAYS_INLINE int32x4_t FN(kq_dot16)(int32x4_t acc, int8x16_t w, int8x16_t x) {
#if SLM_DOTPROD
    return vdotq_s32(acc, w, x);
#else
    return vpadalq_s16(acc, vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(x)), w, x));
#endif
}

static SLM_ALWAYS_INLINE void FN(kq_tile)(int wt, int T, const uint8_t *w0, ptrdiff_t row_bytes, int nvalid,
                                          const slm_q8_acts *x, ptrdiff_t t0, float *y, ptrdiff_t ys) {
    const ptrdiff_t nsub = x->cols / SLM_QK, cols = x->cols;
    const int spb = kq_subs(wt), bb = kq_block_bytes(wt);
    const int k45 = wt == SLM_WTYPE_Q4_K || wt == SLM_WTYPE_Q5_K;
    const uint8_t *rp[KQ_ROWS];
    for (int i = 0; i < KQ_ROWS; i++) rp[i] = w0 + (i < nvalid ? i : nvalid - 1) * row_bytes;
    float32x4_t acc[KQ_TOKENS], accm[KQ_TOKENS];
    for (int t = 0; t < T; t++) acc[t] = accm[t] = vdupq_n_f32(0.0f);
    for (ptrdiff_t blk = 0; blk < nsub / spb; blk++) {
        uint16_t dh[KQ_ROWS], mh[KQ_ROWS];
        int32_t sc[8][KQ_ROWS], mn[8][KQ_ROWS];  /* K: scale / min per sub-block; Q6_K: sc_lo / sc_hi */
        for (int i = 0; i < KQ_ROWS; i++) {
            const uint8_t *b = rp[i] + blk * bb;
            dh[i] = slm_load_u16(b + (wt == SLM_WTYPE_Q6_K ? KQ_Q6_K_D : 0));
            mh[i] = wt == SLM_WTYPE_Q5_0 || wt == SLM_WTYPE_Q6_K ? 0 : slm_load_u16(b + 2);
            if (k45) {
                for (int j = 0; j < 8; j++) kq_scale_min(b + KQ_K_SCALES, j, &sc[j][i], &mn[j][i]);
            } else if (wt == SLM_WTYPE_Q6_K) {
                const int8_t *s8 = (const int8_t *)(b + KQ_Q6_K_SC);
                for (int j = 0; j < 8; j++) { sc[j][i] = s8[2 * j]; mn[j][i] = s8[2 * j + 1]; }
            }
        }
        const float32x4_t vd = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(dh)));
        const float32x4_t vm = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(mh)));
        for (int j = 0; j < spb; j++) {
            const ptrdiff_t k = blk * spb + j;
            FN(kq_q) wq[KQ_ROWS];
            for (int i = 0; i < KQ_ROWS; i++) wq[i] = FN(kq_quants)(wt, rp[i] + blk * bb, j);
            const int32x4_t v0 = k45 || wt == SLM_WTYPE_Q6_K ? vld1q_s32(sc[j]) : vdupq_n_s32(1);
            const int32x4_t v1 = k45 || wt == SLM_WTYPE_Q6_K ? vld1q_s32(mn[j]) : vdupq_n_s32(0);
            for (int t = 0; t < T; t++) {
                const ptrdiff_t xk = (t0 + t) * nsub + k;
                const int8_t *xq = x->qs + (t0 + t) * cols + k * SLM_QK;
                const int8x16_t xlo = vld1q_s8(xq), xhi = vld1q_s8(xq + 16);
                int32x4_t p[KQ_ROWS];
                for (int i = 0; i < KQ_ROWS; i++) {
                    if (wt == SLM_WTYPE_Q6_K) {
                        /* the two halves have their own scales: scale each half's partial sums */
                        const int32x4_t a = FN(kq_dot16)(vdupq_n_s32(0), wq[i].lo, xlo);
                        const int32x4_t c = FN(kq_dot16)(vdupq_n_s32(0), wq[i].hi, xhi);
                        p[i] = vmlaq_n_s32(vmulq_n_s32(a, sc[j][i]), c, mn[j][i]);
                    } else {
                        p[i] = FN(kq_dot16)(FN(kq_dot16)(vdupq_n_s32(0), wq[i].lo, xlo), wq[i].hi, xhi);
                    }
                }
                int32x4_t s = vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3]));
                if (k45) s = vmulq_s32(s, v0);
                const float32x4_t vdx = vdupq_n_f32(x->d[xk]);
                acc[t] = vfmaq_f32(acc[t], vmulq_f32(vd, vdx), vcvtq_f32_s32(s));
                if (k45)
                    accm[t] = vfmaq_f32(accm[t], vmulq_f32(vm, vdx), vcvtq_f32_s32(vmulq_n_s32(v1, x->isum[xk])));
                else if (wt == SLM_WTYPE_Q5_1)
                    accm[t] = vfmaq_f32(accm[t], vm, vdupq_n_f32(x->s[xk]));
            }
        }
    }
    for (int t = 0; t < T; t++) {
        const float32x4_t r = k45 ? vsubq_f32(acc[t], accm[t]) : wt == SLM_WTYPE_Q5_1 ? vaddq_f32(acc[t], accm[t]) : acc[t];
        float *yt = y + (t0 + t) * ys;
        if (nvalid == KQ_ROWS) {
            vst1q_f32(yt, r);
        } else {
            float tmp[KQ_ROWS];
            vst1q_f32(tmp, r);
            for (int i = 0; i < nvalid; i++) yt[i] = tmp[i];
        }
    }
}

#include "kq_driver.h"

#undef KQ_ROWS
#undef KQ_TOKENS
