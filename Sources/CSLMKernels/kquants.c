/* The portable K-quant / 5-bit matmul: the C twin of ReferenceKernels.dotSub (contract in
 * slm_kernels.h), one scalar chain per (row, token). */
#include "kquants.h"

/* One sub-block of one (row, token)'s two chains (the contract's step). */
static inline void kq_step(int wt, const kq_sub *s, const slm_q8_acts *x, ptrdiff_t t, ptrdiff_t k, float *acc,
                           float *accm) {
    const ptrdiff_t nsub = x->cols / SLM_QK, xk = t * nsub + k;
    const int8_t *xb = x->qs + t * x->cols + k * SLM_QK;
    int32_t lo = 0, hi = 0;
    for (int j = 0; j < 16; j++) lo += (int32_t)s->q[j] * xb[j];
    for (int j = 16; j < 32; j++) hi += (int32_t)s->q[j] * xb[j];
    *acc = fmaf(s->d * x->d[xk], (float)(s->sc_lo * lo + s->sc_hi * hi), *acc);
    if (wt == SLM_WTYPE_Q5_1) *accm = fmaf(s->m, x->s[xk], *accm);
    else if (wt == SLM_WTYPE_Q4_K || wt == SLM_WTYPE_Q5_K) *accm = fmaf(s->m * x->d[xk], (float)(s->mn * x->isum[xk]), *accm);
}

/* A (row, token)'s result from its chains (slm_wtype_min_sign). */
static inline float kq_result(int wt, float acc, float accm) {
    const int sign = slm_wtype_min_sign(wt);
    return sign > 0 ? acc + accm : sign < 0 ? acc - accm : acc;
}

void slm_kq_portable(int wt, const void *w, ptrdiff_t row_bytes, ptrdiff_t r0, ptrdiff_t r1, const slm_q8_acts *x,
                     float *y, ptrdiff_t ys) {
    const ptrdiff_t nsub = x->cols / SLM_QK;
    const int spb = kq_subs(wt), bb = kq_block_bytes(wt);
    for (ptrdiff_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + r * row_bytes;
        for (ptrdiff_t t = 0; t < x->tokens; t++) {
            float acc = 0.0f, accm = 0.0f;
            for (ptrdiff_t k = 0; k < nsub; k++) {
                kq_sub s;
                kq_decode(wt, row + (k / spb) * bb, (int)(k % spb), &s);
                kq_step(wt, &s, x, t, k, &acc, &accm);
            }
            y[t * ys + r] = kq_result(wt, acc, accm);
        }
    }
}

void slm_kq_tile16_portable(int wt, const void *w, ptrdiff_t row_bytes, ptrdiff_t rows, ptrdiff_t r0, ptrdiff_t r1,
                            const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    const ptrdiff_t nsub = x->cols / SLM_QK, full = rows / SLM_TILE * SLM_TILE;
    for (ptrdiff_t r = r0; r < r1; r++) {
        if (r >= full) {
            slm_kq_portable(wt, w, row_bytes, r, r + 1, x, y, ys);
            continue;
        }
        const uint8_t *tile = (const uint8_t *)w + r / SLM_TILE * SLM_TILE * row_bytes;
        for (ptrdiff_t t = 0; t < x->tokens; t++) {
            float acc = 0.0f, accm = 0.0f;
            uint8_t blk[210];
            for (ptrdiff_t k = 0; k < nsub; k++) {
                if (k % 8 == 0) kq_from_tile16(wt, tile + k / 8 * kq_tile_bytes(wt), (int)(r % SLM_TILE), blk);
                kq_sub s;
                kq_decode(wt, blk, (int)(k % 8), &s);
                kq_step(wt, &s, x, t, k, &acc, &accm);
            }
            y[t * ys + r] = kq_result(wt, acc, accm);
        }
    }
}
