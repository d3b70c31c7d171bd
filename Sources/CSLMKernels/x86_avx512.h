/* AVX-512 VNNI quantized matmul, included by kernels_x86.c inside its AVX-512 target
 * region. Same scheme as x86_avx2.h on 512-bit vectors, 16 rows per tile:
 *
 *   - vector j (0..3) holds, in its 128-bit lane k, the 16 quant bytes of row 4k+j, so one
 *     vpdpbusd against the broadcast 16 activation bytes does 4 rows at once, and a 4-step
 *     unpack/add transpose of the 4 vectors yields lane 4k+j = sumi of row 4k+j, in order;
 *   - lane i of the float accumulators is row r0+i, one accumulator per token (up to 8): each
 *     (row, token) keeps its own sequential fma chain (the numerics contract);
 *   - vpdpbusd multiplies u8 by s8: Q4 nibbles are already u8 (Q4_0's -8 is taken out with
 *     8 * isum), Q8_0 weights are biased by +128 (xor 0x80) and 128 * isum is taken out.
 */

#define SLM_ROWS16 16
/* No software prefetch in the tile16 kernel: the layout is one linear stream per thread,
 * which the hardware prefetchers follow on their own (a T1 prefetch 2 tiles ahead measured
 * tg128 1t 8-27% slower, 7/7 rounds; commit 3c4d6ff). */

typedef struct { __m512i lo[4], hi[4]; } vnni_quants;

static SLM_ALWAYS_INLINE __m512i vnni_gather4x16(const uint8_t *const rp[SLM_ROWS16], int j, ptrdiff_t off) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rp[j] + off)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[4 + j] + off)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[8 + j] + off)), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[12 + j] + off)), 3);
}

static SLM_ALWAYS_INLINE void vnni_load_quants(int type, const uint8_t *const rp[SLM_ROWS16], ptrdiff_t off,
                                               vnni_quants *q) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), bias = _mm512_set1_epi8((char)0x80);
    for (int j = 0; j < 4; j++) {
        if (type == SLM_T_Q8_0) {
            q->lo[j] = _mm512_xor_si512(vnni_gather4x16(rp, j, off), bias);
            q->hi[j] = _mm512_xor_si512(vnni_gather4x16(rp, j, off + 16), bias);
        } else {
            const __m512i v = vnni_gather4x16(rp, j, off);
            q->lo[j] = _mm512_and_si512(v, m4);
            q->hi[j] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        }
    }
}

/* Lane i = the block's integer dot for row i (before the isum correction). */
static SLM_ALWAYS_INLINE __m512i vnni_sumi16(const vnni_quants *q, __m512i xlo, __m512i xhi) {
    __m512i p[4];
    for (int j = 0; j < 4; j++)
        p[j] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q->lo[j], xlo), q->hi[j], xhi);
    const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(p[0], p[1]), _mm512_unpackhi_epi32(p[0], p[1]));
    const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(p[2], p[3]), _mm512_unpackhi_epi32(p[2], p[3]));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
}

static SLM_ALWAYS_INLINE void vnni_tile(int type, int T, const uint8_t *w0, ptrdiff_t row_bytes, int nvalid,
                                        const slm_q8_acts *x, ptrdiff_t t0, float *y, ptrdiff_t ys) {
    const ptrdiff_t nb = x->cols / SLM_QK, cols = x->cols;
    const int bb = slm_block_bytes(type), qo = slm_quant_offset(type);
    const uint8_t *rp[SLM_ROWS16];
    int32_t off[SLM_ROWS16];
    for (int i = 0; i < SLM_ROWS16; i++) {  /* rows past the range repeat the last row, never stored */
        const int ri = i < nvalid ? i : nvalid - 1;
        off[i] = (int32_t)(ri * row_bytes);
        rp[i] = w0 + ri * row_bytes + qo;
    }
    const __m512i voff = _mm512_loadu_si512(off);
    const int isum_shift = type == SLM_T_Q4_0 ? 3 : 7;  /* 8 * isum or 128 * isum */
    __m512 acc[8], accm[8];
    SLM_UNROLL for (int t = 0; t < T; t++) acc[t] = accm[t] = _mm512_setzero_ps();

    for (ptrdiff_t b = 0; b < nb; b++) {
        /* d (and Q4_1's m) of the 16 rows from one gather of each block's first 4 bytes. */
        const __m512i g = _mm512_i32gather_epi32(voff, (const void *)(w0 + b * bb), 1);
        const __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
        const __m512 mw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
        vnni_quants q;
        vnni_load_quants(type, rp, b * bb, &q);
        /* See x86_avx2.h: one prefetch stream for a later tile instead of 16 row streams. */
        {
            const uint8_t *pf = w0 + SLM_PF_TILES * SLM_ROWS16 * row_bytes + b * bb * SLM_ROWS16;
            for (int k = 0; k < bb * SLM_ROWS16; k += 64) _mm_prefetch((const char *)pf + k, _MM_HINT_T1);
        }
        SLM_UNROLL for (int t = 0; t < T; t++) {
            const ptrdiff_t tb = (t0 + t) * nb + b;
            const int8_t *xq = x->qs + (t0 + t) * cols + b * SLM_QK;
            const __m512i xlo = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)xq));
            const __m512i xhi = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(xq + 16)));
            __m512i sumi = vnni_sumi16(&q, xlo, xhi);
            if (type != SLM_T_Q4_1) sumi = _mm512_sub_epi32(sumi, _mm512_set1_epi32(x->isum[tb] << isum_shift));
            const __m512 dd = _mm512_mul_ps(dw, _mm512_set1_ps(x->d[tb]));
            acc[t] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(sumi), acc[t]);
            if (type == SLM_T_Q4_1) accm[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(x->s[tb]), accm[t]);
        }
    }
    const __mmask16 keep = (__mmask16)((1u << nvalid) - 1u);
    SLM_UNROLL for (int t = 0; t < T; t++) {
        const __m512 r = type == SLM_T_Q4_1 ? _mm512_add_ps(acc[t], accm[t]) : acc[t];
        _mm512_mask_storeu_ps(y + (t0 + t) * ys, keep, r);
    }
}

/* vnni_matmul over the row layout and the slm_impl entries: tile_driver.h, below. The
 * row driver runs 8 tokens per tile: 16 accumulators + 8 quant vectors still fit the 32
 * registers, and halving the unpack work per token measured ~1.35x over 4 tokens. */

/* ---- tile16 layout (slm_kernels.h): the same tile, read with plain loads ----
 * Vector c lane i holds quant dword c of row i, so vpdpbusd against activation bytes
 * 4c..4c+3 broadcast to every lane (an embedded-broadcast operand) accumulates row i's
 * partial dot in lane i directly: no gather, no inserts, no transpose. The integer sum
 * is exact whatever the order, and the float chain per (row, token) is vnni_tile's. */
static SLM_ALWAYS_INLINE __m512i vnni_bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* The tile driver's kernel (tile_driver.h): one group of 16 rows, so G = 1 and g0 = 0. */
static SLM_ALWAYS_INLINE void vnni_t16_tile(int type, int T, int G, const uint8_t *tile, int g0, int lo, int hi,
                                            const slm_q8_acts *x, ptrdiff_t t0, float *y, ptrdiff_t ys) {
    (void)G;
    (void)g0;
    const __mmask16 keep = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
    const ptrdiff_t nb = x->cols / SLM_QK, cols = x->cols;
    const ptrdiff_t tb_bytes = (ptrdiff_t)SLM_TILE * slm_block_bytes(type);  /* one block of the tile */
    const ptrdiff_t qoff = slm_tile16_quants(type);
    /* Q4_0: 8 * isum, Q5_0: 16 * isum, Q8_0: 128 * isum (its weights biased by +128) */
    const int isum_shift = type == SLM_T_Q4_0 ? 3 : type == SLM_T_Q5_0 ? 4 : 7;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m16 = _mm512_set1_epi8(0x10), bias = _mm512_set1_epi8((char)0x80);
    __m512 acc[8], accm[8];
    SLM_UNROLL for (int t = 0; t < T; t++) acc[t] = accm[t] = _mm512_setzero_ps();

    for (ptrdiff_t b = 0; b < nb; b++) {
        const uint8_t *blk = tile + b * tb_bytes;
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk));
        const __m512 mw = slm_has_m(type) ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + 32)))
                                          : _mm512_setzero_ps();
        /* Q4: w[c] = low nibbles (elements 4c..), w[4 + c] = high nibbles (16 + 4c..);
         * Q8: w[c] = bytes 4c.. biased to u8. Either way w[k] pairs with x bytes 4k..4k+3. */
        __m512i w[8];
        if (type == SLM_T_Q8_0) {
            SLM_UNROLL for (int c = 0; c < 8; c++) w[c] = _mm512_xor_si512(_mm512_loadu_si512(blk + qoff + 64 * c), bias);
        } else if (slm_is_q5(type)) {
            /* The 16 rows' qh words (tile16 form): shifted by 4 - c (left) and c (right), the
             * high bits of dword c's low and high nibbles land on bit 4 of each byte. */
            const __m512i hb = _mm512_loadu_si512(blk + slm_tile16_qh(type));
            SLM_UNROLL for (int c = 0; c < 4; c++) {
                const __m512i v = _mm512_loadu_si512(blk + qoff + 64 * c);
                w[c] = _mm512_ternarylogic_epi32(_mm512_and_si512(v, m4), _mm512_slli_epi32(hb, 4 - c), m16, 0xf8);
                w[4 + c] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4),
                                                     _mm512_srli_epi32(hb, c), m16, 0xf8);
            }
        } else {
            SLM_UNROLL for (int c = 0; c < 4; c++) {
                const __m512i v = _mm512_loadu_si512(blk + qoff + 64 * c);
                w[c] = _mm512_and_si512(v, m4);
                w[4 + c] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
        }
        SLM_UNROLL for (int t = 0; t < T; t++) {
            const ptrdiff_t tb = (t0 + t) * nb + b;
            const int8_t *xq = x->qs + (t0 + t) * cols + b * SLM_QK;
            /* Two independent chains of 4 keep the dpbusd latency off the critical path at T = 1. */
            __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[0], vnni_bcast4(xq));
            __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[1], vnni_bcast4(xq + 4));
            SLM_UNROLL for (int k = 2; k < 8; k += 2) {
                s0 = _mm512_dpbusd_epi32(s0, w[k], vnni_bcast4(xq + 4 * k));
                s1 = _mm512_dpbusd_epi32(s1, w[k + 1], vnni_bcast4(xq + 4 * k + 4));
            }
            __m512i sumi = _mm512_add_epi32(s0, s1);
            if (!slm_has_m(type)) sumi = _mm512_sub_epi32(sumi, _mm512_set1_epi32(x->isum[tb] * (1 << isum_shift)));
            const __m512 dd = _mm512_mul_ps(dw, _mm512_set1_ps(x->d[tb]));
            acc[t] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(sumi), acc[t]);
            if (slm_has_m(type)) accm[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(x->s[tb]), accm[t]);
        }
    }
    SLM_UNROLL for (int t = 0; t < T; t++) {
        const __m512 r = slm_has_m(type) ? _mm512_add_ps(acc[t], accm[t]) : acc[t];
        _mm512_mask_storeu_ps(y + (t0 + t) * ys, keep, r);
    }
}

/* Whole tiles overlapping [r_begin, r_end) are computed in full and stored through a lane
 * mask (a range that starts or ends mid-tile recomputes the other rows, never stores them);
 * rows past the last whole tile are in row layout and go through vnni_matmul. */
#define FN(name) vnni_##name
#define SLM_TD_GROUP SLM_ROWS16
#define SLM_TD_TMAX 8
/* Next-tile prefetch (tile_driver.h), one thread, Q4_1 from memory: 16 tokens 1536x576
 * 121-129 -> 142 GMAC/s, 10 tokens 110-113 -> 131-133; 8 tokens (one token tile, the
 * whole prefetch in one burst before it) lost 11%, so it waits for a second token tile. */
#define SLM_TD_PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
#include "tile_driver.h"
#undef SLM_TD_PREFETCH
#undef SLM_TD_GROUP
#undef SLM_TD_TMAX
#undef FN

#undef SLM_ROWS16
