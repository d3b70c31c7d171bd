/* The row/token tiling loops, shared by every SIMD path (x86_avx2.h, x86_avx512.h,
 * arm_tile.h). Included inside an ISA's target region after that ISA defines:
 *
 *   SLM_TD_GROUP       rows per group: the rows one float vector holds (8 on AVX2, 16 on
 *                      AVX-512, 4 on NEON); divides SLM_TILE.
 *   SLM_TD_TMAX        the widest token tile (4 or 8): the kernel keeps that many tokens'
 *                      accumulators per group in registers.
 *   FN(t16_tile)(type, T, G, tile, g0, lo, hi, x, t0, y, ys)
 *                      G groups from group g0 of one tile (tile = the tile's first byte) x
 *                      T tokens from t0; stores only tile rows [lo, hi) (y points at the
 *                      tile's row 0 of token 0). T and G are compile-time constants at every
 *                      call below, so each (T, G) is its own fully unrolled copy.
 *   FN(tile)(type, T, w0, row_bytes, nvalid, x, t0, y, ys)
 *                      the row-layout kernel: SLM_TD_GROUP rows from w0 (the first nvalid
 *                      of them stored) x T tokens from t0.
 *
 * and defines the slm_impl entries: FN(q4_1), FN(q4_0), FN(q8_0) over the row layout (through
 * FN(matmul)) and FN(matmul_tile16) over tile16 (rows past the last whole tile through
 * FN(matmul), or for Q5_0/Q5_1 through the ISA's FN(matmul_kq), which kq_driver.h defines).
 * Both run the same token tiling. The loop order is the GEMM one for prefill: a group's
 * block is loaded and unpacked once per token tile, and the group's rows (a few KiB for the
 * model's shapes) stay in L1 across its token tiles. A decode token (T = 1) over a whole
 * tile runs all its groups in one pass, for independent chains. Numerics are the kernel's:
 * tiling decides which lanes compute a (row, token), never how. */

/* The token tile, for slm_impl.token_tile: any count up to it is one sweep of each weight
 * group (one tile); a pass of more tokens sweeps each group again for the rest. */
enum { FN(token_tile) = SLM_TD_TMAX };

/* SLM_TD_WHOLE_TILE_MAX (1, 2 or 4) and SLM_TD_WHOLE_TILE_TOKENS(type) (at most the max),
 * optional: passes of up to that many tokens run a whole tile's groups in one sweep, as a
 * decode token always does, instead of group by group. Each weight line then serves every
 * row group while it is in L1; group by group, the first sweep fetched each line of a tile
 * from memory for half its bytes and the second read the rest from cache, which loses where
 * a tile's first sweep outruns the hardware prefetcher (long rows). Costs registers: an ISA
 * enables it where its measurements say so. */
#ifndef SLM_TD_WHOLE_TILE_MAX
#define SLM_TD_WHOLE_TILE_MAX 1
#endif
#ifndef SLM_TD_WHOLE_TILE_TOKENS
#define SLM_TD_WHOLE_TILE_TOKENS(type) SLM_TD_WHOLE_TILE_MAX
#endif

/* SLM_TD_WHOLE_TILE_ALL(type), optional: nonzero where passes of any size run each whole
 * tile's token tiles over all its groups at once (as SLM_TD_WHOLE_TILE_TOKENS does for small
 * passes), so a token tile's activation work is shared by the tile's groups. */
#ifndef SLM_TD_WHOLE_TILE_ALL
#define SLM_TD_WHOLE_TILE_ALL(type) 0
#endif

/* SLM_TD_TOKENWISE(type), optional: nonzero where an ISA's one-token whole-tile kernel costs
 * less per token than its multi-token tiles, so whole tiles run token by token (the tile's
 * weights then come from L1 after the first token). */
#ifndef SLM_TD_TOKENWISE
#define SLM_TD_TOKENWISE(type) 0
#endif

/* The token tiling both layouts run: whole SLM_TD_TMAX-token tiles, then the remainder as
 * one tile. CALL(T, t) runs one tile of T tokens from t; T is a literal at every call, so
 * each T is its own unrolled copy of the kernel. A remainder of 3 was once 2 + 1: each
 * group's block was unpacked twice and the 1-token tile shared nothing (1536x576 Q4_1, 3
 * tokens: AVX2 82 -> 98 GMAC/s; cortex-a72 427 -> 371, cortex-a76 265 -> 203 instructions per
 * 1000 MACs), and 5 was 4 + 1 on AVX-512 (154-156 -> 167-168 GMAC/s). So every count up to
 * the token tile is one sweep. */
#define SLM_TD_TOKEN_TILES(CALL)                                                        \
    do {                                                                                \
        ptrdiff_t t_ = 0;                                                               \
        for (; t_ + SLM_TD_TMAX <= x->tokens; t_ += SLM_TD_TMAX) CALL(SLM_TD_TMAX, t_); \
        switch (x->tokens - t_) {                                                       \
        SLM_TD_WIDE_REMAINDERS(CALL)                                                    \
        case 3: CALL(3, t_); break;                                                     \
        case 2: CALL(2, t_); break;                                                     \
        case 1: CALL(1, t_); break;                                                     \
        default: break;                                                                 \
        }                                                                               \
    } while (0)
#if SLM_TD_TMAX > 4
#define SLM_TD_WIDE_REMAINDERS(CALL) \
    case 7: CALL(7, t_); break;      \
    case 6: CALL(6, t_); break;      \
    case 5: CALL(5, t_); break;      \
    case 4: CALL(4, t_); break;
#else
#define SLM_TD_WIDE_REMAINDERS(CALL)
#endif

/* Row layout: groups of SLM_TD_GROUP rows, each against all tokens a token tile at a time.
 * Rows past the end of the range are the kernel's business (it repeats the last row and
 * does not store it). */
static SLM_ALWAYS_INLINE void FN(matmul)(int type, const void *w, ptrdiff_t row_bytes, ptrdiff_t r_begin,
                                         ptrdiff_t r_end, const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    for (ptrdiff_t r0 = r_begin; r0 < r_end; r0 += SLM_TD_GROUP) {
        const int nvalid = (int)(r_end - r0 < SLM_TD_GROUP ? r_end - r0 : SLM_TD_GROUP);
        const uint8_t *w0 = (const uint8_t *)w + r0 * row_bytes;
        float *yr = y + r0;
#define SLM_TD_ROW_TILE(T, t) FN(tile)(type, T, w0, row_bytes, nvalid, x, t, yr, ys)
        SLM_TD_TOKEN_TILES(SLM_TD_ROW_TILE);
#undef SLM_TD_ROW_TILE
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

/* The Q5 row-layout kernels (kq_driver.h, included after this file): a tile16 Q5 matrix's
 * rows past its last whole tile. */
static void FN(matmul_kq)(int wt, const void *w, ptrdiff_t rb, ptrdiff_t r0, ptrdiff_t r1, const slm_q8_acts *x,
                          float *y, ptrdiff_t ys);

/* SLM_TD_PREFETCH(p), optional: prefetch the cache line at p (into the mid-level cache).
 * Where defined, a pass of SLM_TD_PF_TOKENS tokens or more, in more than one token tile,
 * prefetches the next tile of the matrix while it computes this one, a slice before each
 * token tile, so the lines arrive over the tile's work instead of in one burst. The next
 * tile may lie past the end of the range: a parallel region's chunks are short (tapering)
 * and a thread's next chunk usually starts there (ThreadPool's segments), so stopping at
 * the range's end left every chunk's first tile to wait on memory. Measured, x86-avx2 at 2
 * threads, 16 alternating rounds of `slmd bench`: ttft16 +4.3% (every round faster,
 * +2-10%), pp16 +3.5%, pp64 +1.1%; one thread (one range per region) unchanged. At worst
 * it fetches one tile another thread then reads. With several token tiles a tile is
 * compute-bound, but its first sweep still waited on memory: the hardware prefetcher had
 * not run ahead of the tile's first touch. Slices are at least SLM_TD_PF_SLICE bytes
 * (fewer, larger bursts measured better where the tile is small). Prefetching changes no
 * result. The NEON paths leave it undefined: qemu counts instructions, not misses, so there
 * is no measurement to set it by. */
#ifndef SLM_TD_PF_TOKENS
#define SLM_TD_PF_TOKENS 8
#endif
#ifndef SLM_TD_PF_SLICE
#define SLM_TD_PF_SLICE 2048
#endif

/* One token tile's slice of the next tile: an even share of what is left over the calls
 * left, at least SLM_TD_PF_SLICE bytes. *pf == end when there is nothing to prefetch. */
static SLM_ALWAYS_INLINE void FN(td_prefetch)(const uint8_t **pf, const uint8_t *end, int *calls) {
#ifdef SLM_TD_PREFETCH
    if (*pf >= end) return;
    ptrdiff_t n = *calls > 1 ? (end - *pf + *calls - 1) / *calls : end - *pf;
    if (n < SLM_TD_PF_SLICE) n = SLM_TD_PF_SLICE;
    const uint8_t *stop = n < end - *pf ? *pf + n : end;
    for (const uint8_t *p = *pf; p < stop; p += 64) SLM_TD_PREFETCH(p);
    *pf = stop;
    (*calls)--;
#else
    (void)pf; (void)end; (void)calls;
#endif
}

static SLM_ALWAYS_INLINE void FN(td_tokens)(int type, const uint8_t *tile, int g, int lo, int hi, const slm_q8_acts *x,
                                            float *y, ptrdiff_t ys, const uint8_t **pf, const uint8_t *pf_end,
                                            int *pf_calls) {
#define SLM_TD_T16_TILE(T, t)                                   \
    do {                                                        \
        FN(td_prefetch)(pf, pf_end, pf_calls);                  \
        FN(t16_tile)(type, T, 1, tile, g, lo, hi, x, t, y, ys); \
    } while (0)
    SLM_TD_TOKEN_TILES(SLM_TD_T16_TILE);
#undef SLM_TD_T16_TILE
}

/* SLM_TD_DECODE_APART(type), optional: nonzero where a decode token's whole tile (T = 1,
 * every group) runs in a function of its own, so the code the compiler makes for it does not
 * depend on the other tilings inlined beside it (set by an ISA where its counts say so). */
#ifdef SLM_TD_DECODE_APART
static SLM_NOINLINE void FN(td_decode_tile)(int type, const uint8_t *tile, const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    enum { NG = SLM_TILE / SLM_TD_GROUP };
    switch (type) {  /* a literal type per case, so each is its own specialised copy */
    case SLM_T_Q4_1: FN(t16_tile)(SLM_T_Q4_1, 1, NG, tile, 0, 0, SLM_TILE, x, 0, y, ys); break;
    case SLM_T_Q4_0: FN(t16_tile)(SLM_T_Q4_0, 1, NG, tile, 0, 0, SLM_TILE, x, 0, y, ys); break;
    case SLM_T_Q5_0: FN(t16_tile)(SLM_T_Q5_0, 1, NG, tile, 0, 0, SLM_TILE, x, 0, y, ys); break;
    case SLM_T_Q5_1: FN(t16_tile)(SLM_T_Q5_1, 1, NG, tile, 0, 0, SLM_TILE, x, 0, y, ys); break;
#ifdef SLM_TD_KTILE
    case SLM_T_Q4_K: FN(t16_tile)(SLM_T_Q4_K, 1, NG, tile, 0, 0, SLM_TILE, x, 0, y, ys); break;
    case SLM_T_Q6_K: FN(t16_tile)(SLM_T_Q6_K, 1, NG, tile, 0, 0, SLM_TILE, x, 0, y, ys); break;
    case SLM_T_Q5_K: FN(t16_tile)(SLM_T_Q5_K, 1, NG, tile, 0, 0, SLM_TILE, x, 0, y, ys); break;
#endif
    default: FN(t16_tile)(SLM_T_Q8_0, 1, NG, tile, 0, 0, SLM_TILE, x, 0, y, ys); break;
    }
}
#define SLM_TD_DECODE_TILE(type, tile, x, y, ys)                                                              \
    (SLM_TD_DECODE_APART(type) ? FN(td_decode_tile)(type, tile, x, y, ys)                                    \
                               : FN(t16_tile)(type, 1, SLM_TILE / SLM_TD_GROUP, tile, 0, 0, SLM_TILE, x, 0, y, ys))
#else
#define SLM_TD_DECODE_TILE(type, tile, x, y, ys) FN(t16_tile)(type, 1, SLM_TILE / SLM_TD_GROUP, tile, 0, 0, SLM_TILE, x, 0, y, ys)
#endif

static SLM_ALWAYS_INLINE void FN(td_matmul)(int type, const void *w, ptrdiff_t row_bytes, ptrdiff_t rows,
                                            ptrdiff_t r_begin, ptrdiff_t r_end, const slm_q8_acts *x, float *y,
                                            ptrdiff_t ys) {
    enum { NG = SLM_TILE / SLM_TD_GROUP };
    const ptrdiff_t full = rows / SLM_TILE * SLM_TILE;
    for (ptrdiff_t r0 = r_begin / SLM_TILE * SLM_TILE; r0 < r_end && r0 < full; r0 += SLM_TILE) {
        const int lo = (int)(r_begin > r0 ? r_begin - r0 : 0), hi = (int)(r_end - r0 < SLM_TILE ? r_end - r0 : SLM_TILE);
        const uint8_t *tile = (const uint8_t *)w + r0 * row_bytes;
        if (NG > 1 && lo == 0 && hi == SLM_TILE && x->tokens <= SLM_TD_WHOLE_TILE_TOKENS(type)) {
            switch (x->tokens) {
#if SLM_TD_WHOLE_TILE_MAX >= 4
            case 4: FN(t16_tile)(type, 4, NG, tile, 0, lo, hi, x, 0, y + r0, ys); break;
            case 3: FN(t16_tile)(type, 3, NG, tile, 0, lo, hi, x, 0, y + r0, ys); break;
#endif
#if SLM_TD_WHOLE_TILE_MAX >= 2
            case 2: FN(t16_tile)(type, 2, NG, tile, 0, lo, hi, x, 0, y + r0, ys); break;
#endif
            default: SLM_TD_DECODE_TILE(type, tile, x, y + r0, ys); break;
            }
            continue;
        }
        if (NG > 1 && SLM_TD_WHOLE_TILE_ALL(type) && lo == 0 && hi == SLM_TILE) {
#define SLM_TD_WHOLE_TILE(T, t) FN(t16_tile)(type, T, NG, tile, 0, lo, hi, x, t, y + r0, ys)
            SLM_TD_TOKEN_TILES(SLM_TD_WHOLE_TILE);
#undef SLM_TD_WHOLE_TILE
            continue;
        }
        if (NG > 1 && SLM_TD_TOKENWISE(type) && lo == 0 && hi == SLM_TILE) {
            for (ptrdiff_t t = 0; t < x->tokens; t++) FN(t16_tile)(type, 1, NG, tile, 0, lo, hi, x, t, y + r0, ys);
            continue;
        }
        /* Groups wholly outside [lo, hi) are skipped; rows outside it inside a group are
         * computed (the lanes exist anyway) but never stored. */
        const int g_lo = lo / SLM_TD_GROUP, g_hi = (hi + SLM_TD_GROUP - 1) / SLM_TD_GROUP;
        const uint8_t *pf = tile + SLM_TILE * row_bytes, *pf_end = pf;
        int pf_calls = 0;
        if (x->tokens >= SLM_TD_PF_TOKENS && x->tokens > SLM_TD_TMAX && r0 + 2 * SLM_TILE <= full) {
            pf_end = pf + SLM_TILE * row_bytes;
            pf_calls = (g_hi - g_lo) * (int)((x->tokens + SLM_TD_TMAX - 1) / SLM_TD_TMAX);
        }
        for (int g = g_lo; g < g_hi; g++) FN(td_tokens)(type, tile, g, lo, hi, x, y + r0, ys, &pf, pf_end, &pf_calls);
    }
    const ptrdiff_t tail = r_begin > full ? r_begin : full;
    if (tail < r_end) {
        if (slm_rows_by_kq(type)) FN(matmul_kq)(slm_wtype(type), w, row_bytes, tail, r_end, x, y, ys);
        else FN(matmul)(type, w, row_bytes, tail, r_end, x, y, ys);
    }
}

/* One instance per weight type, so `type` is a constant inside each. */
static void FN(matmul_tile16)(int type, const void *w, ptrdiff_t rb, ptrdiff_t rows, ptrdiff_t r0, ptrdiff_t r1,
                              const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    switch (type) {
    case SLM_T_Q4_1: FN(td_matmul)(SLM_T_Q4_1, w, rb, rows, r0, r1, x, y, ys); break;
    case SLM_T_Q4_0: FN(td_matmul)(SLM_T_Q4_0, w, rb, rows, r0, r1, x, y, ys); break;
    case SLM_T_Q5_0: FN(td_matmul)(SLM_T_Q5_0, w, rb, rows, r0, r1, x, y, ys); break;
    case SLM_T_Q5_1: FN(td_matmul)(SLM_T_Q5_1, w, rb, rows, r0, r1, x, y, ys); break;
    default: FN(td_matmul)(SLM_T_Q8_0, w, rb, rows, r0, r1, x, y, ys); break;
    }
}

/* SLM_TD_KTILE, optional: the ISA's FN(t16_tile) computes SLM_T_Q4_K, _Q5_K and _Q6_K, and
 * FN(matmul_tile16_k) is its slm_impl.matmul_tile16_k. */
#ifdef SLM_TD_KTILE
static void FN(matmul_tile16_k)(int type, const void *w, ptrdiff_t rb, ptrdiff_t rows, ptrdiff_t r0, ptrdiff_t r1,
                                const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    if (type == SLM_T_Q4_K) FN(td_matmul)(SLM_T_Q4_K, w, rb, rows, r0, r1, x, y, ys);
    else if (type == SLM_T_Q5_K) FN(td_matmul)(SLM_T_Q5_K, w, rb, rows, r0, r1, x, y, ys);
    else FN(td_matmul)(SLM_T_Q6_K, w, rb, rows, r0, r1, x, y, ys);
}
#endif

#undef SLM_TD_TOKEN_TILES
#undef SLM_TD_WIDE_REMAINDERS
#undef SLM_TD_WHOLE_TILE_MAX
#undef SLM_TD_WHOLE_TILE_TOKENS
#undef SLM_TD_WHOLE_TILE_ALL
#undef SLM_TD_DECODE_TILE
