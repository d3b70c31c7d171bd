/* The row/token loop and the slm_impl entry of the K-quant and Q5 kernels, shared by
 * x86_kquants.h (AVX2, AVX-512 VNNI) and arm_kquants.h (NEON, NEON dotprod). Included inside an
 * ISA's target region after that ISA defines:
 *
 *   KQ_ROWS            rows per tile (one float vector: 8 on x86, 4 on NEON)
 *   KQ_TOKENS          the widest token tile (accumulators on the stack for prefill)
 *   FN(kq_tile)(wt, T, w0, row_bytes, nvalid, x, t0, y, ys)
 *                      KQ_ROWS rows from w0 (the first nvalid stored) x T tokens from t0
 *
 * and defines FN(matmul_kq), the table entry. Tiling decides which lanes compute a
 * (row, token), never how: the numerics are the kernel's. */

static SLM_ALWAYS_INLINE void FN(kq_rows)(int wt, const void *w, ptrdiff_t rb, ptrdiff_t r0, ptrdiff_t r1,
                                          const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    for (ptrdiff_t r = r0; r < r1; r += KQ_ROWS) {
        const int nvalid = r1 - r < KQ_ROWS ? (int)(r1 - r) : KQ_ROWS;
        const uint8_t *w0 = (const uint8_t *)w + r * rb;
        if (x->tokens == 1) {  /* decode: the accumulators stay in registers */
            FN(kq_tile)(wt, 1, w0, rb, nvalid, x, 0, y + r, ys);
            continue;
        }
        /* prefill: each unpacked sub-block serves up to KQ_TOKENS tokens (accumulators on the stack) */
        for (ptrdiff_t t = 0; t < x->tokens; t += KQ_TOKENS) {
            const int n = x->tokens - t < KQ_TOKENS ? (int)(x->tokens - t) : KQ_TOKENS;
            FN(kq_tile)(wt, n, w0, rb, nvalid, x, t, y + r, ys);
        }
    }
}

static void FN(matmul_kq)(int wt, const void *w, ptrdiff_t rb, ptrdiff_t r0, ptrdiff_t r1, const slm_q8_acts *x,
                          float *y, ptrdiff_t ys) {
    switch (wt) {
    case SLM_WTYPE_Q5_0: FN(kq_rows)(SLM_WTYPE_Q5_0, w, rb, r0, r1, x, y, ys); break;
    case SLM_WTYPE_Q5_1: FN(kq_rows)(SLM_WTYPE_Q5_1, w, rb, r0, r1, x, y, ys); break;
    case SLM_WTYPE_Q4_K: FN(kq_rows)(SLM_WTYPE_Q4_K, w, rb, r0, r1, x, y, ys); break;
    case SLM_WTYPE_Q5_K: FN(kq_rows)(SLM_WTYPE_Q5_K, w, rb, r0, r1, x, y, ys); break;
    case SLM_WTYPE_Q6_K: FN(kq_rows)(SLM_WTYPE_Q6_K, w, rb, r0, r1, x, y, ys); break;
    default: slm_kq_portable(wt, w, rb, r0, r1, x, y, ys); break;
    }
}
