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

/* FN(matmul) over the row layout and the slm_impl entries: tile_driver.h, below. */

/* ---- tile16 layout (slm_kernels.h), both NEON paths ----
 * In block b of a 16-row tile, the 16 bytes at quants + 64c + 16g are quant dword c of rows
 * 4g..4g+3, one row per 32-bit lane, so every instruction below works on 4 rows at once with
 * plain loads: no per-row loads, inserts or pairwise reductions, and the scales of 4 rows are
 * one 8-byte load.
 *   - dot product: SDOT by element (vdotq_laneq_s32) multiplies each lane's 4 bytes by the
 *     same 4 activation bytes and adds them to that lane's int32 sum;
 *   - plain NEON (Cortex-A72): the 4 activation bytes are replicated to every lane (DUP),
 *     SMULL/SMLAL(2) multiply-accumulate the 8 weight vectors' products in int16 (each lane
 *     sums 8 products of at most 15 * 128 for Q4, 31 * 128 for Q5: 31744 < 2^15, exact) and
 *     one SADDLP + ADDP per 4 rows reduce them; Q8_0 products (up to 2^14) are paired
 *     straight into int32 with SADALP.
 * The integer sums are exact; the float chain per (row, token) is FN(tile)'s (FN(kq_tile)'s
 * for Q5), so results are bit-identical to the row layout. */

/* Group g's quants as 8 operands: w[k] lane i holds row 4g+i's weights for activation
 * bytes 4k..4k+3 (Q4: nibbles 0..15, Q4_0's -8 applied through isum; Q5: 0..31, the nibble
 * with its qh bit as bit 4, Q5_0's -16 applied through isum; Q8: the bytes). qh is the
 * block's 16 Q5 tile16 qh words (read for Q5 only), q its quants. */
static SLM_ALWAYS_INLINE void FN(t16_quants)(int type, const uint8_t *qh, const uint8_t *q, int g, int8x16_t w[8]) {
    if (type == SLM_T_Q8_0) {
        for (int c = 0; c < 8; c++) w[c] = vld1q_s8((const int8_t *)q + 64 * c + 16 * g);
    } else if (slm_is_q5(type)) {
        /* The 4 rows' qh words (tile16 form, slm_kernels.h): shifted by 4 - c (left) and c
         * (right), the high bits of dword c's low and high nibbles land on bit 4 of each byte. */
        const uint8x16_t m4 = vdupq_n_u8(0x0f), m16 = vdupq_n_u8(0x10);
        const uint32x4_t hb = vld1q_u32((const uint32_t *)(const void *)(qh + 16 * g));
        const uint8x16_t h[4][2] = {
            {vreinterpretq_u8_u32(vshlq_n_u32(hb, 4)), vreinterpretq_u8_u32(hb)},
            {vreinterpretq_u8_u32(vshlq_n_u32(hb, 3)), vreinterpretq_u8_u32(vshrq_n_u32(hb, 1))},
            {vreinterpretq_u8_u32(vshlq_n_u32(hb, 2)), vreinterpretq_u8_u32(vshrq_n_u32(hb, 2))},
            {vreinterpretq_u8_u32(vshlq_n_u32(hb, 1)), vreinterpretq_u8_u32(vshrq_n_u32(hb, 3))}};
        for (int c = 0; c < 4; c++) {
            const uint8x16_t v = vld1q_u8(q + 64 * c + 16 * g);
            w[c] = vreinterpretq_s8_u8(vbslq_u8(m16, h[c][0], vandq_u8(v, m4)));
            w[4 + c] = vreinterpretq_s8_u8(vbslq_u8(m16, h[c][1], vshrq_n_u8(v, 4)));
        }
    } else {
        const uint8x16_t m4 = vdupq_n_u8(0x0f);
        for (int c = 0; c < 4; c++) {
            const uint8x16_t v = vld1q_u8(q + 64 * c + 16 * g);
            w[c] = vreinterpretq_s8_u8(vandq_u8(v, m4));
            w[4 + c] = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
        }
    }
}

#if SLM_DOTPROD
/* The 4 rows' exact block dots with activations xq[0..32), in one dependency chain or two.
 * (clang 21: two chains give fewer instructions for the one-token tile, one chain for the
 * multi-token tiles, where the register pressure is higher.) */
static SLM_ALWAYS_INLINE int32x4_t FN(t16_dot)(int type, int chains, const int8x16_t w[8], const int8_t *xq) {
    (void)type;
    const int8x16_t x0 = vld1q_s8(xq), x1 = vld1q_s8(xq + 16);
    if (chains == 2) {
        int32x4_t s0 = vdotq_laneq_s32(vdupq_n_s32(0), w[0], x0, 0), s1 = vdotq_laneq_s32(vdupq_n_s32(0), w[4], x1, 0);
        s0 = vdotq_laneq_s32(s0, w[1], x0, 1); s1 = vdotq_laneq_s32(s1, w[5], x1, 1);
        s0 = vdotq_laneq_s32(s0, w[2], x0, 2); s1 = vdotq_laneq_s32(s1, w[6], x1, 2);
        s0 = vdotq_laneq_s32(s0, w[3], x0, 3); s1 = vdotq_laneq_s32(s1, w[7], x1, 3);
        return vaddq_s32(s0, s1);
    }
    int32x4_t s = vdotq_laneq_s32(vdupq_n_s32(0), w[0], x0, 0);
    s = vdotq_laneq_s32(s, w[1], x0, 1);
    s = vdotq_laneq_s32(s, w[2], x0, 2);
    s = vdotq_laneq_s32(s, w[3], x0, 3);
    s = vdotq_laneq_s32(s, w[4], x1, 0);
    s = vdotq_laneq_s32(s, w[5], x1, 1);
    s = vdotq_laneq_s32(s, w[6], x1, 2);
    return vdotq_laneq_s32(s, w[7], x1, 3);
}
#else
/* Plain NEON operates on 8-byte halves: w[k]'s low half is rows 0 and 1, its high half rows
 * 2 and 3, each multiplied by activation bytes 4k..4k+3 replicated to both 32-bit lanes
 * (one DUP, FN(t16_xk)). Splitting the halves once per block keeps the per-token work at
 * one DUP and two SMLAL per k (left to itself, clang re-extracts the high halves for every
 * token). */
typedef struct { int8x8_t lo[8], hi[8]; } FN(t16_halves);

static SLM_ALWAYS_INLINE FN(t16_halves) FN(t16_split)(const int8x16_t w[8]) {
    FN(t16_halves) h;
    for (int k = 0; k < 8; k++) { h.lo[k] = vget_low_s8(w[k]); h.hi[k] = vget_high_s8(w[k]); }
    return h;
}

/* Activation bytes 4k..4k+3 replicated to all 4 lanes, by DUP (element) from the block's
 * two 16-byte vectors: one instruction each, and the same 2 loads and 8 DUPs serve all the
 * tile's row groups (the compiler shares them). Replicating from memory (LD1R) needed an
 * address add per k (LD1R takes no offset) and was redone for every group: 71 of the ~250
 * instructions of a Q4_1 decode block on this path. k is a constant after unrolling, so
 * the switch folds. */
static SLM_ALWAYS_INLINE int8x16_t FN(t16_xk)(int8x16_t x0, int8x16_t x1, int k) {
    const int32x4_t a = vreinterpretq_s32_s8(x0), b = vreinterpretq_s32_s8(x1);
    switch (k) {
    case 0: return vreinterpretq_s8_s32(vdupq_laneq_s32(a, 0));
    case 1: return vreinterpretq_s8_s32(vdupq_laneq_s32(a, 1));
    case 2: return vreinterpretq_s8_s32(vdupq_laneq_s32(a, 2));
    case 3: return vreinterpretq_s8_s32(vdupq_laneq_s32(a, 3));
    case 4: return vreinterpretq_s8_s32(vdupq_laneq_s32(b, 0));
    case 5: return vreinterpretq_s8_s32(vdupq_laneq_s32(b, 1));
    case 6: return vreinterpretq_s8_s32(vdupq_laneq_s32(b, 2));
    default: return vreinterpretq_s8_s32(vdupq_laneq_s32(b, 3));
    }
}

/* The one-token form: SMULL/SMLAL2 on whole registers against activation bytes replicated
 * to all 4 lanes, which needs no split (decode uses each weight vector once). */
static SLM_ALWAYS_INLINE int32x4_t FN(t16_dot)(int type, int chains, const int8x16_t w[8], const int8_t *xq) {
    (void)chains;
    const int8x16_t x0 = vld1q_s8(xq), x1 = vld1q_s8(xq + 16);
    if (type == SLM_T_Q8_0) {
        int32x4_t a = vdupq_n_s32(0), b = vdupq_n_s32(0);
        SLM_UNROLL for (int k = 0; k < 8; k++) {
            const int8x16_t xk = FN(t16_xk)(x0, x1, k);
            a = vpadalq_s16(a, vmull_s8(vget_low_s8(w[k]), vget_low_s8(xk)));
            b = vpadalq_s16(b, vmull_high_s8(w[k], xk));
        }
        return vpaddq_s32(a, b);
    }
    int16x8_t a = vdupq_n_s16(0), b = vdupq_n_s16(0);
    SLM_UNROLL for (int k = 0; k < 8; k++) {
        const int8x16_t xk = FN(t16_xk)(x0, x1, k);
        a = vmlal_s8(a, vget_low_s8(w[k]), vget_low_s8(xk));
        b = vmlal_high_s8(b, w[k], xk);
    }
    return vpaddq_s32(vpaddlq_s16(a), vpaddlq_s16(b));
}

static SLM_ALWAYS_INLINE int32x4_t FN(t16_dot_halves)(int type, const FN(t16_halves) *h, const int8_t *xq) {
    const int8x16_t xv0 = vld1q_s8(xq), xv1 = vld1q_s8(xq + 16);
    if (type == SLM_T_Q8_0) {  /* products up to 2^14: two would overflow int16, so pair them into int32 */
        int32x4_t a = vdupq_n_s32(0), b = vdupq_n_s32(0);
        SLM_UNROLL for (int k = 0; k < 8; k++) {
            const int8x8_t xk = vget_low_s8(FN(t16_xk)(xv0, xv1, k));
            a = vpadalq_s16(a, vmull_s8(h->lo[k], xk));
            b = vpadalq_s16(b, vmull_s8(h->hi[k], xk));
        }
        return vpaddq_s32(a, b);  /* a = rows 0,0,1,1; b = rows 2,2,3,3 */
    }
    const int8x8_t x0 = vget_low_s8(FN(t16_xk)(xv0, xv1, 0));
    int16x8_t a = vmull_s8(h->lo[0], x0), b = vmull_s8(h->hi[0], x0);
    SLM_UNROLL for (int k = 1; k < 8; k++) {
        const int8x8_t xk = vget_low_s8(FN(t16_xk)(xv0, xv1, k));
        a = vmlal_s8(a, h->lo[k], xk);
        b = vmlal_s8(b, h->hi[k], xk);
    }
    /* a: rows 0 and 1 (4 lanes each), b: rows 2 and 3 */
    return vpaddq_s32(vpaddlq_s16(a), vpaddlq_s16(b));
}
#endif

/* One group of 4 rows of a tile's block against T tokens from t0 (FN(t16_tile)'s body). */
static SLM_ALWAYS_INLINE void FN(t16_group)(int type, int T, const uint8_t *blk, ptrdiff_t qoff, int g, int split_m,
                                            const slm_q8_acts *x, ptrdiff_t t0, ptrdiff_t b, float32x4_t acc[4],
                                            float32x4_t accm[4]) {
    const ptrdiff_t nb = x->cols / SLM_QK, cols = x->cols;
    const float32x4_t dw = vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(blk + 8 * g)));
    const float32x4_t mw = slm_has_m(type) && !split_m ? vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(blk + 32 + 8 * g)))
                                                       : vdupq_n_f32(0.0f);
    int8x16_t w[8];
    FN(t16_quants)(type, blk + slm_tile16_qh(type), blk + qoff, g, w);
#if !SLM_DOTPROD
    const FN(t16_halves) h = FN(t16_split)(w);  /* dead (and dropped) when T = 1 */
#endif
    SLM_UNROLL for (int t = 0; t < T; t++) {
        const ptrdiff_t tb = (t0 + t) * nb + b;
        const int8_t *xq = x->qs + (t0 + t) * cols + b * SLM_QK;
#if SLM_DOTPROD
        int32x4_t sumi = FN(t16_dot)(type, T == 1 ? 2 : 1, w, xq);
#else
        int32x4_t sumi = T == 1 ? FN(t16_dot)(type, 1, w, xq) : FN(t16_dot_halves)(type, &h, xq);
#endif
        if (type == SLM_T_Q4_0 || type == SLM_T_Q5_0)  /* their q are u - 8 / u - 16 */
            sumi = vsubq_s32(sumi, vdupq_n_s32((type == SLM_T_Q4_0 ? 8 : 16) * x->isum[tb]));
        const float32x4_t dd = vmulq_n_f32(dw, x->d[tb]);
        acc[t] = vfmaq_f32(acc[t], dd, vcvtq_f32_s32(sumi));  /* acc + dd*sumi, fused */
        if (slm_has_m(type) && !split_m) accm[t] = vfmaq_n_f32(accm[t], mw, x->s[tb]);
    }
}

/* Stores acc (+ or - accm, or alone, by type) of G groups x T tokens: rows [lo, hi) of the tile. */
static SLM_ALWAYS_INLINE void FN(t16_store)(int type, int T, int G, int g0, int lo, int hi, float *y, ptrdiff_t t0,
                                            ptrdiff_t ys, float32x4_t acc[4][4], float32x4_t accm[4][4]) {
    SLM_UNROLL for (int gi = 0; gi < G; gi++) {
        const int r = 4 * (g0 + gi);
        SLM_UNROLL for (int t = 0; t < T; t++) {
            const int sign = slm_min_sign(type);
            const float32x4_t v = sign > 0 ? vaddq_f32(acc[gi][t], accm[gi][t])
                                  : sign < 0 ? vsubq_f32(acc[gi][t], accm[gi][t]) : acc[gi][t];
            float *dst = y + (t0 + t) * ys + r;
            if (r >= lo && r + 4 <= hi) {
                vst1q_f32(dst, v);
            } else {
                float tmp[4];
                vst1q_f32(tmp, v);
                for (int i = 0; i < 4; i++)
                    if (r + i >= lo && r + i < hi) dst[i] = tmp[i];
            }
        }
    }
}

/* A Q4_K tile16 super-block's scales (sc) and mins (mn) of 8-row group h (rows 8h..8h+7):
 * byte 8j + k = row 8h + k's value for sub-block j, from the layout's two planes. */
static SLM_ALWAYS_INLINE void FN(t16_q4k_scales)(const uint8_t *blk, int h, uint8_t sc[64], uint8_t mn[64]) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m30 = vdupq_n_u8(0x30);
    const uint8x16_t hb[2] = {vld1q_u8(blk + KQ_Q4K_T16_HI + 32 * h), vld1q_u8(blk + KQ_Q4K_T16_HI + 32 * h + 16)};
    SLM_UNROLL for (int q = 0; q < 4; q++) {  /* sub-blocks 2q, 2q + 1 */
        const uint8x16_t l = vld1q_u8(blk + KQ_Q4K_T16_LO + 64 * h + 16 * q), e = hb[q % 2];
        const uint8x16_t sh = q < 2 ? vshlq_n_u8(e, 4) : e, mh = q < 2 ? vshlq_n_u8(e, 2) : vshrq_n_u8(e, 2);
        vst1q_u8(sc + 16 * q, vorrq_u8(vandq_u8(l, m4), vandq_u8(sh, m30)));
        vst1q_u8(mn + 16 * q, vorrq_u8(vshrq_n_u8(l, 4), vandq_u8(mh, m30)));
    }
}

/* The 4 bytes at p widened to 32-bit lanes. */
static SLM_ALWAYS_INLINE uint32x4_t FN(widen4)(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(v)))));
}

/* Q4_K and Q5_K tile16: sub-block j of a super-block is a Q4_1-form block (Q5_K: a Q5_1 one,
 * slm_kernels.h), so its exact per-row dots are FN(t16_group)'s (FN(t16_quants), FN(t16_dot));
 * each row's 6-bit scale then multiplies its int32 sum (at most 63 * 32 * 31 * 128, exact),
 * and the min chain takes each super-block's eight sub-blocks after it (mn * isum below 2^24: the float product is
 * the contract's (float)(mn * isum)). Per (row, token) slm_kq_portable's two chains:
 * bit-identical. */
static SLM_ALWAYS_INLINE void FN(t16_tile_q45k)(int type, int T, int G, const uint8_t *tile, int g0, int lo, int hi,
                                                const slm_q8_acts *x, ptrdiff_t t0, float *y, ptrdiff_t ys) {
    const int q5 = type == SLM_T_Q5_K;
    const ptrdiff_t nb = x->cols / SLM_QK, cols = x->cols, tb_bytes = q5 ? KQ_Q5K_TILE : KQ_Q4K_TILE;
    float32x4_t acc[4][4], accm[4][4];  /* [group][token] */
    SLM_UNROLL for (int gi = 0; gi < G; gi++)
        SLM_UNROLL for (int t = 0; t < T; t++) acc[gi][t] = accm[gi][t] = vdupq_n_f32(0.0f);
    for (ptrdiff_t sb = 0; sb < nb / 8; sb++) {
        const uint8_t *blk = tile + sb * tb_bytes;
        uint8_t sc[2][64], mn[2][64];  /* per 8-row group touched: g0 / 2 and (G > 2) the next */
        const int h0 = g0 / 2, nh = (g0 + G - 1) / 2 - h0 + 1;
        for (int h = 0; h < nh; h++) FN(t16_q4k_scales)(blk, h0 + h, sc[h], mn[h]);
        for (int j = 0; j < 8; j++) {
            const ptrdiff_t b = 8 * sb + j;
            SLM_UNROLL for (int gi = 0; gi < G; gi++) {
                const int g = g0 + gi;
                const float32x4_t dw = vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(blk + 8 * g)));
                const int32x4_t s4 = vreinterpretq_s32_u32(FN(widen4)(sc[g / 2 - h0] + 8 * j + 4 * (g % 2)));
                int8x16_t w[8];
                /* Q5_K's sub-block is a Q5_1 tile block's quants (0..31, fifth bits from its qh words) */
                const uint8_t *q = blk + KQ_Q4K_T16_QS + kq_sub_stride(q5) * j;
                FN(t16_quants)(q5 ? SLM_T_Q5_1 : SLM_T_Q4_K, q + KQ_Q5K_T16_QH, q, g, w);
#if !SLM_DOTPROD
                const FN(t16_halves) hv = FN(t16_split)(w);  /* dead (and dropped) when T = 1 */
#endif
                SLM_UNROLL for (int t = 0; t < T; t++) {
                    const int8_t *xq = x->qs + (t0 + t) * cols + b * SLM_QK;
#if SLM_DOTPROD
                    const int32x4_t sumi = FN(t16_dot)(SLM_T_Q4_K, T == 1 ? 2 : 1, w, xq);
#else
                    const int32x4_t sumi = T == 1 ? FN(t16_dot)(SLM_T_Q4_K, 1, w, xq) : FN(t16_dot_halves)(SLM_T_Q4_K, &hv, xq);
#endif
                    const float32x4_t dd = vmulq_n_f32(dw, x->d[(t0 + t) * nb + b]);
                    acc[gi][t] = vfmaq_f32(acc[gi][t], dd, vcvtq_f32_s32(vmulq_s32(sumi, s4)));
                }
            }
        }
        SLM_UNROLL for (int gi = 0; gi < G; gi++) {
            const int g = g0 + gi;
            const float32x4_t dmin = vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(blk + 32 + 8 * g)));
            for (int j = 0; j < 8; j++) {
                const float32x4_t mf = vcvtq_f32_u32(FN(widen4)(mn[g / 2 - h0] + 8 * j + 4 * (g % 2)));
                SLM_UNROLL for (int t = 0; t < T; t++) {
                    const ptrdiff_t tb = (t0 + t) * nb + 8 * sb + j;
                    accm[gi][t] = vfmaq_f32(accm[gi][t], vmulq_n_f32(dmin, x->d[tb]), vmulq_n_f32(mf, (float)x->isum[tb]));
                }
            }
        }
    }
    FN(t16_store)(type, T, G, g0, lo, hi, y, t0, ys, acc, accm);
}

/* Q6_K's two half dots of 4 rows (lo: elements 0..15 from w[0..3], hi: 16..31 from w[4..7]),
 * weights u = q + 32 in 0..63. Plain NEON sums 4 products per int16 lane (4 * 63 * 128 =
 * 32256, exact) and pairs them into int32; SDOT accumulates in int32. */
static SLM_ALWAYS_INLINE void FN(t16_dot_q6)(const int8x16_t w[8], const int8_t *xq, int32x4_t *lo, int32x4_t *hi) {
    const int8x16_t x0 = vld1q_s8(xq), x1 = vld1q_s8(xq + 16);
#if SLM_DOTPROD
    int32x4_t s0 = vdotq_laneq_s32(vdupq_n_s32(0), w[0], x0, 0), s1 = vdotq_laneq_s32(vdupq_n_s32(0), w[4], x1, 0);
    s0 = vdotq_laneq_s32(s0, w[1], x0, 1); s1 = vdotq_laneq_s32(s1, w[5], x1, 1);
    s0 = vdotq_laneq_s32(s0, w[2], x0, 2); s1 = vdotq_laneq_s32(s1, w[6], x1, 2);
    *lo = vdotq_laneq_s32(s0, w[3], x0, 3);
    *hi = vdotq_laneq_s32(s1, w[7], x1, 3);
#else
    int16x8_t a[2], b[2];  /* [half]: a rows 0 and 1, b rows 2 and 3 */
    SLM_UNROLL for (int k = 0; k < 8; k++) {
        const int8x16_t xk = FN(t16_xk)(x0, x1, k);
        const int u = k / 4;
        if (k % 4 == 0) {
            a[u] = vmull_s8(vget_low_s8(w[k]), vget_low_s8(xk));
            b[u] = vmull_high_s8(w[k], xk);
        } else {
            a[u] = vmlal_s8(a[u], vget_low_s8(w[k]), vget_low_s8(xk));
            b[u] = vmlal_high_s8(b[u], w[k], xk);
        }
    }
    *lo = vpaddq_s32(vpaddlq_s16(a[0]), vpaddlq_s16(b[0]));
    *hi = vpaddq_s32(vpaddlq_s16(a[1]), vpaddlq_s16(b[1]));
#endif
}

/* Q6_K tile16: sub-block j's u = q + 32 is a Q4_1-form low-nibble block with the top two
 * bits OR-ed in from two planes (slm_kernels.h; one shift and mask per chunk). Per half,
 * sc * (sum u x - 32 sum x) is the contract's exact integer (|.| < 2^25); the float chain is
 * slm_kq_portable's: bit-identical. */
static SLM_ALWAYS_INLINE void FN(t16_tile_q6k)(int T, int G, const uint8_t *tile, int g0, int lo, int hi,
                                               const slm_q8_acts *x, ptrdiff_t t0, float *y, ptrdiff_t ys) {
    const ptrdiff_t nb = x->cols / SLM_QK, cols = x->cols;
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m30 = vdupq_n_u8(0x30);
    float32x4_t acc[4][4], accm[4][4];  /* [group][token]; accm stays zero (no min term) */
    SLM_UNROLL for (int gi = 0; gi < G; gi++)
        SLM_UNROLL for (int t = 0; t < T; t++) acc[gi][t] = accm[gi][t] = vdupq_n_f32(0.0f);
    for (ptrdiff_t sb = 0; sb < nb / 8; sb++) {
        const uint8_t *blk = tile + sb * KQ_Q6K_TILE;
        for (int j = 0; j < 8; j++) {
            const ptrdiff_t b = 8 * sb + j;
            const uint8_t *q = blk + KQ_Q6K_T16_QS + KQ_Q6K_T16_SUB * j;
            int32_t hx[4][2];  /* per token: the activation sums of elements 0..15 and 16..31 */
            SLM_UNROLL for (int t = 0; t < T; t++) {
                const int8_t *xq = x->qs + (t0 + t) * cols + b * SLM_QK;
                hx[t][0] = 32 * vaddlvq_s8(vld1q_s8(xq));
                hx[t][1] = 32 * vaddlvq_s8(vld1q_s8(xq + 16));
            }
            SLM_UNROLL for (int gi = 0; gi < G; gi++) {
                const int g = g0 + gi;
                const float32x4_t dw = vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(blk + 8 * g)));
                const int16x8_t sc = vmovl_s8(vld1_s8((const int8_t *)blk + KQ_Q6K_T16_SC + KQ_Q6K_T16_SUB * j + 8 * g));
                const int32x4_t sclo = vmovl_s16(vget_low_s16(vuzp1q_s16(sc, sc)));
                const int32x4_t schi = vmovl_s16(vget_low_s16(vuzp2q_s16(sc, sc)));
                const uint32x4_t pa = vld1q_u32((const uint32_t *)(const void *)(q + 256 + 16 * g));
                const uint32x4_t pb = vld1q_u32((const uint32_t *)(const void *)(q + 320 + 16 * g));
                int8x16_t w[8];
                SLM_UNROLL for (int c = 0; c < 4; c++) {
                    const int32x4_t sh = vdupq_n_s32(c < 3 ? 4 - 2 * c : -2);  /* negative: right */
                    const uint8x16_t v = vld1q_u8(q + 64 * c + 16 * g);
                    const uint8x16_t ta = vreinterpretq_u8_u32(vshlq_u32(pa, sh)), tb = vreinterpretq_u8_u32(vshlq_u32(pb, sh));
                    w[c] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v, m4), vandq_u8(ta, m30)));
                    w[4 + c] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(v, 4), vandq_u8(tb, m30)));
                }
                SLM_UNROLL for (int t = 0; t < T; t++) {
                    int32x4_t dlo, dhi;
                    FN(t16_dot_q6)(w, x->qs + (t0 + t) * cols + b * SLM_QK, &dlo, &dhi);
                    int32x4_t sumi = vmulq_s32(vsubq_s32(dlo, vdupq_n_s32(hx[t][0])), sclo);
                    sumi = vmlaq_s32(sumi, vsubq_s32(dhi, vdupq_n_s32(hx[t][1])), schi);
                    const float32x4_t dd = vmulq_n_f32(dw, x->d[(t0 + t) * nb + b]);
                    acc[gi][t] = vfmaq_f32(acc[gi][t], dd, vcvtq_f32_s32(sumi));
                }
            }
        }
    }
    FN(t16_store)(SLM_T_Q6_K, T, G, g0, lo, hi, y, t0, ys, acc, accm);
}

/* G groups from g0 (G = 4: the whole tile) x T tokens from t0; stores rows [lo, hi) of the tile. */
static SLM_ALWAYS_INLINE void FN(t16_tile)(int type, int T, int G, const uint8_t *tile, int g0, int lo, int hi,
                                           const slm_q8_acts *x, ptrdiff_t t0, float *y, ptrdiff_t ys) {
    if (type == SLM_T_Q4_K || type == SLM_T_Q5_K) {
        FN(t16_tile_q45k)(type, T, G, tile, g0, lo, hi, x, t0, y, ys);
        return;
    }
    if (type == SLM_T_Q6_K) {
        FN(t16_tile_q6k)(T, G, tile, g0, lo, hi, x, t0, y, ys);
        return;
    }
    const ptrdiff_t nb = x->cols / SLM_QK;
    const ptrdiff_t tb_bytes = (ptrdiff_t)SLM_TILE * slm_block_bytes(type), qoff = slm_tile16_quants(type);
    float32x4_t acc[4][4], accm[4][4];  /* [group][token] */
    SLM_UNROLL for (int gi = 0; gi < G; gi++)
        SLM_UNROLL for (int t = 0; t < T; t++) acc[gi][t] = accm[gi][t] = vdupq_n_f32(0.0f);
    /* Q4_1's min-term chains need no quants: with several tokens they run in a sweep of
     * their own (the same fmas in the same order per (row, token)), which leaves the main
     * loop registers for the weights and T accumulators. The sweep runs after the main
     * loop, over a tile then in L1: run first, it touched one line per block, a strided
     * first touch of weights streamed from memory that the prefetcher does not follow
     * (on AVX2 it made a 2-token step's layer matmuls cost 3x; see x86_avx2.h). */
    const int split_m = !SLM_DOTPROD && slm_has_m(type) && T > 1;
    for (ptrdiff_t b = 0; b < nb; b++) {
        const uint8_t *blk = tile + b * tb_bytes;
        /* Plain NEON unrolls the groups so they share one set of activation DUPs
         * (FN(t16_xk)). On dotprod, SDOT (by element) reads the two loaded activation
         * vectors directly: unrolling the Q4/Q8 groups only raised register pressure
         * (clang 21, A76 Q4_1 decode: 241 -> 255 instructions per 1000 MACs), while the Q5
         * groups, rolled, kept their accumulators in memory (a load and a store each per
         * block). */
#if SLM_DOTPROD
        if (!slm_is_q5(type)) {
            for (int gi = 0; gi < G; gi++) FN(t16_group)(type, T, blk, qoff, g0 + gi, split_m, x, t0, b, acc[gi], accm[gi]);
            continue;
        }
#endif
        SLM_UNROLL for (int gi = 0; gi < G; gi++) FN(t16_group)(type, T, blk, qoff, g0 + gi, split_m, x, t0, b, acc[gi], accm[gi]);
    }
    if (split_m) {
        for (ptrdiff_t b = 0; b < nb; b++)
            SLM_UNROLL for (int gi = 0; gi < G; gi++) {
                const float32x4_t mw = vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(tile + b * tb_bytes + 32 + 8 * (g0 + gi))));
                SLM_UNROLL for (int t = 0; t < T; t++) accm[gi][t] = vfmaq_n_f32(accm[gi][t], mw, x->s[(t0 + t) * nb + b]);
            }
    }

    FN(t16_store)(type, T, G, g0, lo, hi, y, t0, ys, acc, accm);
}

#define SLM_TD_GROUP SLM_ROWS
#define SLM_TD_TMAX 4
/* Plain NEON's Q8_0 products cannot share int16 sums (up to 2^14 each), so its multi-token
 * tile pairs every half-vector product into int32 separately, while the one-token tile
 * SMULLs whole registers against DUPs shared by the 4 row groups: per 1000 MACs of a
 * 1536x576 matmul (cortex-a72, qemu count) 380 instructions one token at a time against
 * 461-476 in 2-8-token tiles. The Q8_0 matrices are the tied output and Q4_K_M's attn_v. */
#define SLM_TD_TOKENWISE(type) (!SLM_DOTPROD && (type) == SLM_T_Q8_0)
/* Plain NEON runs a whole tile's 4 groups in one sweep for Q4_1 up to 4 tokens and Q4_0
 * up to 3 (tile_driver.h): they then share the activation DUPs as a decode token's do, and
 * each weight line serves all 4 groups while in L1 (group by group, the first sweep used 16
 * of its 64 bytes). cortex-a72 instructions per 1000 MACs, group by group -> whole tile,
 * Q4_1 1536x576: 2 tokens 415 -> 336, 3 tokens 370 -> 343, 4 tokens 350 -> 331; Q4_0
 * 576x1536: 400 -> 341, 366 -> 344, 4 tokens 347 -> 363 (so 3); Q6_K 576x1536 2 tokens
 * 576 -> 548, 4 tokens 526 -> 468 (Q4_K within 2%: left group by group). Q5_0/Q5_1 rose
 * 4-7% and dotprod 1-33% (spills): they stay group by group. */
#if !SLM_DOTPROD
#define SLM_TD_WHOLE_TILE_MAX 4
#define SLM_TD_WHOLE_TILE_TOKENS(type) ((type) == SLM_T_Q4_1 || (type) == SLM_T_Q6_K ? 4 : (type) == SLM_T_Q4_0 ? 3 : 1)
#endif
/* Larger passes too run each tile's token tiles over all 4 groups where qemu counts say so
 * (instructions per 1000 MACs, 16 tokens, group by group -> whole tile): plain NEON Q6_K
 * 576x1536 527 -> 475 (8 tokens 528 -> 475), Q5_1 406 -> 385; dotprod Q6_K 326 -> 292,
 * Q4_K 246 -> 237, Q5_0 1536x576 235 -> 225 and 576x1536 230 -> 223. Not where they rose:
 * plain Q4_K (+1%), Q5_0 (+6%), Q4_0 (+2%); dotprod Q4_1 (+35%), Q4_0 (+18%), Q8_0 (+25%),
 * Q5_1 (+6%); nor plain Q4_1 (1536x576 345 -> 332, but its decode tile rose 373 -> 387
 * either way, and the default model's decode comes first).
 * Decode tiles apart (tile_driver.h), decode instructions per 1000 MACs inline -> apart:
 * plain Q6_K 657 -> 647, Q4_K 457 -> 446, Q5_0 538 -> 521, Q5_1 545 -> 535, Q4_0 341 -> 328
 * (Q4_1 373 -> 388: inline); dotprod Q6_K 521 -> 508 (the others rose 0.5-2%: inline). */
#if SLM_DOTPROD
#define SLM_TD_DECODE_APART(type) ((type) == SLM_T_Q6_K)
#define SLM_TD_WHOLE_TILE_ALL(type) ((type) == SLM_T_Q6_K || (type) == SLM_T_Q4_K || (type) == SLM_T_Q5_0)
#else
#define SLM_TD_DECODE_APART(type) ((type) != SLM_T_Q4_1)
#define SLM_TD_WHOLE_TILE_ALL(type) ((type) == SLM_T_Q6_K || (type) == SLM_T_Q5_1)
#endif
#define SLM_TD_KTILE 1
#include "tile_driver.h"
#undef SLM_TD_KTILE
#undef SLM_TD_DECODE_APART
#undef SLM_TD_TOKENWISE
#undef SLM_TD_GROUP
#undef SLM_TD_TMAX


#undef SLM_ROWS
