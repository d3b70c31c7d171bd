/* Private to CSLMKernels: the K-quant and 5-bit types (slm_matmul_kq; layouts and numerics
 * contract in slm_kernels.h). Scalar decoding shared by the portable loop (kquants.c) and
 * the SIMD paths (x86_kquants.h, arm_kquants.h) for their per-row scalars. */
#ifndef SLM_KQUANTS_H
#define SLM_KQUANTS_H

#include "internal.h"

static SLM_ALWAYS_INLINE int kq_is_k(int wt) {
    return wt == SLM_WTYPE_Q4_K || wt == SLM_WTYPE_Q5_K || wt == SLM_WTYPE_Q6_K;
}
/* Bytes per block (a K super-block is 256 elements, a Q5_0/Q5_1 block 32). */
static SLM_ALWAYS_INLINE int kq_block_bytes(int wt) {
    switch (wt) {
    case SLM_WTYPE_Q5_0: return 22;
    case SLM_WTYPE_Q5_1: return 24;
    case SLM_WTYPE_Q4_K: return 144;
    case SLM_WTYPE_Q5_K: return 176;
    default: return 210; /* Q6_K */
    }
}
/* 32-element sub-blocks per block. */
static SLM_ALWAYS_INLINE int kq_subs(int wt) { return kq_is_k(wt) ? 8 : 1; }

/* Byte offsets inside a block. */
enum {
    KQ_Q5_0_QH = 2, KQ_Q5_0_QS = 6,
    KQ_Q5_1_QH = 4, KQ_Q5_1_QS = 8,
    KQ_K_SCALES = 4, KQ_Q4_K_QS = 16, KQ_Q5_K_QH = 16, KQ_Q5_K_QS = 48,
    KQ_Q6_K_QH = 128, KQ_Q6_K_SC = 192, KQ_Q6_K_D = 208
};

/* 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block (its 12 packed bytes). */
static SLM_ALWAYS_INLINE void kq_scale_min(const uint8_t *s, int j, int32_t *sc, int32_t *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* One 32-element sub-block decoded to the quantities of the contract. */
typedef struct {
    int8_t q[32];     /* integer weights in activation order (Q5_0 minus 16, Q6_K minus 32) */
    int32_t sc_lo, sc_hi, mn;
    float d, m;       /* d_w; m_w (Q5_1) or dmin (Q4_K/Q5_K) */
} kq_sub;

/* Sub-block j (0 .. kq_subs - 1) of the block at blk. */
static SLM_ALWAYS_INLINE void kq_decode(int wt, const uint8_t *blk, int j, kq_sub *o) {
    o->sc_lo = o->sc_hi = 1;
    o->mn = 0;
    o->m = 0.0f;
    switch (wt) {
    case SLM_WTYPE_Q5_0:
    case SLM_WTYPE_Q5_1: {
        const int q5_1 = wt == SLM_WTYPE_Q5_1;
        const uint8_t *qs = blk + (q5_1 ? KQ_Q5_1_QS : KQ_Q5_0_QS);
        uint32_t qh;
        memcpy(&qh, blk + (q5_1 ? KQ_Q5_1_QH : KQ_Q5_0_QH), 4);
        for (int e = 0; e < 32; e++) {
            const int nib = e < 16 ? (qs[e] & 0x0f) : (qs[e - 16] >> 4);
            o->q[e] = (int8_t)((nib | (int)((qh >> e) & 1u) << 4) - (q5_1 ? 0 : 16));
        }
        o->d = slm_f16_to_f32(slm_load_u16(blk));
        if (q5_1) o->m = slm_f16_to_f32(slm_load_u16(blk + 2));
        break;
    }
    case SLM_WTYPE_Q4_K:
    case SLM_WTYPE_Q5_K: {
        const int q5 = wt == SLM_WTYPE_Q5_K;
        const uint8_t *qs = blk + (q5 ? KQ_Q5_K_QS : KQ_Q4_K_QS) + 32 * (j / 2);
        for (int e = 0; e < 32; e++) {
            int v = (j & 1) ? qs[e] >> 4 : qs[e] & 0x0f;
            if (q5) v |= ((blk[KQ_Q5_K_QH + e] >> j) & 1) << 4;
            o->q[e] = (int8_t)v;
        }
        int32_t sc, mn;
        kq_scale_min(blk + KQ_K_SCALES, j, &sc, &mn);
        o->sc_lo = o->sc_hi = sc;
        o->mn = mn;
        o->d = slm_f16_to_f32(slm_load_u16(blk));
        o->m = slm_f16_to_f32(slm_load_u16(blk + 2));
        break;
    }
    default: { /* Q6_K */
        const int h = j / 4, g = j % 4;
        const uint8_t *ql = blk + 64 * h + 32 * (g & 1), *qh = blk + KQ_Q6_K_QH + 32 * h;
        for (int e = 0; e < 32; e++) {
            const int lo = g < 2 ? ql[e] & 0x0f : ql[e] >> 4;
            o->q[e] = (int8_t)((lo | ((qh[e] >> (2 * g)) & 3) << 4) - 32);
        }
        const int8_t *sc = (const int8_t *)(blk + KQ_Q6_K_SC);
        o->sc_lo = sc[2 * j];
        o->sc_hi = sc[2 * j + 1];
        o->d = slm_f16_to_f32(slm_load_u16(blk + KQ_Q6_K_D));
        break;
    }
    }
}

/* ---- Q4_K tile16 (slm_kernels.h) ----
 * Super-block b of a 16-row tile occupies tile + b * KQ_Q4K_TILE bytes. Row i (group h = i / 8,
 * k = i % 8) of it, from its ggml block: */
enum {
    KQ_Q4K_TILE = 16 * 144,
    KQ_Q4K_T16_LO = 64,   /* + 64h + 8j + k: (sc_j & 15) | (mn_j & 15) << 4 */
    KQ_Q4K_T16_HI = 192,  /* + 32h + 8(j % 4) + k: sc_j >> 4 | (mn_j >> 4) << 2, j + 4's in the high nibble */
    KQ_Q4K_T16_QS = 256   /* + 256j: sub-block j in Q4_1's tile16 form (dword c of row i at + 64c + 4i; byte e:
                           * element e in the low nibble, element 16 + e in the high) */
};

/* Q5_K: Q4_K's tile with 320 bytes per sub-block (kq_sub_stride): its 256 quant bytes, then
 * its fifth bits, row i's as a Q5 tile16 qh word (slm_q5_qh_to_tile16: element e's bit at
 * bit e of a Q5 qh) at + 256 + 4i. Next to the quants, not after all of them: a decode
 * token's first touch of a separate qh region was a stream the hardware prefetcher did not
 * follow (8 matrices 5632x2048 from memory, AVX2, one token: 9.6 ms against 6.3 for the row
 * kernel, 44% of the samples on the qh load). */
enum { KQ_Q5K_TILE = 16 * 176, KQ_Q5K_T16_QH = 256 };
/* Bytes from one sub-block's quants to the next in a Q4_K / Q5_K tile. */
static inline ptrdiff_t kq_sub_stride(int q5) { return q5 ? 320 : 256; }

/* Writes row i's part of a tile16 super-block from its ggml block src (Q4_K 144 bytes, Q5_K 176). */
static inline void kq_q45k_to_tile16(int q5, const uint8_t *src, uint8_t *tile, int i) {
    const int h = i / 8, k = i % 8;
    memcpy(tile + 2 * i, src, 2);
    memcpy(tile + 32 + 2 * i, src + 2, 2);
    for (int j = 0; j < 8; j++) {
        int32_t sc, mn;
        kq_scale_min(src + KQ_K_SCALES, j, &sc, &mn);
        tile[KQ_Q4K_T16_LO + 64 * h + 8 * j + k] = (uint8_t)((sc & 15) | (mn & 15) << 4);
        uint8_t *hb = tile + KQ_Q4K_T16_HI + 32 * h + 8 * (j % 4) + k;
        const int sh = j < 4 ? 0 : 4;
        *hb = (uint8_t)((*hb & ~(15 << sh)) | ((sc >> 4) | (mn >> 4) << 2) << sh);
        const uint8_t *qs = src + (q5 ? KQ_Q5_K_QS : KQ_Q4_K_QS) + 32 * (j / 2);
        for (int e = 0; e < 16; e++) {
            const int lo = (qs[e] >> (4 * (j & 1))) & 15, hi = (qs[16 + e] >> (4 * (j & 1))) & 15;
            tile[KQ_Q4K_T16_QS + kq_sub_stride(q5) * j + 64 * (e / 4) + 4 * i + e % 4] = (uint8_t)(lo | hi << 4);
        }
        if (q5) {
            uint32_t qh = 0;
            for (int e = 0; e < 32; e++) qh |= (uint32_t)((src[KQ_Q5_K_QH + e] >> j) & 1) << e;
            const uint32_t p = slm_q5_qh_to_tile16(qh);
            memcpy(tile + KQ_Q4K_T16_QS + kq_sub_stride(1) * j + KQ_Q5K_T16_QH + 4 * i, &p, 4);
        }
    }
}

/* The inverse: row i's ggml block (Q4_K 144 bytes, Q5_K 176) from a tile16 super-block. */
static inline void kq_q45k_from_tile16(int q5, const uint8_t *tile, int i, uint8_t *out) {
    const int h = i / 8, k = i % 8;
    if (q5) memset(out + KQ_Q5_K_QH, 0, 32);
    memcpy(out, tile + 2 * i, 2);
    memcpy(out + 2, tile + 32 + 2 * i, 2);
    int32_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) {
        const int lo = tile[KQ_Q4K_T16_LO + 64 * h + 8 * j + k];
        const int hi = tile[KQ_Q4K_T16_HI + 32 * h + 8 * (j % 4) + k] >> (j < 4 ? 0 : 4);
        sc[j] = (lo & 15) | (hi & 3) << 4;
        mn[j] = (lo >> 4) | ((hi >> 2) & 3) << 4;
    }
    uint8_t *s = out + KQ_K_SCALES;  /* kq_scale_min's packing */
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        s[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
    for (int j = 0; j < 8; j++) {
        uint8_t *qs = out + (q5 ? KQ_Q5_K_QS : KQ_Q4_K_QS) + 32 * (j / 2);
        if (q5) {
            const uint32_t qh = slm_q5_qh_from_tile16(slm_load_u32(tile + KQ_Q4K_T16_QS + kq_sub_stride(1) * j + KQ_Q5K_T16_QH + 4 * i));
            for (int e = 0; e < 32; e++) out[KQ_Q5_K_QH + e] |= (uint8_t)(((qh >> e) & 1) << j);
        }
        for (int e = 0; e < 16; e++) {
            const int b = tile[KQ_Q4K_T16_QS + kq_sub_stride(q5) * j + 64 * (e / 4) + 4 * i + e % 4];
            if (j & 1) {
                qs[e] = (uint8_t)((qs[e] & 15) | (b & 15) << 4);
                qs[16 + e] = (uint8_t)((qs[16 + e] & 15) | (b >> 4) << 4);
            } else {
                qs[e] = (uint8_t)(b & 15);
                qs[16 + e] = (uint8_t)(b >> 4);
            }
        }
    }
}

/* ---- Q6_K tile16 (slm_kernels.h) ----
 * Super-block b of a 16-row tile at tile + b * KQ_Q6K_TILE; row i, sub-block j, from its
 * ggml block (u = q + 32, the unsigned 6-bit weight): */
enum {
    KQ_Q6K_TILE = 16 * 210,
    KQ_Q6K_T16_SUB = 416, /* bytes from one sub-block to the next (its scales and quants together) */
    KQ_Q6K_T16_SC = 32,   /* + 416j + 2i + {0, 1}: sub-block j's int8 scales of elements 0..15, 16..31 */
    KQ_Q6K_T16_QS = 64,   /* + 416j: the low 4 bits of u in Q4_1's tile form (256 bytes), then two
                           * planes of the top 2 bits, row i's word at + 256 + 4i (elements 4c + b)
                           * and + 320 + 4i (16 + 4c + b), those of element 4c + b at bits 8b + 2c */
};

static inline void kq_q6k_to_tile16(const uint8_t *src, uint8_t *tile, int i) {
    memcpy(tile + 2 * i, src + KQ_Q6_K_D, 2);
    for (int j = 0; j < 8; j++) {
        kq_sub s;
        kq_decode(SLM_WTYPE_Q6_K, src, j, &s);
        tile[KQ_Q6K_T16_SC + KQ_Q6K_T16_SUB * j + 2 * i] = (uint8_t)(int8_t)s.sc_lo;
        tile[KQ_Q6K_T16_SC + KQ_Q6K_T16_SUB * j + 2 * i + 1] = (uint8_t)(int8_t)s.sc_hi;
        uint8_t *q = tile + KQ_Q6K_T16_QS + KQ_Q6K_T16_SUB * j;
        uint32_t a = 0, b = 0;
        for (int e = 0; e < 16; e++) {
            const int lo = s.q[e] + 32, hi = s.q[16 + e] + 32;
            q[64 * (e / 4) + 4 * i + e % 4] = (uint8_t)((lo & 15) | (hi & 15) << 4);
            a |= (uint32_t)(lo >> 4) << (8 * (e % 4) + 2 * (e / 4));
            b |= (uint32_t)(hi >> 4) << (8 * (e % 4) + 2 * (e / 4));
        }
        memcpy(q + 256 + 4 * i, &a, 4);
        memcpy(q + 320 + 4 * i, &b, 4);
    }
}

static inline void kq_q6k_from_tile16(const uint8_t *tile, int i, uint8_t *out) {
    memset(out, 0, 210);
    memcpy(out + KQ_Q6_K_D, tile + 2 * i, 2);
    for (int j = 0; j < 8; j++) {
        out[KQ_Q6_K_SC + 2 * j] = tile[KQ_Q6K_T16_SC + KQ_Q6K_T16_SUB * j + 2 * i];
        out[KQ_Q6_K_SC + 2 * j + 1] = tile[KQ_Q6K_T16_SC + KQ_Q6K_T16_SUB * j + 2 * i + 1];
        const uint8_t *q = tile + KQ_Q6K_T16_QS + KQ_Q6K_T16_SUB * j;
        uint32_t a, b;
        memcpy(&a, q + 256 + 4 * i, 4);
        memcpy(&b, q + 320 + 4 * i, 4);
        const int h = j / 4, g = j % 4;
        uint8_t *ql = out + 64 * h + 32 * (g & 1), *qh = out + KQ_Q6_K_QH + 32 * h;
        for (int e = 0; e < 32; e++) {
            const int byte = q[64 * (e % 16 / 4) + 4 * i + e % 4];
            const uint32_t plane = e < 16 ? a : b;
            const int u = (e < 16 ? byte & 15 : byte >> 4) | (int)((plane >> (8 * (e % 4) + 2 * (e % 16 / 4))) & 3) << 4;
            ql[e] |= (uint8_t)((u & 15) << (g < 2 ? 0 : 4));
            qh[e] |= (uint8_t)((u >> 4) << (2 * g));
        }
    }
}

/* Bytes of a K-quant tile16 super-block (16 rows), and one row's part to / from ggml's block. */
static inline ptrdiff_t kq_tile_bytes(int wt) {
    return wt == SLM_WTYPE_Q4_K ? KQ_Q4K_TILE : wt == SLM_WTYPE_Q5_K ? KQ_Q5K_TILE : KQ_Q6K_TILE;
}
static inline void kq_to_tile16(int wt, const uint8_t *src, uint8_t *tile, int i) {
    if (wt == SLM_WTYPE_Q6_K) kq_q6k_to_tile16(src, tile, i);
    else kq_q45k_to_tile16(wt == SLM_WTYPE_Q5_K, src, tile, i);
}
static inline void kq_from_tile16(int wt, const uint8_t *tile, int i, uint8_t *out) {
    if (wt == SLM_WTYPE_Q6_K) kq_q6k_from_tile16(tile, i, out);
    else kq_q45k_from_tile16(wt == SLM_WTYPE_Q5_K, tile, i, out);
}

/* slm_matmul_tile16 for Q4_K / Q5_K / Q6_K (wt) on paths without a kernel of their own: each row's
 * blocks restored from the tile, then the portable loop's chains. */
void slm_kq_tile16_portable(int wt, const void *w, ptrdiff_t row_bytes, ptrdiff_t rows, ptrdiff_t r0, ptrdiff_t r1,
                            const slm_q8_acts *x, float *y, ptrdiff_t ys);

/* The portable loop (kquants.c): the contract written out, the fallback of paths without one. */
void slm_kq_portable(int wt, const void *w, ptrdiff_t row_bytes, ptrdiff_t r0, ptrdiff_t r1, const slm_q8_acts *x,
                     float *y, ptrdiff_t ys);

#endif
