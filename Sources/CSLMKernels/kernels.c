/* Dispatch and the portable C path (the C twin of ReferenceKernels). */
#include "internal.h"
#include "kquants.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

/* ---- portable path: scalar, written exactly like the contract ---- */

static SLM_ALWAYS_INLINE void portable_matmul(int type, const void *w, ptrdiff_t row_bytes, ptrdiff_t r0, ptrdiff_t r1,
                                              const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    const ptrdiff_t nb = x->cols / SLM_QK;
    const int bb = slm_block_bytes(type), qo = slm_quant_offset(type);
    for (ptrdiff_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w + r * row_bytes;
        for (ptrdiff_t t = 0; t < x->tokens; t++) {
            const int8_t *xq = x->qs + t * x->cols;
            float acc = 0.0f, accm = 0.0f;
            for (ptrdiff_t b = 0; b < nb; b++) {
                const uint8_t *blk = row + b * bb;
                const int8_t *xb = xq + b * SLM_QK;
                int32_t sumi = 0;
                if (type == SLM_T_Q8_0) {
                    for (int j = 0; j < 32; j++) sumi += (int32_t)(int8_t)blk[qo + j] * xb[j];
                } else {
                    const int bias = type == SLM_T_Q4_0 ? 8 : 0;
                    for (int j = 0; j < 16; j++) {
                        sumi += ((int32_t)(blk[qo + j] & 0x0f) - bias) * xb[j];
                        sumi += ((int32_t)(blk[qo + j] >> 4) - bias) * xb[j + 16];
                    }
                }
                const float dd = slm_f16_to_f32(slm_load_u16(blk)) * x->d[t * nb + b];
                acc = fmaf(dd, (float)sumi, acc);
                if (type == SLM_T_Q4_1)
                    accm = fmaf(slm_f16_to_f32(slm_load_u16(blk + 2)), x->s[t * nb + b], accm);
            }
            /* Q4_0/Q8_0 return acc itself: adding a zero accm would turn -0 into +0. */
            y[t * ys + r] = type == SLM_T_Q4_1 ? acc + accm : acc;
        }
    }
}

static void portable_q4_1(const void *w, ptrdiff_t rb, ptrdiff_t r0, ptrdiff_t r1, const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    portable_matmul(SLM_T_Q4_1, w, rb, r0, r1, x, y, ys);
}
static void portable_q4_0(const void *w, ptrdiff_t rb, ptrdiff_t r0, ptrdiff_t r1, const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    portable_matmul(SLM_T_Q4_0, w, rb, r0, r1, x, y, ys);
}
static void portable_q8_0(const void *w, ptrdiff_t rb, ptrdiff_t r0, ptrdiff_t r1, const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    portable_matmul(SLM_T_Q8_0, w, rb, r0, r1, x, y, ys);
}

static float portable_dot_f16(const float *q, const uint16_t *k, ptrdiff_t n) {
    float acc = 0.0f;
    for (ptrdiff_t i = 0; i < n; i++) acc = fmaf(q[i], slm_f16_to_f32(k[i]), acc);
    return acc;
}
static void portable_axpy_f16(float a, const uint16_t *v, float *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) y[i] = fmaf(a, slm_f16_to_f32(v[i]), y[i]);
}
static void portable_to_f16(const float *x, uint16_t *out, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) out[i] = slm_f32_to_f16_scalar(x[i]);
}

static void portable_scale_round_f16(float *y, float a, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) y[i] = slm_f16_to_f32(slm_f32_to_f16_scalar(y[i] * a));
}
static void portable_mad_round_f16(float a, const uint16_t *v, float *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) y[i] = slm_f16_to_f32(slm_f32_to_f16_scalar(fmaf(slm_f16_to_f32(v[i]), a, y[i])));
}

/* The definition (twin of Q8Activations.quantizeRow). rintf rounds to nearest even in the
 * default rounding mode; |x * id| <= 127 (+ rounding), so the int8 conversion is exact. */
static void portable_quantize_q8(const float *x, ptrdiff_t cols, int8_t *qs, float *d, float *s, int32_t *isum) {
    for (ptrdiff_t b = 0; b < cols / SLM_QK; b++) {
        const float *xb = x + b * SLM_QK;
        float amax = 0.0f;
        for (int j = 0; j < SLM_QK; j++) { const float a = fabsf(xb[j]); if (a > amax) amax = a; }
        const float dd = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < SLM_QK; j++) {
            const int8_t q = (int8_t)rintf(xb[j] * id);
            qs[b * SLM_QK + j] = q;
            sum += q;
        }
        d[b] = slm_f16_to_f32(slm_f32_to_f16_scalar(dd));
        s[b] = slm_f16_to_f32(slm_f32_to_f16_scalar(dd * (float)sum));
        isum[b] = sum;
    }
}

/* ---- tile16 layout: repacking and the scalar kernel (any path without its own) ---- */

/* Where row r's block b lives: its scales/quants either in the tile (tile16) or in place. */
typedef struct { const uint8_t *blk; int i; } tile16_ref;  /* i = row in tile, or -1: row layout */

static SLM_ALWAYS_INLINE tile16_ref tile16_block(int type, const uint8_t *w, ptrdiff_t row_bytes, ptrdiff_t rows,
                                                 ptrdiff_t r, ptrdiff_t b) {
    const int bb = slm_block_bytes(type);
    tile16_ref ref;
    if (r < rows / SLM_TILE * SLM_TILE) {
        ref.blk = w + (r / SLM_TILE) * SLM_TILE * row_bytes + b * SLM_TILE * bb;
        ref.i = (int)(r % SLM_TILE);
    } else {
        ref.blk = w + r * row_bytes + b * bb;
        ref.i = -1;
    }
    return ref;
}
static SLM_ALWAYS_INLINE uint16_t tile16_d(tile16_ref ref) {
    return slm_load_u16(ref.blk + (ref.i < 0 ? 0 : 2 * ref.i));
}
static SLM_ALWAYS_INLINE uint16_t tile16_m(tile16_ref ref) {
    return slm_load_u16(ref.blk + (ref.i < 0 ? 2 : 32 + 2 * ref.i));
}
/* A Q5 block's qh in ggml's bit order, from either layout. */
static SLM_ALWAYS_INLINE uint32_t tile16_qh(int type, tile16_ref ref) {
    if (ref.i < 0) return slm_load_u32(ref.blk + slm_qh_offset(type));
    return slm_q5_qh_from_tile16(slm_load_u32(ref.blk + slm_tile16_qh(type) + 4 * ref.i));
}
static SLM_ALWAYS_INLINE uint8_t tile16_q(int type, tile16_ref ref, int q) {
    return ref.blk[ref.i < 0 ? slm_quant_offset(type) + q : slm_tile16_qbyte(type, ref.i, q)];
}

/* -1 for a type without a tile16 layout (the public entry points then do nothing). */
static int internal_type(int wtype) {
    switch (wtype) {
    case SLM_WTYPE_Q4_1: return SLM_T_Q4_1;
    case SLM_WTYPE_Q4_0: return SLM_T_Q4_0;
    case SLM_WTYPE_Q8_0: return SLM_T_Q8_0;
    case SLM_WTYPE_Q5_0: return SLM_T_Q5_0;
    case SLM_WTYPE_Q5_1: return SLM_T_Q5_1;
    case SLM_WTYPE_Q4_K: return SLM_T_Q4_K;
    case SLM_WTYPE_Q6_K: return SLM_T_Q6_K;
    case SLM_WTYPE_Q5_K: return SLM_T_Q5_K;
    default: return -1;
    }
}

void slm_unpack_row_tile16(int wtype, const void *w, ptrdiff_t row_bytes, ptrdiff_t rows, ptrdiff_t r, void *out) {
    const int type = internal_type(wtype);
    if (type < 0) return;
    if (slm_is_ktile(type)) {
        const uint8_t *tile = (const uint8_t *)w + r / SLM_TILE * SLM_TILE * row_bytes;
        const int bb = slm_block_bytes(type);
        for (ptrdiff_t b = 0; b < row_bytes / bb; b++) {
            uint8_t *ob = (uint8_t *)out + b * bb;
            if (r < rows / SLM_TILE * SLM_TILE) kq_from_tile16(wtype, tile + b * kq_tile_bytes(wtype), (int)(r % SLM_TILE), ob);
            else memcpy(ob, (const uint8_t *)w + r * row_bytes + b * bb, (size_t)bb);
        }
        return;
    }
    const int bb = slm_block_bytes(type), qo = slm_quant_offset(type);
    uint8_t *o = (uint8_t *)out;
    for (ptrdiff_t b = 0; b < row_bytes / bb; b++) {
        const tile16_ref ref = tile16_block(type, (const uint8_t *)w, row_bytes, rows, r, b);
        uint8_t *ob = o + b * bb;
        const uint16_t d = tile16_d(ref);
        memcpy(ob, &d, 2);
        if (slm_has_m(type)) { const uint16_t m = tile16_m(ref); memcpy(ob + 2, &m, 2); }
        if (slm_is_q5(type)) { const uint32_t qh = tile16_qh(type, ref); memcpy(ob + slm_qh_offset(type), &qh, 4); }
        for (int q = 0; q < bb - qo; q++) ob[qo + q] = tile16_q(type, ref, q);
    }
}

void slm_repack_tile16(int wtype, const void *src, void *dst, ptrdiff_t row_bytes, ptrdiff_t rows) {
    const int type = internal_type(wtype);
    if (type < 0) return;
    const int bb = slm_block_bytes(type), qo = slm_quant_offset(type);
    const uint8_t *s = (const uint8_t *)src;
    uint8_t *d = (uint8_t *)dst;
    const ptrdiff_t full = rows / SLM_TILE * SLM_TILE;
    for (ptrdiff_t r = 0; r < full && slm_is_ktile(type); r++)
        for (ptrdiff_t b = 0; b < row_bytes / bb; b++)
            kq_to_tile16(wtype, s + r * row_bytes + b * bb, d + r / SLM_TILE * SLM_TILE * row_bytes + b * kq_tile_bytes(wtype),
                         (int)(r % SLM_TILE));
    for (ptrdiff_t r = 0; r < full && !slm_is_ktile(type); r++) {
        const int i = (int)(r % SLM_TILE);
        for (ptrdiff_t b = 0; b < row_bytes / bb; b++) {
            const uint8_t *sb = s + r * row_bytes + b * bb;
            uint8_t *tb = d + (r / SLM_TILE) * SLM_TILE * row_bytes + b * SLM_TILE * bb;
            memcpy(tb + 2 * i, sb, 2);
            if (slm_has_m(type)) memcpy(tb + 32 + 2 * i, sb + 2, 2);
            if (slm_is_q5(type)) {
                const uint32_t p = slm_q5_qh_to_tile16(slm_load_u32(sb + slm_qh_offset(type)));
                memcpy(tb + slm_tile16_qh(type) + 4 * i, &p, 4);
            }
            for (int q = 0; q < bb - qo; q++) tb[slm_tile16_qbyte(type, i, q)] = sb[qo + q];
        }
    }
    memcpy(d + full * row_bytes, s + full * row_bytes, (size_t)((rows - full) * row_bytes));
}

/* portable_matmul (Q5: slm_kq_portable) reading through the tile16 addressing: the same
 * scalar chain per row. */
static void portable_tile16(int type, const void *w, ptrdiff_t row_bytes, ptrdiff_t rows, ptrdiff_t r0, ptrdiff_t r1,
                            const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    const ptrdiff_t nb = x->cols / SLM_QK;
    for (ptrdiff_t r = r0; r < r1; r++) {
        for (ptrdiff_t t = 0; t < x->tokens; t++) {
            const int8_t *xq = x->qs + t * x->cols;
            float acc = 0.0f, accm = 0.0f;
            for (ptrdiff_t b = 0; b < nb; b++) {
                const tile16_ref ref = tile16_block(type, (const uint8_t *)w, row_bytes, rows, r, b);
                const int8_t *xb = xq + b * SLM_QK;
                int32_t sumi = 0;
                if (type == SLM_T_Q8_0) {
                    for (int j = 0; j < 32; j++) sumi += (int32_t)(int8_t)tile16_q(type, ref, j) * xb[j];
                } else if (slm_is_q5(type)) {  /* as kq_decode: (nibble | qh bit << 4) - 16 for Q5_0 */
                    const uint32_t qh = tile16_qh(type, ref);
                    const int bias = type == SLM_T_Q5_0 ? 16 : 0;
                    for (int j = 0; j < 16; j++) {
                        const uint8_t q = tile16_q(type, ref, j);
                        sumi += ((int32_t)((q & 0x0f) | ((qh >> j) & 1u) << 4) - bias) * xb[j];
                        sumi += ((int32_t)((q >> 4) | ((qh >> (j + 16)) & 1u) << 4) - bias) * xb[j + 16];
                    }
                } else {
                    const int bias = type == SLM_T_Q4_0 ? 8 : 0;
                    for (int j = 0; j < 16; j++) {
                        const uint8_t q = tile16_q(type, ref, j);
                        sumi += ((int32_t)(q & 0x0f) - bias) * xb[j];
                        sumi += ((int32_t)(q >> 4) - bias) * xb[j + 16];
                    }
                }
                const float dd = slm_f16_to_f32(tile16_d(ref)) * x->d[t * nb + b];
                acc = fmaf(dd, (float)sumi, acc);
                if (slm_has_m(type)) accm = fmaf(slm_f16_to_f32(tile16_m(ref)), x->s[t * nb + b], accm);
            }
            y[t * ys + r] = slm_has_m(type) ? acc + accm : acc;
        }
    }
}

static void portable_attn_f16(const float *q, const uint16_t *k, const uint16_t *v, ptrdiff_t stride, ptrdiff_t n,
                              ptrdiff_t d, float scale, float *out) {
    slm_attn_f16_generic(&slm_impl_portable, q, k, v, stride, n, d, scale, out);
}

static void portable_silu_mul(float *g, const float *u, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) g[i] = slm_silu_mul1(g[i], u[i]);
}

/* The scalar path reads rows a little faster than tiles (no address arithmetic per byte). */
const slm_impl slm_impl_portable = {
    .id = SLM_PATH_PORTABLE, .name = "portable-c",
    .q4_1 = portable_q4_1, .q4_0 = portable_q4_0, .q8_0 = portable_q8_0,
    .dot_f16 = portable_dot_f16, .axpy_f16 = portable_axpy_f16, .to_f16 = portable_to_f16,
    .scale_round_f16 = portable_scale_round_f16, .mad_round_f16 = portable_mad_round_f16,
    .quantize_q8 = portable_quantize_q8, .attn_f16 = portable_attn_f16, .silu_mul = portable_silu_mul,
    .matmul_tile16 = portable_tile16, .layout = SLM_LAYOUT_ROWS, .token_tile = 0,
};

/* ---- dispatch ---- */

static const slm_impl *impl_for(int path) {
    switch (path) {
    case SLM_PATH_PORTABLE: return &slm_impl_portable;
#if defined(__x86_64__)
    case SLM_PATH_AVX2:
        __builtin_cpu_init();  /* may run before the runtime's own constructor */
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
            return &slm_impl_avx2;
        return NULL;
    case SLM_PATH_AVX512VNNI:
        if (impl_for(SLM_PATH_AVX2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
            return &slm_impl_avx512vnni;
        return NULL;
#endif
#if defined(__aarch64__)
    case SLM_PATH_NEON: return &slm_impl_neon;  /* Advanced SIMD is mandatory on AArch64 */
    case SLM_PATH_NEON_DOTPROD:
#if defined(__linux__)
        if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) return &slm_impl_neon_dotprod;
#elif defined(__APPLE__)
        return &slm_impl_neon_dotprod;  /* every Apple arm64 core has it */
#endif
        return NULL;
#endif
    default: return NULL;
    }
}

static const slm_impl *best_impl(void) {
    static const int order[] = {SLM_PATH_AVX512VNNI, SLM_PATH_AVX2, SLM_PATH_NEON_DOTPROD, SLM_PATH_NEON};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const slm_impl *p = impl_for(order[i]);
        if (p) return p;
    }
    return &slm_impl_portable;
}

/* Chosen on first use; racing first callers compute the same answer, so the race is benign. */
static const slm_impl *active;

static SLM_ALWAYS_INLINE const slm_impl *get(void) {
    const slm_impl *p = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
    if (__builtin_expect(p == NULL, 0)) {
        p = best_impl();
        __atomic_store_n(&active, p, __ATOMIC_RELEASE);
    }
    return p;
}

const char *slm_kernels_path(void) { return get()->name; }
int slm_kernels_token_tile(void) { return get()->token_tile; }
int slm_kernels_supported(int path) { return path == SLM_PATH_AUTO || impl_for(path) != NULL; }

int slm_kernels_force(int path) {
    const slm_impl *p = path == SLM_PATH_AUTO ? best_impl() : impl_for(path);
    if (!p) return 0;
    __atomic_store_n(&active, p, __ATOMIC_RELEASE);
    return 1;
}

void slm_matmul_q4_1(const void *w, ptrdiff_t rb, ptrdiff_t r0, ptrdiff_t r1, const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    if (r0 < r1 && x->tokens > 0) get()->q4_1(w, rb, r0, r1, x, y, ys);
}
void slm_matmul_q4_0(const void *w, ptrdiff_t rb, ptrdiff_t r0, ptrdiff_t r1, const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    if (r0 < r1 && x->tokens > 0) get()->q4_0(w, rb, r0, r1, x, y, ys);
}
void slm_matmul_q8_0(const void *w, ptrdiff_t rb, ptrdiff_t r0, ptrdiff_t r1, const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    if (r0 < r1 && x->tokens > 0) get()->q8_0(w, rb, r0, r1, x, y, ys);
}
void slm_matmul_kq(int wt, const void *w, ptrdiff_t rb, ptrdiff_t r0, ptrdiff_t r1, const slm_q8_acts *x, float *y,
                   ptrdiff_t ys) {
    if (!(r0 < r1 && x->tokens > 0)) return;
    if (wt != SLM_WTYPE_Q5_0 && wt != SLM_WTYPE_Q5_1 && wt != SLM_WTYPE_Q4_K && wt != SLM_WTYPE_Q5_K &&
        wt != SLM_WTYPE_Q6_K) return;
    const slm_impl *p = get();
    (p->matmul_kq ? p->matmul_kq : slm_kq_portable)(wt, w, rb, r0, r1, x, y, ys);
}
int slm_preferred_layout(void) { return get()->layout; }
int slm_tile16_preferred(int wtype) {
    const slm_impl *p = get();
    const int type = internal_type(wtype);
    return type >= 0 && p->layout == SLM_LAYOUT_TILE16 && (!slm_is_ktile(type) || p->matmul_tile16_k);
}
void slm_matmul_tile16(int wtype, const void *w, ptrdiff_t rb, ptrdiff_t rows, ptrdiff_t r0, ptrdiff_t r1,
                       const slm_q8_acts *x, float *y, ptrdiff_t ys) {
    const int type = internal_type(wtype);
    if (type < 0 || !(r0 < r1 && x->tokens > 0)) return;
    const slm_impl *p = get();
    if (!slm_is_ktile(type)) p->matmul_tile16(type, w, rb, rows, r0, r1, x, y, ys);
    else if (p->matmul_tile16_k) p->matmul_tile16_k(type, w, rb, rows, r0, r1, x, y, ys);
    else slm_kq_tile16_portable(wtype, w, rb, rows, r0, r1, x, y, ys);
}
float slm_dot_f16(const float *q, const uint16_t *k, ptrdiff_t n) { return get()->dot_f16(q, k, n); }
void slm_axpy_f16(float a, const uint16_t *v, float *y, ptrdiff_t n) { get()->axpy_f16(a, v, y, n); }
void slm_f32_to_f16(const float *x, uint16_t *out, ptrdiff_t n) { get()->to_f16(x, out, n); }

void slm_round_f16(float *y, ptrdiff_t n) { get()->scale_round_f16(y, 1.0f, n); }

void slm_quantize_q8(const float *x, ptrdiff_t cols, int8_t *qs, float *d, float *s, int32_t *isum) {
    get()->quantize_q8(x, cols, qs, d, s, isum);
}

void slm_silu_mul(float *g, const float *u, ptrdiff_t n) { get()->silu_mul(g, u, n); }

/* Online softmax over positions 0..n-1, the value accumulator rounded to f16 after every
 * update: the numerics of llama.cpp's CPU flash attention with an f16 cache. Every path's
 * attn_f16 reproduces this loop bit for bit given its own dot_f16 (the portable one is it). */
void slm_attn_f16_generic(const slm_impl *p, const float *q, const uint16_t *k, const uint16_t *v, ptrdiff_t stride,
                          ptrdiff_t n, ptrdiff_t d, float scale, float *out) {
    for (ptrdiff_t i = 0; i < d; i++) out[i] = 0.0f;
    float m = -INFINITY, sum = 0.0f;
    for (ptrdiff_t j = 0; j < n; j++) {
        float s = p->dot_f16(q, k + j * stride, d) * scale;
        float ms = 1.0f, vs = 1.0f;
        if (s > m) {
            ms = expf(m - s);
            m = s;
            p->scale_round_f16(out, ms, d);
        } else {
            vs = expf(s - m);
        }
        p->mad_round_f16(vs, v + j * stride, out, d);
        sum = sum * ms + vs;
    }
    const float inv = 1.0f / sum;
    for (ptrdiff_t i = 0; i < d; i++) out[i] *= inv;
}

void slm_attn_f16(const float *q, const uint16_t *k, const uint16_t *v, ptrdiff_t stride, ptrdiff_t n,
                  ptrdiff_t d, float scale, float *out) {
    get()->attn_f16(q, k, v, stride, n, d, scale, out);
}
