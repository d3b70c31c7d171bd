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
    SLM_UNROLL for (int t = 0; t < T; t++) acc[t] = accm[t] = _mm256_setzero_ps();

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

        SLM_UNROLL for (int t = 0; t < T; t++) {
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
    SLM_UNROLL for (int t = 0; t < T; t++) {
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

/* FN(matmul) over the row layout and the slm_impl entries: tile_driver.h, below. */

/* ---- tile16 layout (slm_kernels.h): plain loads, no gathers ----
 * The 32 bytes at quants + 64c + 32g of a tile's block are quant dword c of rows 8g..8g+7,
 * one row per 32-bit lane. vpmaddubsw against activation bytes 4k..4k+3 broadcast to every
 * lane multiplies each row's 4 weights by the same 4 activations and adds them in pairs
 * (int16); 8 such products summed in int16 and one vpmaddwd by 1 leave lane i = row i's
 * block dot, with no transpose or horizontal adds. Q5_0/Q5_1 are Q4_0/Q4_1 with a fifth bit
 * OR-ed into each nibble from the qh words (Q5_0's -16 taken out through isum); Q8_0 uses
 * the sign trick (FN(t16_tile_q8)). The integer sums are exact (see each kernel) and the
 * float chain per (row, token) is FN(tile)'s (FN(kq_tile)'s for Q5), so results are
 * bit-identical to it. */

static SLM_ALWAYS_INLINE __m256i FN(bcast4)(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* Sum over k of maddubs(w[k], x bytes 4k..4k+3), w[k] nibbles (0..15), in int16: at most
 * 8 * 2 * 15 * 128 = 30720, exact. Q8_0's nibble-split fallback only (FN(t16_q8_exact)). */
static SLM_ALWAYS_INLINE __m256i FN(t16_dot16)(const __m256i w[8], const int8_t *xq) {
    __m256i s = _mm256_maddubs_epi16(w[0], FN(bcast4)(xq));
    SLM_UNROLL for (int k = 1; k < 8; k++) s = _mm256_add_epi16(s, _mm256_maddubs_epi16(w[k], FN(bcast4)(xq + 4 * k)));
    return s;
}

/* Zeroes the [group][token] float chains of a tile16 tile. */
static SLM_ALWAYS_INLINE void FN(t16_zero)(int T, int G, __m256 acc[2][4], __m256 accm[2][4]) {
    SLM_UNROLL for (int gi = 0; gi < G; gi++)
        SLM_UNROLL for (int t = 0; t < T; t++) acc[gi][t] = accm[gi][t] = _mm256_setzero_ps();
}

/* The end of a tile16 tile: Q4_1/Q5_1's min-term sweep (split_m) and the stores of rows
 * [lo, hi).
 * Q4_1's min-term chains need no quants: with several tokens, run them in a sweep of
 * their own (the same fmas in the same order per (row, token)) so that the main loop
 * keeps its accumulators in the 16 registers without spilling.
 * The sweep runs after the main loop, when the tile is in L1. Run first, it touched
 * one cache line per block (a 320-byte stride), a strided first touch of weights
 * streamed from memory that the hardware prefetcher does not follow: every line was a
 * full memory latency. Measured (30 layers' Q4_1 matmuls from memory, one thread,
 * loaded machine): 2 tokens 14.3-16.8 ms -> 4.9-5.1 ms, 4 tokens 19-21 -> 12 ms,
 * 1 token (no sweep) 3.2 ms. Batched decode of 2-4 clients is exactly that shape. */
static SLM_ALWAYS_INLINE void FN(t16_finish)(int type, int T, int G, const uint8_t *tile, int g0, int lo, int hi,
                                             const slm_q8_acts *x, ptrdiff_t t0, float *y, ptrdiff_t ys,
                                             __m256 acc[2][4], __m256 accm[2][4], int split_m) {
    const ptrdiff_t nb = x->cols / SLM_QK, tb_bytes = (ptrdiff_t)SLM_TILE * slm_block_bytes(type);
    if (split_m) {
        for (ptrdiff_t b = 0; b < nb; b++)
            SLM_UNROLL for (int gi = 0; gi < G; gi++) {
                const __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(tile + b * tb_bytes + 32 + 16 * (g0 + gi))));
                SLM_UNROLL for (int t = 0; t < T; t++)
                    accm[gi][t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(x->s[(t0 + t) * nb + b]), accm[gi][t]);
            }
    }

    SLM_UNROLL for (int gi = 0; gi < G; gi++) {
        const int r = SLM_ROWS * (g0 + gi);
        __m256i keep = _mm256_set1_epi32(-1);
        if (r < lo || r + SLM_ROWS > hi) {  /* rows of the group outside [lo, hi): never stored */
            const __m256i i = _mm256_add_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            keep = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(lo), i),
                                       _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), i));
        }
        SLM_UNROLL for (int t = 0; t < T; t++) {
            const int sign = slm_min_sign(type);
            const __m256 v = sign > 0 ? _mm256_add_ps(acc[gi][t], accm[gi][t])
                             : sign < 0 ? _mm256_sub_ps(acc[gi][t], accm[gi][t]) : acc[gi][t];
            if (r >= lo && r + SLM_ROWS <= hi) _mm256_storeu_ps(y + (t0 + t) * ys + r, v);
            else _mm256_maskstore_ps(y + (t0 + t) * ys + r, keep, v);
        }
    }
}

/* One chunk c (quant dwords c of 8 rows at qv: low nibbles = elements 4c.., high = 16 + 4c..;
 * Q5 ORs in the fifth bits from the qh words hb) against T tokens from xb: each token's int16
 * sum s[t] gains two vpmaddubsw. Q5 sums widen to int32 after chunk 1 (s32[t], by vpmaddwd
 * with `widen`: ones, or a K sub-block's scale pairs); Q4 keep all four chunks in int16.
 * `fresh`: the chunk starts s[t] (else s[t] holds a sum to add to). Q4 only may pass a c that
 * is not a constant (the rolled loop over chunks 1-3 after a fresh chunk 0, fresh = 0). */
static SLM_ALWAYS_INLINE void FN(t16_chunk)(const uint8_t *qv, __m256i hb, int q5, int c, int fresh, int T,
                                            const int8_t *const xs[4], __m256i widen, __m256i s[4],
                                            __m256i s32[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m16 = _mm256_set1_epi8(0x10);
    const __m256i v = _mm256_loadu_si256((const __m256i *)qv);
    __m256i wl = _mm256_and_si256(v, m4), wh = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    if (q5) {
        /* bit 4 of each byte from the tile16 qh words (slm_q5_qh_to_tile16) */
        wl = _mm256_or_si256(wl, _mm256_and_si256(_mm256_slli_epi32(hb, 4 - c), m16));
        wh = _mm256_or_si256(wh, _mm256_and_si256(_mm256_srli_epi32(hb, c), m16));
    }
    SLM_UNROLL for (int t = 0; t < T; t++) {
        const int8_t *xt = xs[t];
        const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(wl, FN(bcast4)(xt + 4 * c)),
                                           _mm256_maddubs_epi16(wh, FN(bcast4)(xt + 16 + 4 * c)));
        s[t] = fresh ? p : _mm256_add_epi16(s[t], p);
        if (q5 && c == 1) s32[t] = _mm256_madd_epi16(s[t], widen);
    }
}

/* A block's four chunks for groups g0..g0+G-1 (group g's quants at q + 32g + 64c), each with
 * its `widen[gi]`: FN(t16_chunk)'s sums s / s32. Several Q4 tokens keep the chunk loop
 * rolled: unrolled, the compiler hoisted all four chunks' loads and unpacking to the top of
 * the block and spilled the accumulators (G * T int16 sums and float chains) to the stack.
 * One thread, unrolled -> rolled: Q4_1 1536x576 in cache 2 tokens +12%, 4 tokens (both
 * groups) 93 -> 105 GMAC/s; from memory 576x1536 2 tokens 72 -> 82, 4 tokens 78 -> 85, 16
 * tokens +4%; Q4_K 8 x 5632x2048 from memory 2 tokens 69 -> 78. One token keeps the unrolled
 * form (no spills there), and Q5 too (its shifts depend on c). */
static SLM_ALWAYS_INLINE void FN(t16_block)(const uint8_t *q, const __m256i hb[2], int q5, int T, int G, int g0,
                                            const int8_t *const xs[4], const __m256i widen[2],
                                            __m256i s[2][4], __m256i s32[2][4]) {
    if (!q5 && T > 1) {
        /* Chunk 0 starts the sums (fresh) and the rolled loop adds chunks 1-3: 7 vpaddw per
         * (group, token) where zeroed sums took 8. Its vector ops bound this loop more than
         * its loads do: with the activations held in registers instead of broadcast from
         * L1 (a wrong result, for timing) it ran only 7-11% faster, and with each dword
         * pre-expanded to 32 bytes for vpmaddubsw's memory operand, slower. One thread, 16
         * tokens of Q4_1: 64x576 (in L1) 104.6 -> 105.3-107.3 GMAC/s, 1536x576 and 576x1536
         * +2-3%; both groups of a 4-token decode tile (1536x576) 105-106 -> 110-111; a
         * 16-token prefill of the model's shapes (Tests/CKernels/arm_bench.c) 1.5-2% less
         * time. */
        SLM_UNROLL for (int gi = 0; gi < G; gi++)
            FN(t16_chunk)(q + 32 * (g0 + gi), hb[gi], 0, 0, 1, T, xs, widen[gi], s[gi], s32[gi]);
        SLM_ROLLED for (int c = 1; c < 4; c++)
            SLM_UNROLL for (int gi = 0; gi < G; gi++)
                FN(t16_chunk)(q + 32 * (g0 + gi) + 64 * c, hb[gi], 0, c, 0, T, xs, widen[gi], s[gi], s32[gi]);
    } else {
        SLM_UNROLL for (int c = 0; c < 4; c++)
            SLM_UNROLL for (int gi = 0; gi < G; gi++)
                FN(t16_chunk)(q + 32 * (g0 + gi) + 64 * c, hb[gi], q5, c, c % (q5 ? 2 : 4) == 0, T, xs,
                              widen[gi], s[gi], s32[gi]);
    }
}

/* xs[t] = token t's activations from xq (rows cols apart), each in a register of its own: the
 * asm hides that they are one base plus multiples of cols, which the compiler otherwise
 * rebuilt by a chain of 3 lea in every chunk of the inner loop (35 -> 32 instructions per
 * chunk at 4 tokens). */
static SLM_ALWAYS_INLINE void FN(t16_token_ptrs)(int T, const int8_t *xq, ptrdiff_t cols, const int8_t *xs[4]) {
    SLM_UNROLL for (int t = 0; t < 4; t++) {
        xs[t] = xq + (t < T ? t : 0) * cols;
        __asm__("" : "+r"(xs[t]));
    }
}

/* Q4_0/Q4_1/Q5_0/Q5_1 tile16, chunk-outer: for each quant dword pair c (32 bytes: rows' low
 * nibbles = elements 4c.., high nibbles = 16 + 4c..; Q5 ORs in the fifth bits from the qh
 * words), unpack it once and run it against every token of the tile before the next, each
 * token summing its products in one int16 vector. Only 2 weight vectors are live instead of
 * 8, so G * T accumulators stay in the 16 registers: the 8-weights form spilled them at
 * T = 4 (and a rolled token loop kept them in memory). Integer sums are exact in any order:
 * Q4, 8 products of at most 3840 (30720); Q5 (at most 7936 each), widened to int32 after
 * every 4 (31744). Each (row, token)'s float chain is FN(t16_tile)'s: bit-identical. */
static SLM_ALWAYS_INLINE void FN(t16_tile_q45)(int type, int T, int G, const uint8_t *tile, int g0, int lo, int hi,
                                               const slm_q8_acts *x, ptrdiff_t t0, float *y, ptrdiff_t ys) {
    const ptrdiff_t nb = x->cols / SLM_QK, cols = x->cols;
    const ptrdiff_t tb_bytes = (ptrdiff_t)SLM_TILE * slm_block_bytes(type), qoff = slm_tile16_quants(type);
    const __m256i ones = _mm256_set1_epi16(1), widen[2] = {ones, ones};
    const int q5 = slm_is_q5(type), split_m = slm_has_m(type) && T > 1;
    __m256 acc[2][4], accm[2][4];  /* [group][token] */
    FN(t16_zero)(T, G, acc, accm);
    const int8_t *xq = x->qs + t0 * cols, *xs[4];
    FN(t16_token_ptrs)(T, xq, cols, xs);
    for (ptrdiff_t b = 0; b < nb; b++) {
        const uint8_t *blk = tile + b * tb_bytes;
        __m256i s[2][4], s32[2][4], hb[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        if (q5)
            SLM_UNROLL for (int gi = 0; gi < G; gi++)
                hb[gi] = _mm256_loadu_si256((const __m256i *)(blk + slm_tile16_qh(type) + 32 * (g0 + gi)));
        FN(t16_block)(blk + qoff, hb, q5, T, G, g0, xs, widen, s, s32);
        SLM_UNROLL for (int t = 0; t < T; t++) xs[t] += SLM_QK;
        SLM_UNROLL for (int gi = 0; gi < G; gi++) {
            const int g = g0 + gi;
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16 * g)));
            const __m256 mw = slm_has_m(type) && !split_m
                                  ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 32 + 16 * g)))
                                  : _mm256_setzero_ps();
            SLM_UNROLL for (int t = 0; t < T; t++) {
                const ptrdiff_t tb = (t0 + t) * nb + b;
                __m256i sumi = _mm256_madd_epi16(s[gi][t], ones);
                if (q5) sumi = _mm256_add_epi32(s32[gi][t], sumi);
                if (type == SLM_T_Q4_0 || type == SLM_T_Q5_0)  /* their q are u - 8 / u - 16 */
                    sumi = _mm256_sub_epi32(sumi, _mm256_set1_epi32((type == SLM_T_Q4_0 ? 8 : 16) * x->isum[tb]));
                const __m256 dd = _mm256_mul_ps(dw, _mm256_set1_ps(x->d[tb]));
                acc[gi][t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi), acc[gi][t]);
                if (slm_has_m(type) && !split_m)
                    accm[gi][t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(x->s[tb]), accm[gi][t]);
            }
        }
    }
    FN(t16_finish)(type, T, G, tile, g0, lo, hi, x, t0, y, ys, acc, accm, split_m);
}

/* Q8_0 tile16 by the sign trick: vpmaddubsw(|w|, x * sign(w)) multiplies each weight by its
 * activation with |w| (0..128, |-128| read as unsigned 128) as the unsigned operand, so one
 * vpmaddubsw covers 4 elements of 8 rows where splitting the weights into nibbles
 * (FN(t16_q8_exact)) needs two, and nothing is unpacked but one vpabsb per weight vector,
 * shared by the tile's tokens. Exact for any weight and any activation but -128 (-(-128)
 * wraps): a pair is at most 2 * 128 * 127 = 32512, widened to int32 at once. Our quantizer
 * never writes -128 from finite input (|q| <= 127); a block whose activations hold one
 * anyway (fed NaN) is recomputed by the nibble split, so the integer dot is always exact and
 * the float chain is FN(tile)'s: bit-identical.
 * The signs once went on the weights for 2-4 tokens, vpmaddubsw(|x|, w * sign(x)), which
 * kept |x| and x of every token live and needed a -128 test on every weight vector; with
 * the signs on the activations and the chunk loop rolled (no spills), one thread, the
 * 49152 x 576 output from memory: 2 tokens 35 -> 51 GMAC/s, 3 tokens 44 -> 58, 4 tokens
 * 39 -> 60 (both row groups per sweep, SLM_TD_WHOLE_TILE_MAX); 1 token unchanged (29-30). */
static SLM_NOINLINE __m256i FN(t16_q8_exact)(const uint8_t *q, const int8_t *xq, int32_t isum) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), bias = _mm256_set1_epi8((char)0x80);
    __m256i w[8], wh[8];
    for (int c = 0; c < 8; c++) {
        const __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(q + 64 * c)), bias);
        w[c] = _mm256_and_si256(v, m4);
        wh[c] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
    /* w = 16 * hi + lo - 128 */
    const __m256i sh = _mm256_madd_epi16(FN(t16_dot16)(wh, xq), _mm256_set1_epi16(16));
    const __m256i sl = _mm256_madd_epi16(FN(t16_dot16)(w, xq), _mm256_set1_epi16(1));
    return _mm256_sub_epi32(_mm256_add_epi32(sl, sh), _mm256_set1_epi32(isum * 128));
}

/* Chunk c of a Q8_0 tile16 block (quant dwords c of each group's 8 rows at q: elements
 * 4c..4c+3) against T tokens from xb, added to the int32 sums s[group][token]. */
static SLM_ALWAYS_INLINE void FN(t16_q8_chunk)(const uint8_t *q, int c, int T, int G, int g0, const int8_t *xb,
                                               ptrdiff_t cols, __m256i s[2][4]) {
    const __m256i ones = _mm256_set1_epi16(1);
    SLM_UNROLL for (int gi = 0; gi < G; gi++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(q + 32 * (g0 + gi)));
        const __m256i av = _mm256_abs_epi8(v);
        SLM_UNROLL for (int t = 0; t < T; t++) {
            const __m256i xs = _mm256_sign_epi8(FN(bcast4)(xb + t * cols + 4 * c), v);
            s[gi][t] = _mm256_add_epi32(s[gi][t], _mm256_madd_epi16(_mm256_maddubs_epi16(av, xs), ones));
        }
    }
}

static SLM_ALWAYS_INLINE void FN(t16_tile_q8)(int T, int G, const uint8_t *tile, int g0, int lo, int hi,
                                              const slm_q8_acts *x, ptrdiff_t t0, float *y, ptrdiff_t ys) {
    const int type = SLM_T_Q8_0;
    const ptrdiff_t nb = x->cols / SLM_QK, cols = x->cols;
    const ptrdiff_t tb_bytes = (ptrdiff_t)SLM_TILE * slm_block_bytes(type), qoff = slm_tile16_quants(type);
    const __m256i m128 = _mm256_set1_epi8((char)0x80);
    __m256 acc[2][4], accm[2][4];  /* [group][token]; accm stays zero (Q8_0 has no min) */
    FN(t16_zero)(T, G, acc, accm);
    const int8_t *xq = x->qs + t0 * cols;
    for (ptrdiff_t b = 0; b < nb; b++) {
        const uint8_t *blk = tile + b * tb_bytes;
        const int8_t *xb = xq + b * SLM_QK;
        __m256i s[2][4];
        __m256i e = _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)xb), m128);
        SLM_UNROLL for (int t = 1; t < T; t++)
            e = _mm256_or_si256(e, _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(xb + t * cols)), m128));
        if (SLM_UNLIKELY(!_mm256_testz_si256(e, e))) {
            SLM_UNROLL for (int gi = 0; gi < G; gi++)
                SLM_UNROLL for (int t = 0; t < T; t++)
                    s[gi][t] = FN(t16_q8_exact)(blk + qoff + 32 * (g0 + gi), xb + t * cols, x->isum[(t0 + t) * nb + b]);
        } else {
            /* Rolled for several tokens, unrolled for one (FN(t16_tile_q45)'s reason). */
            SLM_UNROLL for (int gi = 0; gi < G; gi++)
                SLM_UNROLL for (int t = 0; t < T; t++) s[gi][t] = _mm256_setzero_si256();
            if (T > 1) {
                SLM_ROLLED for (int c = 0; c < 8; c++) FN(t16_q8_chunk)(blk + qoff + 64 * c, c, T, G, g0, xb, cols, s);
            } else {
                SLM_UNROLL for (int c = 0; c < 8; c++) FN(t16_q8_chunk)(blk + qoff + 64 * c, c, T, G, g0, xb, cols, s);
            }
        }
        SLM_UNROLL for (int gi = 0; gi < G; gi++) {
            const int g = g0 + gi;
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16 * g)));
            SLM_UNROLL for (int t = 0; t < T; t++) {
                const __m256 dd = _mm256_mul_ps(dw, _mm256_set1_ps(x->d[(t0 + t) * nb + b]));
                acc[gi][t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s[gi][t]), acc[gi][t]);
            }
        }
    }
    FN(t16_finish)(type, T, G, tile, g0, lo, hi, x, t0, y, ys, acc, accm, 0);
}

/* A Q4_K tile16 super-block's scales (sc) and mins (mn) of row group g: byte 8j + k = row
 * 8g + k's value for sub-block j, from the layout's low-nibble and high-bit planes. */
static SLM_ALWAYS_INLINE void FN(t16_q4k_scales)(const uint8_t *blk, int g, uint8_t sc[64], uint8_t mn[64]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    const __m256i l0 = _mm256_loadu_si256((const __m256i *)(blk + KQ_Q4K_T16_LO + 64 * g));
    const __m256i l1 = _mm256_loadu_si256((const __m256i *)(blk + KQ_Q4K_T16_LO + 64 * g + 32));
    const __m256i h = _mm256_loadu_si256((const __m256i *)(blk + KQ_Q4K_T16_HI + 32 * g));
    _mm256_storeu_si256((__m256i *)sc, _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30)));
    _mm256_storeu_si256((__m256i *)(sc + 32), _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(h, m30)));
    _mm256_storeu_si256((__m256i *)mn, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                                       _mm256_and_si256(_mm256_slli_epi16(h, 2), m30)));
    _mm256_storeu_si256((__m256i *)(mn + 32), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                                              _mm256_and_si256(_mm256_srli_epi16(h, 2), m30)));
}

/* Q4_K and Q5_K tile16: sub-block j of a super-block is a Q4_1-form block (slm_kernels.h;
 * Q5_K ORs in the fifth bits from Q5 tile16 qh words, as FN(t16_tile_q45)), so the inner
 * loop is FN(t16_tile_q45)'s and the int16 sums are exact the same way (Q4_K 8 products of
 * at most 3840; Q5_K at most 7936, so 4 at a time). The sub-block's 6-bit scale rides in the
 * vpmaddwd, as int16 pairs (sc, sc) per row lane instead of ones: at most 2 * 31744 * 63 per
 * vpmaddwd, exact in int32, and equal to the contract's sc_lo * lo + sc_hi * hi. The min
 * chain takes each super-block's eight sub-blocks after its main loop: mn * isum is an integer below 2^24 (63 * 4096), so the
 * float product of the two is exact and equals the contract's (float)(mn * isum). Each
 * (row, token)'s two chains are kq_tile's / slm_kq_portable's: bit-identical. */
static SLM_ALWAYS_INLINE void FN(t16_tile_q45k)(int type, int T, int G, const uint8_t *tile, int g0, int lo, int hi,
                                                const slm_q8_acts *x, ptrdiff_t t0, float *y, ptrdiff_t ys) {
    const ptrdiff_t nb = x->cols / SLM_QK, cols = x->cols;
    const int q5 = type == SLM_T_Q5_K;
    const ptrdiff_t tb_bytes = q5 ? KQ_Q5K_TILE : KQ_Q4K_TILE;
    __m256 acc[2][4], accm[2][4];  /* [group][token] */
    FN(t16_zero)(T, G, acc, accm);
    const int8_t *xq = x->qs + t0 * cols;
    for (ptrdiff_t sb = 0; sb < nb / 8; sb++) {
        const uint8_t *blk = tile + sb * tb_bytes;
        uint8_t sc[2][64], mn[2][64];
        __m256 dw[2];
        SLM_UNROLL for (int gi = 0; gi < G; gi++) {
            FN(t16_q4k_scales)(blk, g0 + gi, sc[gi], mn[gi]);
            dw[gi] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16 * (g0 + gi))));
        }
        for (int j = 0; j < 8; j++) {
            const uint8_t *q = blk + KQ_Q4K_T16_QS + kq_sub_stride(q5) * j;
            const int8_t *xb = xq + (8 * sb + j) * SLM_QK;
            __m256i s[2][4], s32[2][4], scp[2], hb[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
            SLM_UNROLL for (int gi = 0; gi < G; gi++) {
                const __m256i sc32 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sc[gi] + 8 * j)));
                scp[gi] = _mm256_or_si256(sc32, _mm256_slli_epi32(sc32, 16));  /* (sc, sc) per row */
                if (q5) hb[gi] = _mm256_loadu_si256((const __m256i *)(q + KQ_Q5K_T16_QH + 32 * (g0 + gi)));
            }
            const int8_t *const xs[4] = {xb, xb + cols, xb + 2 * cols, xb + 3 * cols};
            FN(t16_block)(q, hb, q5, T, G, g0, xs, scp, s, s32);
            SLM_UNROLL for (int gi = 0; gi < G; gi++) {
                SLM_UNROLL for (int t = 0; t < T; t++) {
                    const ptrdiff_t tb = (t0 + t) * nb + 8 * sb + j;
                    const __m256 dd = _mm256_mul_ps(dw[gi], _mm256_set1_ps(x->d[tb]));
                    __m256i sumi = _mm256_madd_epi16(s[gi][t], scp[gi]);
                    if (q5) sumi = _mm256_add_epi32(s32[gi][t], sumi);
                    acc[gi][t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(sumi), acc[gi][t]);
                }
            }
        }
        SLM_UNROLL for (int gi = 0; gi < G; gi++) {
            const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 32 + 16 * (g0 + gi))));
            for (int j = 0; j < 8; j++) {
                const __m256 mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(mn[gi] + 8 * j))));
                SLM_UNROLL for (int t = 0; t < T; t++) {
                    const ptrdiff_t tb = (t0 + t) * nb + 8 * sb + j;
                    accm[gi][t] = _mm256_fmadd_ps(_mm256_mul_ps(dmin, _mm256_set1_ps(x->d[tb])),
                                                  _mm256_mul_ps(mf, _mm256_set1_ps((float)x->isum[tb])), accm[gi][t]);
                }
            }
        }
    }
    FN(t16_finish)(type, T, G, tile, g0, lo, hi, x, t0, y, ys, acc, accm, 0);
}

/* Q6_K tile16: sub-block j's 6-bit weights u = q + 32 are a Q4_1-form low-nibble block with
 * the top two bits OR-ed in from two planes (slm_kernels.h), one shift and mask per chunk.
 * The halves keep their own scales: the low nibbles (elements 4c + b) sum the first half's
 * products, the high ones the second's; with u <= 63 an int16 holds two chunks' pair sums
 * (2 * 2 * 63 * 128 = 32256), so every two chunks one vpmaddwd per half multiplies by the
 * half's scale (int16 pairs (sc, sc)) into int32. The -32 comes out through the activation
 * half sums: sc_lo * (32 hx_lo) + sc_hi * (32 hx_hi) in one vpmaddwd of (hx_lo, hx_hi)
 * against (sc_lo, sc_hi), shifted by 5. Exact (|sum| < 2^25) and equal to the contract's
 * sumi; the float chain is slm_kq_portable's: bit-identical. */
static SLM_ALWAYS_INLINE void FN(t16_tile_q6k)(int T, int G, const uint8_t *tile, int g0, int lo, int hi,
                                               const slm_q8_acts *x, ptrdiff_t t0, float *y, ptrdiff_t ys) {
    const ptrdiff_t nb = x->cols / SLM_QK, cols = x->cols;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30), ones8 = _mm256_set1_epi8(1);
    /* per 32-bit lane (row): bytes 0,1 -> int16 0 twice; bytes 2,3 -> int16 1 twice (of vpmovsxbw (sc_lo, sc_hi)) */
    const __m256i pick_lo = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13,
                                             0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13);
    const __m256i pick_hi = _mm256_setr_epi8(2, 3, 2, 3, 6, 7, 6, 7, 10, 11, 10, 11, 14, 15, 14, 15,
                                             2, 3, 2, 3, 6, 7, 6, 7, 10, 11, 10, 11, 14, 15, 14, 15);
    __m256 acc[2][4], accm[2][4];  /* [group][token]; accm stays zero (no min term) */
    FN(t16_zero)(T, G, acc, accm);
    const int8_t *xq = x->qs + t0 * cols;
    for (ptrdiff_t sb = 0; sb < nb / 8; sb++) {
        const uint8_t *blk = tile + sb * KQ_Q6K_TILE;
        __m256 dw[2];
        SLM_UNROLL for (int gi = 0; gi < G; gi++) dw[gi] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16 * (g0 + gi))));
        for (int j = 0; j < 8; j++) {
            const uint8_t *q = blk + KQ_Q6K_T16_QS + KQ_Q6K_T16_SUB * j;
            const int8_t *xb = xq + (8 * sb + j) * SLM_QK;
            __m256i hx[4];  /* per token, every lane (hx_lo, hx_hi) as int16 */
            SLM_UNROLL for (int t = 0; t < T; t++) {
                const __m256i s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)(xb + t * cols))),
                                                     _mm256_set1_epi16(1));  /* lane i: bytes 4i..4i+3 */
                __m128i h = _mm_hadd_epi32(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
                h = _mm_hadd_epi32(h, h);  /* lane 0: elements 0..15, lane 1: 16..31 */
                hx[t] = _mm256_set1_epi32((int)(((uint32_t)_mm_cvtsi128_si32(h) & 0xffffu) | (uint32_t)_mm_extract_epi32(h, 1) << 16));
            }
            __m256i sc[2], sclo[2], schi[2], a[2], b[2], s32[2][4];
            SLM_UNROLL for (int gi = 0; gi < G; gi++) {
                const int g = g0 + gi;
                sc[gi] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + KQ_Q6K_T16_SC + KQ_Q6K_T16_SUB * j + 16 * g)));
                sclo[gi] = _mm256_shuffle_epi8(sc[gi], pick_lo);
                schi[gi] = _mm256_shuffle_epi8(sc[gi], pick_hi);
                a[gi] = _mm256_loadu_si256((const __m256i *)(q + 256 + 32 * g));
                b[gi] = _mm256_loadu_si256((const __m256i *)(q + 320 + 32 * g));
            }
            SLM_UNROLL for (int half = 0; half < 2; half++) {  /* chunks 2 half, 2 half + 1 */
                __m256i sl[2][4], sh[2][4];
                SLM_UNROLL for (int cc = 0; cc < 2; cc++) {
                    const int c = 2 * half + cc;
                    SLM_UNROLL for (int gi = 0; gi < G; gi++) {
                        const __m256i v = _mm256_loadu_si256((const __m256i *)(q + 32 * (g0 + gi) + 64 * c));
                        const __m256i ta = c < 3 ? _mm256_slli_epi32(a[gi], 4 - 2 * c) : _mm256_srli_epi32(a[gi], 2);
                        const __m256i tb = c < 3 ? _mm256_slli_epi32(b[gi], 4 - 2 * c) : _mm256_srli_epi32(b[gi], 2);
                        const __m256i wl = _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_and_si256(ta, m30));
                        const __m256i wh = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), _mm256_and_si256(tb, m30));
                        SLM_UNROLL for (int t = 0; t < T; t++) {
                            const int8_t *xt = xb + t * cols;
                            const __m256i pl = _mm256_maddubs_epi16(wl, FN(bcast4)(xt + 4 * c));
                            const __m256i ph = _mm256_maddubs_epi16(wh, FN(bcast4)(xt + 16 + 4 * c));
                            sl[gi][t] = cc == 0 ? pl : _mm256_add_epi16(sl[gi][t], pl);
                            sh[gi][t] = cc == 0 ? ph : _mm256_add_epi16(sh[gi][t], ph);
                        }
                    }
                }
                SLM_UNROLL for (int gi = 0; gi < G; gi++)
                    SLM_UNROLL for (int t = 0; t < T; t++) {
                        const __m256i p = _mm256_add_epi32(_mm256_madd_epi16(sl[gi][t], sclo[gi]), _mm256_madd_epi16(sh[gi][t], schi[gi]));
                        s32[gi][t] = half == 0 ? p : _mm256_add_epi32(s32[gi][t], p);
                    }
            }
            SLM_UNROLL for (int gi = 0; gi < G; gi++)
                SLM_UNROLL for (int t = 0; t < T; t++) {
                    const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(hx[t], sc[gi]), 5);
                    const __m256 dd = _mm256_mul_ps(dw[gi], _mm256_set1_ps(x->d[(t0 + t) * nb + 8 * sb + j]));
                    acc[gi][t] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(_mm256_sub_epi32(s32[gi][t], off)), acc[gi][t]);
                }
        }
    }
    FN(t16_finish)(SLM_T_Q6_K, T, G, tile, g0, lo, hi, x, t0, y, ys, acc, accm, 0);
}

/* tile_driver.h's kernel: every tile16 type through the chunk-outer kernels above. */
static SLM_ALWAYS_INLINE void FN(t16_tile)(int type, int T, int G, const uint8_t *tile, int g0, int lo, int hi,
                                           const slm_q8_acts *x, ptrdiff_t t0, float *y, ptrdiff_t ys) {
    if (type == SLM_T_Q8_0) FN(t16_tile_q8)(T, G, tile, g0, lo, hi, x, t0, y, ys);
    else if (type == SLM_T_Q4_K || type == SLM_T_Q5_K) FN(t16_tile_q45k)(type, T, G, tile, g0, lo, hi, x, t0, y, ys);
    else if (type == SLM_T_Q6_K) FN(t16_tile_q6k)(T, G, tile, g0, lo, hi, x, t0, y, ys);
    else FN(t16_tile_q45)(type, T, G, tile, g0, lo, hi, x, t0, y, ys);
}

#define SLM_TD_GROUP SLM_ROWS
#define SLM_TD_TMAX 4
/* Next-tile prefetch (tile_driver.h), one thread, Q4_1 from memory, before -> after:
 * 16 tokens 1536x576 77 -> 92 GMAC/s, 576x1536 77 -> 89, 8 tokens 79 -> 90; in cache and
 * at 1-4 tokens unchanged (5 tokens, 4 + 1, lost 4%: hence 8 and up). */
#define SLM_TD_PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
/* Both row groups per sweep up to 4 tokens (Q8_0 too since its tile puts the signs on the
 * activations; before, at 3-4 tokens, its tile ran 12% slower that way). One thread, weights from memory, group by group -> whole tile:
 * Q4_1 576x1536 (the FFN down shape, 15 KiB tiles) 2 tokens 43-46 -> 72-78 GMAC/s, 4 tokens
 * 50-51 -> 65-71; 1536x576 2 tokens 65-68 -> 79, 4 tokens +3%; Q4_0 576x1536 3-4 tokens
 * +35-60%, Q5_0/Q5_1 +40-60%; in cache 2 tokens +14%, 4 tokens 0 to -7% (spills). */
#define SLM_TD_WHOLE_TILE_MAX 4
#define SLM_TD_KTILE 1
#include "tile_driver.h"
#undef SLM_TD_KTILE
#undef SLM_TD_PREFETCH
#undef SLM_TD_GROUP
#undef SLM_TD_TMAX

#undef SLM_ROWS
