/* Test driver for CSLMKernels, built without SwiftPM so it also runs on AArch64 (cross-
 * compiled, under qemu) — see scripts/test-arm-kernels.
 *
 *   driver          every supported path against the portable C path on random data:
 *                   quantized matmuls and the activation quantizer bit-exact, f16
 *                   axpy/convert/round bit-exact, f16 dot within 2 * n * 2^-24 * sum|q k|,
 *                   attention within a few f16 ulps of portable and bit-exact against the
 *                   generic loop over the path's own helpers. Prints "N passed, N failed".
 *   driver bench [path-id]   decode (1 token) GB/s of weights and prefill (128 tokens) GOP/s per
 *                   path. Meaningless under qemu.
 *   driver layer PATH-ID TOKENS   one layer's Q4_1 matmuls at the default model's shapes, row
 *                   layout against tile16, fastest of 15 timings. Meaningless under qemu.
 */
#define _POSIX_C_SOURCE 199309L
#include "slm_kernels.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Private to the library (internal.h): the path tables and the generic attention loop that
 * every fused head (attn_f16) must match bit for bit, given the path's own f16 helpers. */
struct slm_impl;
void slm_attn_f16_generic(const struct slm_impl *p, const float *q, const uint16_t *k, const uint16_t *v,
                          ptrdiff_t stride, ptrdiff_t n, ptrdiff_t d, float scale, float *out);
#if defined(__x86_64__)
extern const struct slm_impl slm_impl_avx2, slm_impl_avx512vnni;
/* AVX2's vector expf (the fused attention's softmax factors) and its table. */
void slm_avx2_expf(const float *x, float *y, ptrdiff_t n);
extern const uint64_t slm_exp2_32nds[32];
#endif
#if defined(__aarch64__)
extern const struct slm_impl slm_impl_neon, slm_impl_neon_dotprod;
#endif
static const struct slm_impl *impl_table(int path) {
    switch (path) {
#if defined(__x86_64__)
    case SLM_PATH_AVX2: return &slm_impl_avx2;
    case SLM_PATH_AVX512VNNI: return &slm_impl_avx512vnni;
#endif
#if defined(__aarch64__)
    case SLM_PATH_NEON: return &slm_impl_neon;
    case SLM_PATH_NEON_DOTPROD: return &slm_impl_neon_dotprod;
#endif
    default: return NULL;
    }
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {  /* xorshift64*: deterministic across hosts */
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545f4914f6cdd1dull) >> 32);
}
static float frand(void) { return (float)rnd() / 4294967296.0f * 2.0f - 1.0f; }

/* f32 -> f16 via the portable path of the library itself is what we test; here use a
 * slow independent rounding: pick the nearer of the two neighbouring f16 values. */
static float h2f(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 1024), e - 25);
    return (h & 0x8000) ? -v : v;
}
static uint16_t f2h_ref(float f) {
    if (isnan(f)) return 0x7e00;
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    float a = fabsf(f);
    if (a >= 65520.0f) return sign | 0x7c00;
    uint16_t lo = 0, hi = 0x7bff;  /* largest f16 <= a, by bisection over ordered bit patterns */
    while (lo < hi) { uint16_t mid = (uint16_t)((lo + hi + 1) / 2); if (h2f(mid) <= a) lo = mid; else hi = mid - 1; }
    if (h2f(lo) == a) return sign | lo;
    float dl = a - h2f(lo), du = h2f((uint16_t)(lo + 1)) - a;
    if (du < dl || (du == dl && (lo & 1))) lo++;
    return sign | lo;
}

/* Random f16 scale: mostly normal magnitudes, sometimes subnormal, zero, negative. */
static uint16_t rand_scale(void) {
    uint32_t k = rnd() % 16;
    uint16_t sign = (rnd() & 1) ? 0x8000 : 0;
    if (k == 0) return sign;                              /* +-0 */
    if (k == 1) return sign | (uint16_t)(1 + rnd() % 1023); /* subnormal */
    return sign | (uint16_t)(((1 + rnd() % 20) << 10) | (rnd() % 1024)); /* 2^-14 .. 2^6 */
}

/* The quantizer of Q8Activations.quantizeRow, re-stated in C. */
static void quantize_row(const float *x, int cols, int8_t *qs, float *d, float *s, int32_t *isum) {
    for (int b = 0; b < cols / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        float dd = amax / 127, id = amax != 0 ? 127 / amax : 0;
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) { float p = x[b * 32 + j] * id; qs[b * 32 + j] = (int8_t)nearbyintf(p); sum += qs[b * 32 + j]; }
        d[b] = h2f(f2h_ref(dd));
        float ds = dd * (float)sum;
        s[b] = h2f(f2h_ref(ds));
        isum[b] = sum;
    }
}

typedef void (*mm_fn)(const void *, ptrdiff_t, ptrdiff_t, ptrdiff_t, const slm_q8_acts *, float *, ptrdiff_t);
static const char *type_name[3] = {"Q4_1", "Q4_0", "Q8_0"};
static const int block_bytes[3] = {20, 18, 34};
static const mm_fn mm[3] = {slm_matmul_q4_1, slm_matmul_q4_0, slm_matmul_q8_0};
static const int wtype_id[3] = {SLM_WTYPE_Q4_1, SLM_WTYPE_Q4_0, SLM_WTYPE_Q8_0};

static void fill_weights(int type, uint8_t *w, ptrdiff_t rows, ptrdiff_t cols) {
    ptrdiff_t nb = rows * cols / 32;
    for (ptrdiff_t b = 0; b < nb; b++) {
        uint8_t *blk = w + b * block_bytes[type];
        for (int j = 0; j < block_bytes[type]; j++) blk[j] = (uint8_t)rnd();
        uint16_t d = rand_scale(), m = rand_scale();
        memcpy(blk, &d, 2);
        if (type == 0) memcpy(blk + 2, &m, 2);
    }
}

/* K-quants and 5-bit types (slm_matmul_kq): random bytes with random f16 d (and m / dmin). */
static const struct { int wtype, elems, bytes, d_off, m_off; const char *name; } kq_types[5] = {
    {SLM_WTYPE_Q5_0, 32, 22, 0, -1, "Q5_0"}, {SLM_WTYPE_Q5_1, 32, 24, 0, 2, "Q5_1"},
    {SLM_WTYPE_Q4_K, 256, 144, 0, 2, "Q4_K"}, {SLM_WTYPE_Q5_K, 256, 176, 0, 2, "Q5_K"},
    {SLM_WTYPE_Q6_K, 256, 210, 208, -1, "Q6_K"},
};
static void fill_kq(int k, uint8_t *w, ptrdiff_t rows, ptrdiff_t cols) {
    const ptrdiff_t nb = rows * cols / kq_types[k].elems;
    for (ptrdiff_t b = 0; b < nb; b++) {
        uint8_t *blk = w + b * kq_types[k].bytes;
        for (int j = 0; j < kq_types[k].bytes; j++) blk[j] = (uint8_t)rnd();
        uint16_t d = rand_scale(), m = rand_scale();
        memcpy(blk + kq_types[k].d_off, &d, 2);
        if (kq_types[k].m_off >= 0) memcpy(blk + kq_types[k].m_off, &m, 2);
    }
}

typedef struct { int8_t *qs; float *d, *s; int32_t *isum; slm_q8_acts a; } acts;
static void make_acts(acts *A, int tokens, int cols) {
    A->qs = malloc((size_t)tokens * cols);
    A->d = malloc(sizeof(float) * tokens * cols / 32);
    A->s = malloc(sizeof(float) * tokens * cols / 32);
    A->isum = malloc(sizeof(int32_t) * tokens * cols / 32);
    float *x = malloc(sizeof(float) * cols);
    for (int t = 0; t < tokens; t++) {
        float scale = ldexpf(1.0f, (int)(rnd() % 16) - 8);
        for (int i = 0; i < cols; i++) x[i] = frand() * scale;
        if (rnd() % 4 == 0) memset(x + (rnd() % (cols / 32)) * 32, 0, 32 * sizeof(float)); /* a zero block */
        quantize_row(x, cols, A->qs + (size_t)t * cols, A->d + t * cols / 32, A->s + t * cols / 32, A->isum + t * cols / 32);
    }
    free(x);
    A->a = (slm_q8_acts){A->qs, A->d, A->s, A->isum, cols, tokens};
}
static void free_acts(acts *A) { free(A->qs); free(A->d); free(A->s); free(A->isum); }

static int passed, failed;
static void check(int ok, const char *what) {
    if (ok) passed++;
    else { failed++; if (failed <= 20) printf("FAIL %s\n", what); }
}

#if defined(__x86_64__)
/* AVX2's expf against libm's (glibc's expf, which the portable attention and the Swift
 * reference call) bit for bit: every 127th float (all of them pass on glibc 2.36: checked
 * once, 2^32 inputs), the edges of its special cases and the table's derivation. */
static void test_avx2_expf(void) {
    static const float edges[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 88.0f, -88.0f,
        0x1.62e42ep6f, 0x1.62e430p6f, -0x1.9fe368p6f, -0x1.9fe36ap6f, -0x1.9fe366p6f,
        -0x1.9d1d9ep6f, -0x1.9d1da0p6f, -0x1.9d1d9cp6f, -87.33655f, -103.0f, 1e-30f, -1e-30f};
    enum { N = 4096 };
    static float x[N], y[N];
    int bad = 0;
    for (uint64_t b = 0; b < (1ull << 32); b += N * 127ull) {
        int n = 0;
        for (; n < N && b + (uint64_t)n * 127 < (1ull << 32); n++) {
            const uint32_t u = (uint32_t)(b + (uint64_t)n * 127);
            memcpy(&x[n], &u, 4);
        }
        if (b == 0) memcpy(x, edges, sizeof edges);
        slm_avx2_expf(x, y, n);
        for (int i = 0; i < n; i++) {
            const float e = expf(x[i]);
            if (memcmp(&e, &y[i], 4) != 0 && !(isnan(e) && isnan(y[i]))) {
                if (bad++ < 5) printf("avx2 expf(%a) = %a, libm %a\n", x[i], y[i], e);
            }
        }
    }
    check(bad == 0, "avx2 expf bit-exact against libm expf (every 127th float and the edges)");
    int table_ok = 1;
    for (int i = 0; i < 32; i++) {
        const double t = exp2(i / 32.0);
        uint64_t u;
        memcpy(&u, &t, 8);
        if (u - ((uint64_t)i << 47) != slm_exp2_32nds[i]) table_ok = 0;
    }
    check(table_ok, "avx2 expf table: 2^(i/32) minus i << 47");
}
#endif

static int test_paths(void) {
#if defined(__x86_64__)
    if (slm_kernels_supported(SLM_PATH_AVX2)) test_avx2_expf();
#endif
    static const int rows_set[] = {1, 3, 7, 8, 9, 13, 16, 17, 33, 48, 70};
    static const int cols_set[] = {32, 64, 96, 576};
    static const int tok_set[] = {1, 2, 3, 4, 5, 6, 7, 8, 17};
    for (int path = SLM_PATH_PORTABLE + 1; path < SLM_PATH_COUNT; path++) {
        if (!slm_kernels_supported(path)) continue;
        slm_kernels_force(path);
        const char *pname = slm_kernels_path();
        int before = failed;
        /* The token tile suggest caps its speculative rows at (Kernels.tokenTile). */
        check(slm_kernels_token_tile() == (path == SLM_PATH_AVX512VNNI ? 8 : 4), "token tile");
        for (int type = 0; type < 3; type++)
            for (size_t ri = 0; ri < sizeof rows_set / sizeof *rows_set; ri++)
                for (size_t ci = 0; ci < sizeof cols_set / sizeof *cols_set; ci++)
                    for (size_t ti = 0; ti < sizeof tok_set / sizeof *tok_set; ti++) {
                        int rows = rows_set[ri], cols = cols_set[ci], tokens = tok_set[ti];
                        ptrdiff_t rb = cols / 32 * block_bytes[type];
                        uint8_t *w = malloc((size_t)rows * rb);
                        fill_weights(type, w, rows, cols);
                        acts A;
                        make_acts(&A, tokens, cols);
                        if ((ri + ti) % 3 == 0) {
                            /* -128 activations, which only NaN input makes (the quantizer keeps
                             * |q| <= 127): AVX2's one-token Q8_0 tile takes its exact fallback. */
                            for (int t = 0; t < tokens; t++) {
                                const int b = (int)(rnd() % (cols / 32));
                                int8_t *q = A.qs + (size_t)t * cols + b * 32;
                                q[rnd() % 32] = -128;
                                q[rnd() % 32] = -128;
                                int32_t sum = 0;
                                for (int j = 0; j < 32; j++) sum += q[j];
                                A.isum[t * (cols / 32) + b] = sum;
                            }
                        }
                        ptrdiff_t r0 = rnd() % 3 == 0 ? (ptrdiff_t)(rnd() % rows) : 0;
                        ptrdiff_t r1 = r0 + 1 + (ptrdiff_t)(rnd() % (rows - r0));
                        if (rnd() % 2) r1 = rows;
                        ptrdiff_t ys = rows + 3;
                        size_t ny = (size_t)ys * tokens;
                        float *y0 = malloc(ny * 4), *y1 = malloc(ny * 4);
                        for (size_t i = 0; i < ny; i++) y0[i] = y1[i] = -12345.0f;  /* must stay untouched outside the range */
                        slm_kernels_force(SLM_PATH_PORTABLE);
                        mm[type](w, rb, r0, r1, &A.a, y0, ys);
                        slm_kernels_force(path);
                        mm[type](w, rb, r0, r1, &A.a, y1, ys);
                        char what[160];
                        snprintf(what, sizeof what, "%s %s rows %d [%ld,%ld) cols %d tokens %d", pname, type_name[type],
                                 rows, (long)r0, (long)r1, cols, tokens);
                        check(memcmp(y0, y1, ny * 4) == 0, what);
                        /* The same matrix repacked to tile16: this path and the scalar fallback. */
                        uint8_t *wt = malloc((size_t)rows * rb), *row = malloc((size_t)rb);
                        slm_repack_tile16(wtype_id[type], w, wt, rb, rows);
                        for (int k = 0; k < 2; k++) {
                            for (size_t i = 0; i < ny; i++) y1[i] = -12345.0f;
                            slm_kernels_force(k == 0 ? path : SLM_PATH_PORTABLE);
                            slm_matmul_tile16(wtype_id[type], wt, rb, rows, r0, r1, &A.a, y1, ys);
                            char tw[200];
                            snprintf(tw, sizeof tw, "tile16 (%s) %s", k == 0 ? pname : "portable", what);
                            check(memcmp(y0, y1, ny * 4) == 0, tw);
                        }
                        slm_kernels_force(path);
                        ptrdiff_t rr = (ptrdiff_t)(rnd() % rows);
                        slm_unpack_row_tile16(wtype_id[type], wt, rb, rows, rr, row);
                        check(memcmp(row, w + rr * rb, (size_t)rb) == 0, "tile16 unpack row");
                        free(wt); free(row);
                        free(y0); free(y1); free(w); free_acts(&A);
                    }
        /* tile16 row ranges that start and end inside tiles and inside 4-row groups, over
         * 3 whole tiles and a 5-row row-layout tail, for 1..5 tokens. Types 3 and 4 are
         * Q5_0 and Q5_1 (kq_types 0 and 1), against their row-layout slm_matmul_kq. */
        for (int type = 0; type < 5; type++) {
            static const int ranges[][2] = {{0, 53}, {5, 11}, {4, 8}, {0, 16}, {3, 45}, {16, 32}, {15, 17}, {47, 53},
                                            {50, 52}, {1, 2}, {30, 49}};
            enum { ROWS = 53, COLS = 96 };
            const int q5 = type >= 3, wtid = q5 ? kq_types[type - 3].wtype : wtype_id[type];
            const ptrdiff_t rb = COLS / 32 * (q5 ? kq_types[type - 3].bytes : block_bytes[type]);
            uint8_t *w = malloc((size_t)ROWS * rb), *wt = malloc((size_t)ROWS * rb);
            if (q5) fill_kq(type - 3, w, ROWS, COLS);
            else fill_weights(type, w, ROWS, COLS);
            slm_repack_tile16(wtid, w, wt, rb, ROWS);
            for (int tokens = 1; tokens <= 5; tokens++) {
                acts A;
                make_acts(&A, tokens, COLS);
                for (size_t k = 0; k < sizeof ranges / sizeof *ranges; k++) {
                    float y0[ROWS * 5], y1[ROWS * 5];
                    for (int i = 0; i < ROWS * 5; i++) y0[i] = y1[i] = -12345.0f;
                    slm_kernels_force(SLM_PATH_PORTABLE);
                    if (q5) slm_matmul_kq(wtid, w, rb, ranges[k][0], ranges[k][1], &A.a, y0, ROWS);
                    else mm[type](w, rb, ranges[k][0], ranges[k][1], &A.a, y0, ROWS);
                    slm_kernels_force(path);
                    slm_matmul_tile16(wtid, wt, rb, ROWS, ranges[k][0], ranges[k][1], &A.a, y1, ROWS);
                    char what[128];
                    snprintf(what, sizeof what, "tile16 (%s) %s rows [%d,%d) of %d, tokens %d", pname,
                             q5 ? kq_types[type - 3].name : type_name[type],
                             ranges[k][0], ranges[k][1], ROWS, tokens);
                    check(memcmp(y0, y1, sizeof y0) == 0, what);
                }
                free_acts(&A);
            }
            free(w); free(wt);
        }
        /* K-quants and 5-bit types: bit-exact against portable over odd row counts and
         * ranges, 1..17 tokens, 1..3 super-blocks (K) or 1..18 blocks per row, extreme
         * activations (all -128 / 127 blocks) included; Q5_0/Q5_1 also through tile16. */
        for (int k = 0; k < 5; k++) {
            static const int krows[] = {1, 3, 7, 8, 9, 13, 16, 17, 33};
            static const int ktok[] = {1, 2, 3, 4, 5, 8, 17};
            const int kcols[3] = {kq_types[k].elems == 256 ? 256 : 32, kq_types[k].elems == 256 ? 512 : 96,
                                  kq_types[k].elems == 256 ? 768 : 576};
            for (size_t ri = 0; ri < sizeof krows / sizeof *krows; ri++)
                for (int ci = 0; ci < 3; ci++)
                    for (size_t ti = 0; ti < sizeof ktok / sizeof *ktok; ti++) {
                        const int rows = krows[ri], cols = kcols[ci], tokens = ktok[ti];
                        const ptrdiff_t rb = cols / kq_types[k].elems * kq_types[k].bytes;
                        uint8_t *w = malloc((size_t)rows * rb);
                        fill_kq(k, w, rows, cols);
                        acts A;
                        make_acts(&A, tokens, cols);
                        if (ti == 2) {  /* saturated blocks: every product at its extreme */
                            memset(A.qs, 0x80, 32);
                            memset(A.qs + (tokens - 1) * cols + cols - 32, 127, 32);
                            A.isum[0] = -128 * 32;
                            A.isum[tokens * cols / 32 - 1] = 127 * 32;
                        }
                        ptrdiff_t r0 = rnd() % 3 == 0 ? (ptrdiff_t)(rnd() % rows) : 0;
                        ptrdiff_t r1 = r0 + 1 + (ptrdiff_t)(rnd() % (rows - r0));
                        if (rnd() % 2) r1 = rows;
                        const ptrdiff_t ys = rows + 3;
                        const size_t ny = (size_t)ys * tokens;
                        float *y0 = malloc(ny * 4), *y1 = malloc(ny * 4);
                        for (size_t i = 0; i < ny; i++) y0[i] = y1[i] = -12345.0f;
                        slm_kernels_force(SLM_PATH_PORTABLE);
                        slm_matmul_kq(kq_types[k].wtype, w, rb, r0, r1, &A.a, y0, ys);
                        slm_kernels_force(path);
                        slm_matmul_kq(kq_types[k].wtype, w, rb, r0, r1, &A.a, y1, ys);
                        char what[160];
                        snprintf(what, sizeof what, "%s %s rows %d [%ld,%ld) cols %d tokens %d", pname,
                                 kq_types[k].name, rows, (long)r0, (long)r1, cols, tokens);
                        check(memcmp(y0, y1, ny * 4) == 0, what);
                        {
                            /* Every type repacked to tile16: this path and the scalar fallback, and the inverse. */
                            uint8_t *wt = malloc((size_t)rows * rb), *row = malloc((size_t)rb);
                            slm_repack_tile16(kq_types[k].wtype, w, wt, rb, rows);
                            for (int p2 = 0; p2 < 2; p2++) {
                                for (size_t i = 0; i < ny; i++) y1[i] = -12345.0f;
                                slm_kernels_force(p2 == 0 ? path : SLM_PATH_PORTABLE);
                                slm_matmul_tile16(kq_types[k].wtype, wt, rb, rows, r0, r1, &A.a, y1, ys);
                                char tw[200];
                                snprintf(tw, sizeof tw, "tile16 (%s) %s", p2 == 0 ? pname : "portable", what);
                                check(memcmp(y0, y1, ny * 4) == 0, tw);
                            }
                            slm_kernels_force(path);
                            for (ptrdiff_t rr = 0; rr < rows; rr++) {
                                slm_unpack_row_tile16(kq_types[k].wtype, wt, rb, rows, rr, row);
                                check(memcmp(row, w + rr * rb, (size_t)rb) == 0, "tile16 K/Q5 unpack row");
                            }
                            free(wt); free(row);
                        }
                        free(y0); free(y1); free(w); free_acts(&A);
                    }
        }
        /* f16 helpers */
        for (int rep = 0; rep < 200; rep++) {
            int n = 1 + (int)(rnd() % 150);
            float q[160], y0[160], y1[160], xs[160];
            uint16_t k[160], h0[160], h1[160];
            for (int i = 0; i < n; i++) {
                k[i] = rand_scale();
                q[i] = h2f(f2h_ref(frand() * 4));
                y0[i] = y1[i] = frand();
                uint32_t bits = rnd();
                if (rep % 2) bits = (bits & 0x80000000u) | (0x30000000u + bits % 0x18000000u); /* around f16 range */
                memcpy(&xs[i], &bits, 4);
                if (isnan(xs[i])) xs[i] = 1.0f;
            }
            float a = frand();
            slm_kernels_force(SLM_PATH_PORTABLE);
            float d0 = slm_dot_f16(q, k, n);
            slm_axpy_f16(a, k, y0, n);
            slm_f32_to_f16(xs, h0, n);
            slm_kernels_force(path);
            float d1 = slm_dot_f16(q, k, n);
            slm_axpy_f16(a, k, y1, n);
            slm_f32_to_f16(xs, h1, n);
            double mag = 0;
            for (int i = 0; i < n; i++) mag += fabs((double)q[i] * h2f(k[i]));
            char what[96];
            snprintf(what, sizeof what, "%s dot_f16 n %d: %g vs %g", pname, n, d0, d1);
            check(fabs((double)d0 - d1) <= 2.0 * n * 0x1p-24 * mag, what);
            snprintf(what, sizeof what, "%s axpy_f16 n %d", pname, n);
            check(memcmp(y0, y1, n * 4) == 0, what);
            snprintf(what, sizeof what, "%s f32_to_f16 n %d", pname, n);
            check(memcmp(h0, h1, n * 2) == 0, what);
            int conv_ok = 1;
            for (int i = 0; i < n; i++) conv_ok &= h0[i] == f2h_ref(xs[i]);
            snprintf(what, sizeof what, "portable f32_to_f16 vs bisection n %d", n);
            check(conv_ok, what);
            /* In-place rounding to f16 values: exact on every path. */
            float r0[160], r1[160];
            memcpy(r0, xs, n * 4); memcpy(r1, xs, n * 4);
            slm_kernels_force(SLM_PATH_PORTABLE);
            slm_round_f16(r0, n);
            slm_kernels_force(path);
            slm_round_f16(r1, n);
            int round_ok = memcmp(r0, r1, n * 4) == 0;
            for (int i = 0; i < n; i++) {
                /* (gcc 12 for aarch64 crashes vectorising this as a &= reduction) */
                if (!(r0[i] == h2f(f2h_ref(xs[i])) || isinf(r0[i]))) round_ok = 0;
            }
            snprintf(what, sizeof what, "%s round_f16 n %d", pname, n);
            check(round_ok, what);
        }
        /* One attention head over 1..300 cached rows (row stride 3 heads of 64), then the chunk
         * boundaries of the fused heads (64 positions), other head sizes and strides, and score
         * patterns that take every branch of the online softmax: all equal (q = 0), a new
         * maximum at every step, and scores so far apart that exp underflows to 0. */
        for (int rep = 0; rep < 76; rep++) {
            static const int edge_rows[] = {1, 2, 3, 63, 64, 65, 127, 128, 129, 191, 192, 193};
            static const int dims[] = {64, 64, 64, 32, 96, 128, 80, 8};
            const int nedge = (int)(sizeof edge_rows / sizeof *edge_rows);
            const int pattern = rep < 40 ? 0 : (rep - 40) % 4;  /* 0 random, 1 q = 0, 2 rising, 3 far apart */
            const int D = rep < 40 ? 64 : dims[(rep - 40) % 8];
            const int rows = rep < 40 ? 1 + (int)(rnd() % 300) : edge_rows[(rep - 40) % nedge];
            const int stride = rep % 3 == 0 ? D : rep % 3 == 1 ? 3 * D : 3 * D + 8, off = stride > D ? D : 0;
            uint16_t *kc = malloc((size_t)rows * stride * 2), *vc = malloc((size_t)rows * stride * 2);
            for (int i = 0; i < rows * stride; i++) { kc[i] = f2h_ref(frand() * 2); vc[i] = f2h_ref(frand() * 2); }
            float q[128], o0[128], o1[128], o2[128];
            for (int i = 0; i < D; i++) q[i] = pattern == 1 ? 0.0f : h2f(f2h_ref(frand() * 3));
            if (pattern == 2 || pattern == 3)  /* key j = q * c_j: scores rise with j, or jump by ~+-2^10 */
                for (int j = 0; j < rows; j++) {
                    const float c = pattern == 2 ? (float)j / 16.0f : (j % 2 ? 1.0f : -1.0f) * 1024.0f / (float)(j + 1);
                    for (int i = 0; i < D; i++) kc[j * stride + off + i] = f2h_ref(q[i] * c);
                }
            slm_kernels_force(SLM_PATH_PORTABLE);
            slm_attn_f16(q, kc + off, vc + off, stride, rows, D, 0.125f, o0);
            slm_kernels_force(path);
            slm_attn_f16(q, kc + off, vc + off, stride, rows, D, 0.125f, o1);
            /* Scores differ only by the dot's lane order; outputs are averages of values of
             * magnitude <= 2 accumulated at f16 precision, so a few f16 ulps at most. */
            double worst = 0;
            for (int i = 0; i < D; i++) {
                double diff = fabs((double)o0[i] - o1[i]);
                if (diff > worst || isnan(diff)) worst = isnan(diff) ? INFINITY : diff;
            }
            char what[128];
            snprintf(what, sizeof what, "%s attn_f16 d %d rows %d stride %d pattern %d: max diff %g", pname, D, rows,
                     stride, pattern, worst);
            check(worst <= 1e-2, what);
            /* The path's head (fused where it has one) is bit-identical to the generic loop
             * over the same path's f16 helpers. */
            slm_attn_f16_generic(impl_table(path), q, kc + off, vc + off, stride, rows, D, 0.125f, o2);
            snprintf(what, sizeof what, "%s attn_f16 d %d rows %d stride %d pattern %d bit-exact vs generic", pname,
                     D, rows, stride, pattern);
            check(memcmp(o1, o2, (size_t)D * sizeof(float)) == 0, what);
            free(kc); free(vc);
        }
        /* Activation quantizer: bit-exact against the portable definition, including zero
         * blocks, exact .5 ties after scaling (a block whose amax is 127: the scale is 1),
         * subnormal, huge and negative-zero inputs, blocks of mixed magnitudes, row lengths
         * of 1..48 blocks and unaligned input and output pointers. */
        for (int rep = 0; rep < 120; rep++) {
            enum { MAXCOLS = 1536 };
            static const int col_set[] = {1536, 576, 32, 64, 96, 160, 224, 1504};
            static float xbuf[MAXCOLS + 1];
            static int8_t q0[MAXCOLS + 1], q1[MAXCOLS + 1];
            const int cols = rep < 60 ? MAXCOLS : col_set[rep % 8], nb = cols / 32;
            const int xoff = rep % 4 == 3, qoff = rep % 3 == 2;  /* odd addresses on some reps */
            float *xq = xbuf + xoff;
            for (int i = 0; i < cols; i++) {
                const int kind = (int)(rnd() % 10);
                xq[i] = kind == 0 ? 0.0f : kind == 1 ? (float)((int)(rnd() % 255) - 127) * 0.5f
                      : kind == 2 ? ((rnd() & 1) ? -0.0f : 0x1p-140f * (float)(rnd() % 1000))
                      : kind == 3 && rep % 7 == 0 ? frand() * 1e30f
                      : frand() * ldexpf(1.0f, (int)(rnd() % 20) - 10);
            }
            if (rep % 5 == 0) for (int i = 0; i < 32; i++) xq[32 * (rep % nb) + i] = 0.0f;
            if (rep % 5 == 1) {  /* ties: amax 127, the rest k + 0.5 */
                const int b = (int)(rnd() % nb);
                for (int i = 0; i < 32; i++) xq[32 * b + i] = (float)((int)(rnd() % 254) - 127) + 0.5f;
                xq[32 * b + (int)(rnd() % 32)] = (rnd() & 1) ? 127.0f : -127.0f;
            }
            float d0[MAXCOLS / 32], d1[MAXCOLS / 32], s0[MAXCOLS / 32], s1[MAXCOLS / 32];
            int32_t i0[MAXCOLS / 32], i1[MAXCOLS / 32];
            slm_kernels_force(SLM_PATH_PORTABLE);
            slm_quantize_q8(xq, cols, q0 + qoff, d0, s0, i0);
            slm_kernels_force(path);
            slm_quantize_q8(xq, cols, q1 + qoff, d1, s1, i1);
            int ok = memcmp(q0 + qoff, q1 + qoff, (size_t)cols) == 0 && memcmp(d0, d1, nb * sizeof(float)) == 0 &&
                     memcmp(s0, s1, nb * sizeof(float)) == 0 && memcmp(i0, i1, nb * sizeof(int32_t)) == 0;
            for (int b = 0; b < nb; b++) {  /* isum is the exact sum of the stored values */
                int32_t t = 0;
                for (int j = 0; j < 32; j++) t += q0[qoff + b * 32 + j];
                ok &= t == i0[b];
            }
            /* and the portable quantizer is the definition (re-stated independently above) */
            static int8_t q2[MAXCOLS];
            float d2[MAXCOLS / 32], s2[MAXCOLS / 32];
            int32_t i2[MAXCOLS / 32];
            quantize_row(xq, cols, q2, d2, s2, i2);
            ok &= memcmp(q0 + qoff, q2, (size_t)cols) == 0 && memcmp(d0, d2, nb * sizeof(float)) == 0 &&
                  memcmp(s0, s2, nb * sizeof(float)) == 0 && memcmp(i0, i2, nb * sizeof(int32_t)) == 0;
            char what[96];
            snprintf(what, sizeof what, "%s quantize_q8 rep %d cols %d", pname, rep, cols);
            check(ok, what);
        }
        /* SwiGLU against the portable (scalar) form, the Swift reference's C twin: random
         * and special values, ranges starting anywhere (bodies and tails). */
        for (int rep = 0; rep < 40; rep++) {
            enum { N = 1543 };
            static const float special[] = {0.0f, -0.0f, 87.0f, -87.0f, 87.00001f, -87.00001f, 88.0f, -88.0f,
                                            88.00001f, -88.00001f, 1e30f, -1e30f, INFINITY, -INFINITY, NAN,
                                            0x1p-149f, 0x1p-126f, 3.4e38f, -3.4e38f, 0.3465736f, 1e-8f};
            static float g0[N], g1[N], g2[N], u[N];
            for (int i = 0; i < N; i++) {
                const int kind = (int)(rnd() % 4);
                uint32_t bits = rnd();
                float any;
                memcpy(&any, &bits, 4);
                g0[i] = kind == 0 ? special[rnd() % (sizeof special / sizeof *special)]
                      : kind == 1 ? frand() * 100.0f : kind == 2 ? frand() * 8.0f : any;
                u[i] = rep % 3 == 0 && i % 7 == 0 ? special[rnd() % (sizeof special / sizeof *special)] : frand() * 4.0f;
            }
            const int lo = rep % 8 == 0 ? 0 : (int)(rnd() % 40), n = rep % 5 == 0 ? (int)(rnd() % 17) : N - lo - (int)(rnd() % 9);
            memcpy(g1, g0, sizeof g0);
            memcpy(g2, g0, sizeof g0);
            slm_kernels_force(SLM_PATH_PORTABLE);
            slm_silu_mul(g1 + lo, u + lo, n);
            slm_kernels_force(path);
            slm_silu_mul(g2 + lo, u + lo, n);
            int ok = 1;
            for (int i = 0; i < N; i++) {
                uint32_t a, b;
                memcpy(&a, g1 + i, 4);
                memcpy(&b, g2 + i, 4);
                ok &= a == b || (g1[i] != g1[i] && g2[i] != g2[i]);
            }
            char what[96];
            snprintf(what, sizeof what, "%s silu_mul rep %d from %d n %d", pname, rep, lo, n);
            check(ok, what);
        }
        printf("path %-20s %s\n", pname, failed == before ? "ok" : "MISMATCH");
    }
    slm_kernels_force(SLM_PATH_AUTO);
    printf("auto path: %s\n", slm_kernels_path());
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}

static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec * 1e-9; }

/* Median of 7 timings of `reps` calls. */
static double time_mm(int type, const uint8_t *w, ptrdiff_t rb, int rows, const slm_q8_acts *x, float *y, int reps,
                      int tile16) {
    double best[7];
    for (int k = 0; k < 7; k++) {
        double t0 = now();
        for (int r = 0; r < reps; r++) {
            if (tile16) slm_matmul_tile16(wtype_id[type], w, rb, rows, 0, rows, x, y, rows);
            else mm[type](w, rb, 0, rows, x, y, rows);
        }
        best[k] = (now() - t0) / reps;
    }
    for (int i = 0; i < 7; i++) for (int j = i + 1; j < 7; j++) if (best[j] < best[i]) { double t = best[i]; best[i] = best[j]; best[j] = t; }
    return best[3];
}

static void bench(int only) {
    struct { int type, rows, cols, tokens; } cases[] = {
        {0, 576, 1536, 1}, {0, 1536, 576, 1}, {2, 49152, 576, 1}, {2, 1536, 576, 1}, {0, 49152, 576, 1}, {0, 1536, 576, 128}, {0, 576, 1536, 128},
    };
    for (int path = SLM_PATH_PORTABLE; path < SLM_PATH_COUNT; path++) {
        if (!slm_kernels_supported(path) || (only && path != only)) continue;
        slm_kernels_force(path);
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
            int type = cases[c].type, rows = cases[c].rows, cols = cases[c].cols, tokens = cases[c].tokens;
            ptrdiff_t rb = cols / 32 * block_bytes[type];
            uint8_t *w = malloc((size_t)rows * rb);
            fill_weights(type, w, rows, cols);
            /* Normal scales only: the tests' subnormal and zero scales would time the CPU's
             * denormal assists (many times slower on some x86 cores), not the kernels. */
            for (ptrdiff_t b = 0; b < (ptrdiff_t)rows * cols / 32; b++) {
                const uint16_t d = (uint16_t)(0x1800 | (rnd() & 0x3ff));
                memcpy(w + b * block_bytes[type], &d, 2);
                if (type == 0) memcpy(w + b * block_bytes[type] + 2, &d, 2);
            }
            acts A;
            make_acts(&A, tokens, cols);
            for (ptrdiff_t i = 0; i < (ptrdiff_t)tokens * cols / 32; i++) {
                A.d[i] = 0.01f + (float)(rnd() % 100) * 1e-4f;
                A.s[i] = A.d[i] * (float)A.isum[i];
            }
            float *y = malloc(sizeof(float) * rows * tokens);
            double bytes = (double)rows * rb, ops = 2.0 * rows * cols * tokens;
            int reps = (int)(2e7 / ops) + 1;
            if (path == SLM_PATH_PORTABLE) reps = reps / 8 + 1;
            for (int tiled = 0; tiled <= (slm_preferred_layout() == SLM_LAYOUT_TILE16); tiled++) {
                if (tiled) {  /* the same weights repacked (timing only; the tests check results) */
                    uint8_t *wt = malloc((size_t)rows * rb);
                    slm_repack_tile16(wtype_id[type], w, wt, rb, rows);
                    memcpy(w, wt, (size_t)rows * rb);
                    free(wt);
                }
                double t = time_mm(type, w, rb, rows, &A.a, y, reps, tiled);
                printf("%-20s %s%s %5dx%-5d tokens %3d: %8.1f us  %6.1f GB/s weights  %7.1f GOP/s\n", slm_kernels_path(),
                       type_name[type], tiled ? " tile16" : "", rows, cols, tokens, t * 1e6, bytes / t / 1e9, ops / t / 1e9);
            }
            free(w); free(y); free_acts(&A);
        }
    }
    /* K-quants and 5-bit types: FFN-down-like K matrices, Q5 on 576 columns (row layout and tile16). */
    struct { int k, rows, cols, tokens; } kcases[] = {
        {2, 576, 1536, 1}, {4, 576, 1536, 1}, {0, 1536, 576, 1}, {1, 1536, 576, 1}, {3, 576, 1536, 1},
        {2, 576, 1536, 128}, {3, 576, 1536, 128}, {4, 576, 1536, 128}, {0, 1536, 576, 128},
    };
    for (int path = SLM_PATH_PORTABLE; path < SLM_PATH_COUNT; path++) {
        if (!slm_kernels_supported(path) || (only && path != only)) continue;
        slm_kernels_force(path);
        for (size_t c = 0; c < sizeof kcases / sizeof *kcases; c++) {
            const int k = kcases[c].k, rows = kcases[c].rows, cols = kcases[c].cols, tokens = kcases[c].tokens;
            const ptrdiff_t rb = cols / kq_types[k].elems * kq_types[k].bytes;
            uint8_t *w = malloc((size_t)rows * rb);
            fill_kq(k, w, rows, cols);
            acts A;
            make_acts(&A, tokens, cols);
            float *y = malloc(sizeof(float) * rows * tokens);
            const double bytes = (double)rows * rb, ops = 2.0 * rows * cols * tokens;
            int reps = (int)(2e7 / ops) + 1;
            if (path == SLM_PATH_PORTABLE) reps = reps / 8 + 1;
            /* The row layout, then (Q5, Q4_K) the same weights repacked to tile16 on paths that prefer it. */
            for (int tiled = 0; tiled <= slm_tile16_preferred(kq_types[k].wtype); tiled++) {
                if (tiled) {
                    uint8_t *wt = malloc((size_t)rows * rb);
                    slm_repack_tile16(kq_types[k].wtype, w, wt, rb, rows);
                    memcpy(w, wt, (size_t)rows * rb);
                    free(wt);
                }
                double best[7];
                for (int i = 0; i < 7; i++) {
                    const double t0 = now();
                    for (int r = 0; r < reps; r++) {
                        if (tiled) slm_matmul_tile16(kq_types[k].wtype, w, rb, rows, 0, rows, &A.a, y, rows);
                        else slm_matmul_kq(kq_types[k].wtype, w, rb, 0, rows, &A.a, y, rows);
                    }
                    best[i] = (now() - t0) / reps;
                }
                for (int i = 0; i < 7; i++) for (int j = i + 1; j < 7; j++) if (best[j] < best[i]) { double t = best[i]; best[i] = best[j]; best[j] = t; }
                printf("%-20s %s%s %5dx%-5d tokens %3d: %8.1f us  %6.1f GB/s weights  %7.1f GOP/s\n", slm_kernels_path(),
                       kq_types[k].name, tiled ? " tile16" : "", rows, cols, tokens, best[3] * 1e6, bytes / best[3] / 1e9,
                       ops / best[3] / 1e9);
            }
            free(w); free(y); free_acts(&A);
        }
    }
    slm_kernels_force(SLM_PATH_AUTO);
}

/* One layer's seven Q4_1 matmuls of the default model (q, o: 576x576; k, v: 192x576; gate,
 * up: 1536x576; down: 576x1536) for `tokens` tokens on `path`, in the row layout and in
 * tile16: the fastest of 15 timings each, which is what survives a machine shared with
 * other jobs (a median there measures the other jobs). */
static void bench_layer(int path, int tokens) {
    static const struct { int rows, cols, n; } sh[] = {{576, 576, 2}, {192, 576, 2}, {1536, 576, 2}, {576, 1536, 1}};
    if (!slm_kernels_force(path)) { printf("path %d not supported here\n", path); return; }
    double total[2] = {0, 0};
    for (int tiled = 0; tiled < 2; tiled++)
        for (size_t k = 0; k < sizeof sh / sizeof *sh; k++) {
            const int rows = sh[k].rows, cols = sh[k].cols;
            const ptrdiff_t rb = cols / 32 * block_bytes[0];
            uint8_t *w = malloc((size_t)rows * rb), *wt = malloc((size_t)rows * rb);
            fill_weights(0, w, rows, cols);
            for (ptrdiff_t b = 0; b < (ptrdiff_t)rows * cols / 32; b++) {  /* normal scales, as in bench() */
                const uint16_t d = (uint16_t)(0x1800 | (rnd() & 0x3ff));
                memcpy(w + b * block_bytes[0], &d, 2);
                memcpy(w + b * block_bytes[0] + 2, &d, 2);
            }
            slm_repack_tile16(SLM_WTYPE_Q4_1, w, wt, rb, rows);
            acts A;
            make_acts(&A, tokens, cols);
            for (ptrdiff_t i = 0; i < (ptrdiff_t)tokens * cols / 32; i++) {
                A.d[i] = 0.01f + (float)(rnd() % 100) * 1e-4f;
                A.s[i] = A.d[i] * (float)A.isum[i];
            }
            float *y = malloc(sizeof(float) * rows * tokens);
            const int reps = (int)(3e6 / ((double)rows * cols * tokens)) + 1;
            double best = 1e30;
            for (int k2 = 0; k2 < 15; k2++) {
                const double t0 = now();
                for (int r = 0; r < reps; r++) {
                    if (tiled) slm_matmul_tile16(SLM_WTYPE_Q4_1, wt, rb, rows, 0, rows, &A.a, y, rows);
                    else slm_matmul_q4_1(w, rb, 0, rows, &A.a, y, rows);
                }
                const double t = (now() - t0) / reps;
                if (t < best) best = t;
            }
            total[tiled] += best * sh[k].n;
            free(w); free(wt); free(y); free_acts(&A);
        }
    printf("%s Q4_1 layer, %d tokens: rows %.1f us, tile16 %.1f us (%.2fx)\n", slm_kernels_path(), tokens, total[0] * 1e6,
           total[1] * 1e6, total[0] / total[1]);
    slm_kernels_force(SLM_PATH_AUTO);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "bench") == 0) { bench(argc > 2 ? atoi(argv[2]) : 0); return 0; }
    if (argc > 3 && strcmp(argv[1], "layer") == 0) { bench_layer(atoi(argv[2]), atoi(argv[3])); return 0; }
    return test_paths();
}
