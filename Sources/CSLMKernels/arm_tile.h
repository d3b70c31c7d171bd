/* AArch64 quantized matmul, included twice by kernels_arm.c: SLM_DOTPROD 1 (ARMv8.2
 * sdot, Cortex-A76 / Raspberry Pi 5) and 0 (plain NEON widening multiplies, Cortex-A72 /
 * Raspberry Pi 4). Same tiling as x86_avx2.h with 4 rows per float vector: lane i is row
 * r0+i, one vector per token, so each (row, token) keeps its own sequential fma chain;
 * a block's quants are unpacked once per tile and reused for up to 4 tokens. */

#define SLM_ROWS 4

/* Block quants as signed bytes in activation order: lo pairs with x[0..15], hi with
 * x[16..31]. Q4 nibbles stay 0..15 (Q4_0's -8 is applied through isum afterwards). */
typedef struct { int8x16_t lo, hi; } FN(quants);

static SLM_ALWAYS_INLINE FN(quants) FN(load_quants)(int type, const uint8_t *p) {
    FN(quants) q;
    if (type == SLM_T_Q8_0) {
        q.lo = vld1q_s8((const int8_t *)p);
        q.hi = vld1q_s8((const int8_t *)p + 16);
    } else {
        uint8x16_t v = vld1q_u8(p);
        q.lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f)));
        q.hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
    }
    return q;
}

/* 4 int32 partial sums of one row's block dot. Both forms are exact for any int8 pair:
 * sdot accumulates in int32; the NEON form widens products to int16 (|p| <= 2^14) and
 * pairs them straight into int32. */
static SLM_ALWAYS_INLINE int32x4_t FN(dot)(FN(quants) w, int8x16_t xlo, int8x16_t xhi) {
#if SLM_DOTPROD
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w.lo, xlo), w.hi, xhi);
#else
    int32x4_t s = vpaddlq_s16(vmull_s8(vget_low_s8(w.lo), vget_low_s8(xlo)));
    s = vpadalq_s16(s, vmull_high_s8(w.lo, xlo));
    s = vpadalq_s16(s, vmull_s8(vget_low_s8(w.hi), vget_low_s8(xhi)));
    return vpadalq_s16(s, vmull_high_s8(w.hi, xhi));
#endif
}

static SLM_ALWAYS_INLINE void FN(tile)(int type, int T, const uint8_t *w0, ptrdiff_t row_bytes, int nvalid,
                                       const slm_q8_acts *x, ptrdiff_t t0, float *y, ptrdiff_t ys) {
    const ptrdiff_t nb = x->cols / SLM_QK, cols = x->cols;
    const int bb = slm_block_bytes(type), qo = slm_quant_offset(type);
    const uint8_t *rp[SLM_ROWS];
    for (int i = 0; i < SLM_ROWS; i++) rp[i] = w0 + (i < nvalid ? i : nvalid - 1) * row_bytes;
    float32x4_t acc[4], accm[4];
    for (int t = 0; t < T; t++) acc[t] = accm[t] = vdupq_n_f32(0.0f);

    for (ptrdiff_t b = 0; b < nb; b++) {
        uint16_t dbits[SLM_ROWS], mbits[SLM_ROWS];
        FN(quants) wq[SLM_ROWS];
        for (int i = 0; i < SLM_ROWS; i++) {
            const uint8_t *blk = rp[i] + b * bb;
            dbits[i] = slm_load_u16(blk);
            mbits[i] = type == SLM_T_Q4_1 ? slm_load_u16(blk + 2) : 0;
            wq[i] = FN(load_quants)(type, blk + qo);
        }
        const float32x4_t dw = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(dbits)));
        const float32x4_t mw = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(mbits)));

        for (int t = 0; t < T; t++) {
            const ptrdiff_t tb = (t0 + t) * nb + b;
            const int8_t *xq = x->qs + (t0 + t) * cols + b * SLM_QK;
            const int8x16_t xlo = vld1q_s8(xq), xhi = vld1q_s8(xq + 16);
            int32x4_t p[SLM_ROWS];
            for (int i = 0; i < SLM_ROWS; i++) p[i] = FN(dot)(wq[i], xlo, xhi);
            int32x4_t sumi = vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3]));
            if (type == SLM_T_Q4_0) sumi = vsubq_s32(sumi, vdupq_n_s32(8 * x->isum[tb]));
            const float32x4_t dd = vmulq_n_f32(dw, x->d[tb]);
            acc[t] = vfmaq_f32(acc[t], dd, vcvtq_f32_s32(sumi));  /* acc + dd*sumi, fused */
            if (type == SLM_T_Q4_1) accm[t] = vfmaq_n_f32(accm[t], mw, x->s[tb]);
        }
    }
    for (int t = 0; t < T; t++) {
        const float32x4_t r = type == SLM_T_Q4_1 ? vaddq_f32(acc[t], accm[t]) : acc[t];
        float *dst = y + (t0 + t) * ys;
        if (nvalid == SLM_ROWS) {
            vst1q_f32(dst, r);
        } else {
            float tmp[SLM_ROWS];
            vst1q_f32(tmp, r);
            for (int i = 0; i < nvalid; i++) dst[i] = tmp[i];
        }
    }
}

static SLM_ALWAYS_INLINE void FN(matmul)(int type, const void *w, ptrdiff_t row_bytes, ptrdiff_t r_begin,
                                         ptrdiff_t r_end, const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    for (ptrdiff_t r0 = r_begin; r0 < r_end; r0 += SLM_ROWS) {
        const int nvalid = (int)(r_end - r0 < SLM_ROWS ? r_end - r0 : SLM_ROWS);
        const uint8_t *w0 = (const uint8_t *)w + r0 * row_bytes;
        ptrdiff_t t = 0;
        for (; t + 4 <= x->tokens; t += 4) FN(tile)(type, 4, w0, row_bytes, nvalid, x, t, y + r0, ys);
        if (x->tokens - t >= 2) { FN(tile)(type, 2, w0, row_bytes, nvalid, x, t, y + r0, ys); t += 2; }
        if (x->tokens - t == 1) FN(tile)(type, 1, w0, row_bytes, nvalid, x, t, y + r0, ys);
    }
}

static void FN(q4_1)(const void *w, ptrdiff_t rb, ptrdiff_t r0, ptrdiff_t r1, const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    FN(matmul)(SLM_T_Q4_1, w, rb, r0, r1, x, y, ys);
}
static void FN(q4_0)(const void *w, ptrdiff_t rb, ptrdiff_t r0, ptrdiff_t r1, const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    FN(matmul)(SLM_T_Q4_0, w, rb, r0, r1, x, y, ys);
}
static void FN(q8_0)(const void *w, ptrdiff_t rb, ptrdiff_t r0, ptrdiff_t r1, const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    FN(matmul)(SLM_T_Q8_0, w, rb, r0, r1, x, y, ys);
}

#undef SLM_ROWS
