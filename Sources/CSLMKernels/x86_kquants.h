/* K-quant and 5-bit matmuls (slm_matmul_kq) for x86, included by kernels_x86.c inside the
 * AVX2 region (FN = avx2_, SLM_KQ_VNNI 0) and the AVX-512 VNNI region (FN = vnni_, 1).
 *
 * Tile: 8 rows x T tokens (T <= 32), lane i of a float vector = row r0 + i, one vector per
 * token, so every (row, token) keeps the contract's sequential fma chain over sub-blocks
 * (slm_kernels.h); the integer part of each sub-block is exact whatever the order. Per
 * sub-block the 8 rows' quants are unpacked once to 32 unsigned bytes in activation order
 * and reused for the T tokens. The offsets of Q5_0 (-16) and Q6_K (-32) are taken out of
 * the integer sum with the activation block sums, so every product is u8 x s8:
 * vpmaddubsw pairs stay far below int16 saturation (2 * 63 * 128). Rows past the range
 * repeat the last row and are not stored. */

#define KQ_ROWS 8
#define KQ_TOKENS 32

/* Sub-block j of the block at blk: 32 unsigned quants (before the Q5_0/Q6_K offset). */
static SLM_ALWAYS_INLINE __m256i FN(kq_quants)(int wt, const uint8_t *blk, int j) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    switch (wt) {
    case SLM_WTYPE_Q5_0:
    case SLM_WTYPE_Q5_1: {
        const int q5_1 = wt == SLM_WTYPE_Q5_1;
        __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(blk + (q5_1 ? KQ_Q5_1_QS : KQ_Q5_0_QS))));
        v = _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4)), m4);
        uint32_t qh;
        memcpy(&qh, blk + (q5_1 ? KQ_Q5_1_QH : KQ_Q5_0_QH), 4);
        /* byte e gets the qh byte holding bit e, then that bit alone becomes 0x10 */
        const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                              2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
        __m256i h = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), pick);
        h = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, bit), bit), _mm256_set1_epi8(0x10));
        return _mm256_or_si256(v, h);
    }
    case SLM_WTYPE_Q4_K:
    case SLM_WTYPE_Q5_K: {
        const int q5 = wt == SLM_WTYPE_Q5_K;
        __m256i v = _mm256_loadu_si256((const __m256i *)(blk + (q5 ? KQ_Q5_K_QS : KQ_Q4_K_QS) + 32 * (j / 2)));
        if (j & 1) v = _mm256_srli_epi16(v, 4);
        v = _mm256_and_si256(v, m4);
        if (q5) {
            const __m256i b = _mm256_set1_epi8((char)(1 << j));
            __m256i h = _mm256_loadu_si256((const __m256i *)(blk + KQ_Q5_K_QH));
            h = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, b), b), _mm256_set1_epi8(0x10));
            v = _mm256_or_si256(v, h);
        }
        return v;
    }
    default: { /* Q6_K */
        const int h = j / 4, g = j % 4;
        __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32 * (g & 1)));
        if (g >= 2) v = _mm256_srli_epi16(v, 4);
        v = _mm256_and_si256(v, m4);
        __m256i hb = _mm256_loadu_si256((const __m256i *)(blk + KQ_Q6_K_QH + 32 * h));
        hb = _mm256_and_si256(_mm256_srl_epi16(hb, _mm_cvtsi32_si128(2 * g)), _mm256_set1_epi8(3));
        return _mm256_or_si256(v, _mm256_slli_epi16(hb, 4));
    }
    }
}

/* Horizontal sums of 8 vectors of 8 int32 -> one vector, lane i = sum of p[i]. */
static SLM_ALWAYS_INLINE __m256i FN(kq_reduce8)(const __m256i p[KQ_ROWS]) {
    __m256i h0 = _mm256_hadd_epi32(p[0], p[1]), h1 = _mm256_hadd_epi32(p[2], p[3]);
    __m256i h2 = _mm256_hadd_epi32(p[4], p[5]), h3 = _mm256_hadd_epi32(p[6], p[7]);
    __m256i g0 = _mm256_hadd_epi32(h0, h1), g1 = _mm256_hadd_epi32(h2, h3);
    return _mm256_add_epi32(_mm256_permute2x128_si256(g0, g1, 0x20), _mm256_permute2x128_si256(g0, g1, 0x31));
}

/* The same sums split by 128-bit half: lo lane i = p[i]'s lanes 0..3, hi lane i = its 4..7
 * (Q6_K's two scales per sub-block, one per 16 elements). */
static SLM_ALWAYS_INLINE void FN(kq_reduce8_halves)(const __m256i p[KQ_ROWS], __m256i *lo, __m256i *hi) {
    __m256i h0 = _mm256_hadd_epi32(p[0], p[1]), h1 = _mm256_hadd_epi32(p[2], p[3]);
    __m256i h2 = _mm256_hadd_epi32(p[4], p[5]), h3 = _mm256_hadd_epi32(p[6], p[7]);
    __m256i g0 = _mm256_hadd_epi32(h0, h1), g1 = _mm256_hadd_epi32(h2, h3);
    *lo = _mm256_permute2x128_si256(g0, g1, 0x20);
    *hi = _mm256_permute2x128_si256(g0, g1, 0x31);
}

static SLM_ALWAYS_INLINE __m256i FN(kq_gather8)(const int32_t v[KQ_ROWS]) {
    return _mm256_loadu_si256((const __m256i *)v);
}

static SLM_ALWAYS_INLINE void FN(kq_tile)(int wt, int T, const uint8_t *w0, ptrdiff_t row_bytes, int nvalid,
                                          const slm_q8_acts *x, ptrdiff_t t0, float *y, ptrdiff_t ys) {
    const ptrdiff_t nsub = x->cols / SLM_QK, cols = x->cols;
    const int spb = kq_subs(wt), bb = kq_block_bytes(wt);
    const int k45 = wt == SLM_WTYPE_Q4_K || wt == SLM_WTYPE_Q5_K;
    /* Whether a K sub-block's scale multiplies the 8 rows' reduced sums (one vpmulld) rather
     * than each row's pairs (a broadcast per row and sub-block, in vpmaddwd). One thread,
     * 1024x1024 in cache, one token: AVX2 Q4_K 23.1 -> 27.2 GMAC/s; Q5_K lost 13% that way
     * (14.9 -> 13.0) and keeps the broadcasts; VNNI's vpdpbusd has no vpmaddwd to carry one. */
    const int late_sc = wt == SLM_WTYPE_Q4_K || (k45 && SLM_KQ_VNNI);
    const uint8_t *rp[KQ_ROWS];
    for (int i = 0; i < KQ_ROWS; i++) rp[i] = w0 + (i < nvalid ? i : nvalid - 1) * row_bytes;
    __m256 acc[KQ_TOKENS], accm[KQ_TOKENS];
    for (int t = 0; t < T; t++) acc[t] = accm[t] = _mm256_setzero_ps();
    for (ptrdiff_t blk = 0; blk < nsub / spb; blk++) {
        /* One prefetch stream for a later tile instead of 8 row streams (as x86_avx2.h). */
        {
            const uint8_t *pf = w0 + SLM_PF_TILES * KQ_ROWS * row_bytes + blk * bb * KQ_ROWS;
            for (int k = 0; k < bb * KQ_ROWS; k += 64) _mm_prefetch((const char *)pf + k, _MM_HINT_T1);
        }
        /* The 8 rows' per-block scalars: d (and m / dmin) as f16 words, K scales as bytes. */
        uint16_t dh[KQ_ROWS], mh[KQ_ROWS];
        uint8_t scm[KQ_ROWS][16];  /* Q4_K/Q5_K: sc[0..8) then mn[0..8); Q6_K: the 16 int8 scales */
        for (int i = 0; i < KQ_ROWS; i++) {
            const uint8_t *b = rp[i] + blk * bb;
            dh[i] = slm_load_u16(b + (wt == SLM_WTYPE_Q6_K ? KQ_Q6_K_D : 0));
            mh[i] = wt == SLM_WTYPE_Q5_0 || wt == SLM_WTYPE_Q6_K ? 0 : slm_load_u16(b + 2);
            if (k45) {
                uint32_t a, bw, c;
                memcpy(&a, b + KQ_K_SCALES, 4);
                memcpy(&bw, b + KQ_K_SCALES + 4, 4);
                memcpy(&c, b + KQ_K_SCALES + 8, 4);
                /* the bytewise kq_scale_min of sub-blocks 0..3 and 4..7 at once */
                const uint32_t w4[4] = {a & 0x3f3f3f3fu, (c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u),
                                        bw & 0x3f3f3f3fu, ((c >> 4) & 0x0f0f0f0fu) | ((bw >> 2) & 0x30303030u)};
                memcpy(scm[i], w4, 16);
            } else if (wt == SLM_WTYPE_Q6_K) {
                memcpy(scm[i], b + KQ_Q6_K_SC, 16);
            }
        }
        const __m256 vd = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dh));
        const __m256 vm = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)mh));
        for (int j = 0; j < spb; j++) {
            const ptrdiff_t k = blk * spb + j;
            __m256i wq[KQ_ROWS], s16[KQ_ROWS];
            int32_t a0[KQ_ROWS], a1[KQ_ROWS];  /* per row: sc / mn (Q4_K, Q5_K), sc_lo / sc_hi (Q6_K) */
            for (int i = 0; i < KQ_ROWS; i++) {
                wq[i] = FN(kq_quants)(wt, rp[i] + blk * bb, j);
                if (k45) {
                    a0[i] = scm[i][j];
                    a1[i] = scm[i][8 + j];
                } else if (wt == SLM_WTYPE_Q6_K) {
                    /* Its two scales multiply the reduced half sums below (AVX2 one token
                     * 12.0 -> 12.9 GMAC/s, VNNI 11.9 -> 17.6), with the -32 offsets folded in. */
                    a0[i] = (int8_t)scm[i][2 * j];
                    a1[i] = (int8_t)scm[i][2 * j + 1];
                }
                s16[i] = k45 && !late_sc ? _mm256_set1_epi16((short)a0[i]) : _mm256_set1_epi16(1);
            }
            const __m256i v0 = k45 || wt == SLM_WTYPE_Q6_K ? FN(kq_gather8)(a0) : _mm256_setzero_si256();
            const __m256i v1 = k45 || wt == SLM_WTYPE_Q6_K ? FN(kq_gather8)(a1) : _mm256_setzero_si256();
            for (int t = 0; t < T; t++) {
                const ptrdiff_t xk = (t0 + t) * nsub + k;
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(x->qs + (t0 + t) * cols + k * SLM_QK));
                __m256i p[KQ_ROWS];
                for (int i = 0; i < KQ_ROWS; i++) {
#if SLM_KQ_VNNI
                    if (wt != SLM_WTYPE_Q6_K) { p[i] = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wq[i], xv); continue; }
#endif
                    p[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(wq[i], xv), s16[i]);
                }
                __m256i s;
                if (wt == SLM_WTYPE_Q6_K) {
                    /* sc_lo * (sum q x[0..16) - 32 * sum x[0..16)) + sc_hi * (the same over 16..32) */
                    __m256i lo, hi;
                    FN(kq_reduce8_halves)(p, &lo, &hi);
                    const __m256i hs = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), xv), _mm256_set1_epi16(1));
                    __m128i q = _mm_hadd_epi32(_mm256_castsi256_si128(hs), _mm256_extracti128_si256(hs, 1));
                    q = _mm_hadd_epi32(q, q);
                    lo = _mm256_sub_epi32(lo, _mm256_set1_epi32(32 * _mm_cvtsi128_si32(q)));
                    hi = _mm256_sub_epi32(hi, _mm256_set1_epi32(32 * _mm_extract_epi32(q, 1)));
                    s = _mm256_add_epi32(_mm256_mullo_epi32(lo, v0), _mm256_mullo_epi32(hi, v1));
                } else {
                    s = FN(kq_reduce8)(p);
                    if (late_sc) s = _mm256_mullo_epi32(s, v0);
                }
                const int32_t isum = x->isum[xk];
                if (wt == SLM_WTYPE_Q5_0) s = _mm256_sub_epi32(s, _mm256_set1_epi32(16 * isum));
                const __m256 vdx = _mm256_set1_ps(x->d[xk]);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(vd, vdx), _mm256_cvtepi32_ps(s), acc[t]);
                if (k45)
                    accm[t] = _mm256_fmadd_ps(_mm256_mul_ps(vm, vdx),
                                              _mm256_cvtepi32_ps(_mm256_mullo_epi32(v1, _mm256_set1_epi32(isum))), accm[t]);
                else if (wt == SLM_WTYPE_Q5_1)
                    accm[t] = _mm256_fmadd_ps(vm, _mm256_set1_ps(x->s[xk]), accm[t]);
            }
        }
    }
    for (int t = 0; t < T; t++) {
        const __m256 r = k45 ? _mm256_sub_ps(acc[t], accm[t]) : wt == SLM_WTYPE_Q5_1 ? _mm256_add_ps(acc[t], accm[t]) : acc[t];
        float *yt = y + (t0 + t) * ys;
        if (nvalid == KQ_ROWS) {
            _mm256_storeu_ps(yt, r);
        } else {
            float tmp[KQ_ROWS];
            _mm256_storeu_ps(tmp, r);
            for (int i = 0; i < nvalid; i++) yt[i] = tmp[i];
        }
    }
}

#include "kq_driver.h"

#undef KQ_ROWS
#undef KQ_TOKENS
