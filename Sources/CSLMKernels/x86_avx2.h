/* AVX2 quantized matmul, included by kernels_x86.c inside its AVX2 target region.
 * (x86_avx512.h is the same scheme on 512-bit vectors with VNNI.)
 *
 * Tile: 8 rows x T tokens (T = 4, 2 or 1). Lane i of a float vector is row r0+i, one
 * vector per token, so each (row, token) keeps its own sequential fma chain over blocks
 * (the numerics contract). Per block, the 8 rows' quants are loaded and unpacked once
 * and reused for all T tokens: prefill is matrix-matrix work, decode (T = 1) streams.
 * Rows past the end of the range repeat the last row and are not stored, so odd row
 * counts run at full vector width without a scalar tail. */

#define SLM_ROWS 8

/* One row's block quants as 32 bytes in activation order: Q4 -> [low nibbles | high
 * nibbles] (u8 0..15, matching x[0..15] | x[16..31]); Q8 -> the int8 values. */
static SLM_ALWAYS_INLINE __m256i FN(load_quants)(int type, const uint8_t *p) {
    if (type == SLM_T_Q8_0) {
        return _mm256_loadu_si256((const __m256i *)p);
    }
    /* Shift only the upper copy by 4, then mask both halves to nibbles. */
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    v = _mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4));
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

/* 8 int32 partial sums of one row's block dot with x. Q8_0 goes through int16 (x
 * pre-widened in xlo16/xhi16): vpmaddubsw would need |w| or |x| <= 127 to avoid int16
 * saturation, and this must stay exact for any int8 pair. */
static SLM_ALWAYS_INLINE __m256i FN(dot)(int type, __m256i w, __m256i x, __m256i xlo16, __m256i xhi16) {
    if (type == SLM_T_Q8_0) {
        __m256i lo = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(w)), xlo16);
        __m256i hi = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1)), xhi16);
        return _mm256_add_epi32(lo, hi);
    }
    /* u8 nibble x s8 pairs stay far below int16 saturation (2 * 15 * 128). */
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}

/* Horizontal sums of 8 vectors of 8 int32 -> one vector, lane i = sum of p[i]. */
static SLM_ALWAYS_INLINE __m256i FN(reduce8)(const __m256i p[SLM_ROWS]) {
    __m256i h0 = _mm256_hadd_epi32(p[0], p[1]), h1 = _mm256_hadd_epi32(p[2], p[3]);
    __m256i h2 = _mm256_hadd_epi32(p[4], p[5]), h3 = _mm256_hadd_epi32(p[6], p[7]);
    __m256i g0 = _mm256_hadd_epi32(h0, h1), g1 = _mm256_hadd_epi32(h2, h3); /* per 128-bit half */
    return _mm256_add_epi32(_mm256_permute2x128_si256(g0, g1, 0x20), _mm256_permute2x128_si256(g0, g1, 0x31));
}

static SLM_ALWAYS_INLINE void FN(tile)(int type, int T, const uint8_t *w0, ptrdiff_t row_bytes, int nvalid,
                                       const slm_q8_acts *x, ptrdiff_t t0, float *y, ptrdiff_t ys) {
    const ptrdiff_t nb = x->cols / SLM_QK, cols = x->cols;
    const int bb = slm_block_bytes(type), qo = slm_quant_offset(type);
    const uint8_t *rp[SLM_ROWS];
    int32_t off[SLM_ROWS];
    for (int i = 0; i < SLM_ROWS; i++) {
        int ri = i < nvalid ? i : nvalid - 1;
        off[i] = (int32_t)(ri * row_bytes);
        rp[i] = w0 + ri * row_bytes + qo;
    }
    const __m256i voff = _mm256_loadu_si256((const __m256i *)off);
    /* Collect the low (d) and high (m) 16-bit halves of the gathered scale words. */
    const __m256i split = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                           0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    __m256 acc[4], accm[4];
    for (int t = 0; t < T; t++) acc[t] = accm[t] = _mm256_setzero_ps();

    for (ptrdiff_t b = 0; b < nb; b++) {
        /* d (and Q4_1's m) of the 8 rows: one gather of the block's first 4 bytes. */
        __m256i g = _mm256_i32gather_epi32((const int *)(w0 + b * bb), voff, 1);
        g = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(g, split), 0xd8);
        const __m256 dw = _mm256_cvtph_ps(_mm256_castsi256_si128(g));
        const __m256 mw = _mm256_cvtph_ps(_mm256_extracti128_si256(g, 1));
        __m256i wq[SLM_ROWS];
        for (int i = 0; i < SLM_ROWS; i++) wq[i] = FN(load_quants)(type, rp[i] + b * bb);
        /* Eight interleaved row streams defeat the hardware prefetcher on matrices larger
         * than the caches; fetch a later tile (contiguous rows) as a single stream instead,
         * a slice of it per block. Prefetches never fault, so overrunning the end is fine. */
        {
            const uint8_t *pf = w0 + SLM_PF_TILES * SLM_ROWS * row_bytes + b * bb * SLM_ROWS;
            for (int k = 0; k < bb * SLM_ROWS; k += 64) _mm_prefetch((const char *)pf + k, _MM_HINT_T1);
        }

        for (int t = 0; t < T; t++) {
            const ptrdiff_t tb = (t0 + t) * nb + b;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x->qs + (t0 + t) * cols + b * SLM_QK));
            __m256i xlo16 = xv, xhi16 = xv;
            if (type == SLM_T_Q8_0) {
                xlo16 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(xv));
                xhi16 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(xv, 1));
            }
            __m256i p[SLM_ROWS];
            for (int i = 0; i < SLM_ROWS; i++) p[i] = FN(dot)(type, wq[i], xv, xlo16, xhi16);
            __m256i sumi = FN(reduce8)(p);
            /* Q4_0 nibbles are q+8: take 8 * isum out, exactly. */
            if (type == SLM_T_Q4_0)
                sumi = _mm256_sub_epi32(sumi, _mm256_set1_epi32(8 * x->isum[tb]));
            const __m256 dd = _mm256_mul_ps(dw, _mm256_set1_ps(x->d[tb]));
            acc[t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi), acc[t]);
            if (type == SLM_T_Q4_1) accm[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(x->s[tb]), accm[t]);
        }
    }
    for (int t = 0; t < T; t++) {
        const __m256 r = type == SLM_T_Q4_1 ? _mm256_add_ps(acc[t], accm[t]) : acc[t];
        float *dst = y + (t0 + t) * ys;
        if (nvalid == SLM_ROWS) {
            _mm256_storeu_ps(dst, r);
        } else {
            float tmp[SLM_ROWS];
            _mm256_storeu_ps(tmp, r);
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
