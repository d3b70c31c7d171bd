/* One forward pass of the default model (SmolLM2-135M, Q4_1 layers, Q8_0 tied output, or its
 * Q4_K_M mix with --weights q4_k_m) through
 * the C kernels, single-threaded, for counting instructions under qemu (scripts/bench-arm).
 * Weights, cache and inputs are random (every kernel's instruction count is independent of
 * the values, except the attention's softmax branch and expf).
 *
 *   arm_bench [OPTIONS] decode N            N decode steps, each one token at position 127
 *                                           (attention over 128 cached positions)
 *   arm_bench [OPTIONS] prefill N P         N prefills of P tokens at positions 0..P-1
 *                                           (causal attention, logits for the last token)
 *   arm_bench [OPTIONS] setup               allocation and random fill only
 *
 * Differences of two runs cancel the setup: (decode 2) - (decode 1) is one decode token,
 * (prefill 2 16) - (prefill 1 16) one 16-token prefill. Per layer the work is what
 * SLMModel.Forward does: rmsnorm + quantize, Q/K/V matmuls, RoPE, K/V to f16, per head
 * round-to-f16 + attention + quantize, output matmul + residual, rmsnorm + quantize,
 * gate/up matmuls, SiLU x up + quantize, down matmul + residual; then the final rmsnorm and
 * the 49152-row Q8_0 output matmul for one token. The elementwise steps (norm, RoPE, SiLU,
 * residual) are Swift in slmd; here they are plain C stand-ins (about 1% of a token).
 * Options: --path ID forces a kernel path (slm_kernels.h SLM_PATH_*; default: the best this
 * CPU supports); --layout rows|tile16 the weights' layout (default: the path's preferred
 * one, as slmd's default weights_layout = repacked: every type the path has tile16
 * kernels for, as slm_tile16_preferred says);
 * --weights q4_1|q4_k_m the per-tensor types: q4_1 (default) as above, q4_k_m those
 * llama-quantize gives SmolLM2-135M for Q4_K_M (scripts/fetch-kquant-models): its 576-column
 * matrices cannot hold K blocks, so Q5_0 everywhere except attn_v (Q8_0) and ffn_down (Q6_K)
 * on the "more bits" layers and ffn_down Q4_K on the others, Q8_0 tied output. Prints the
 * path and layout used. */
#include "slm_kernels.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { E = 576, F = 1536, H = 9, HKV = 3, D = 64, KV = HKV * D, LAYERS = 30, V = 49152, CTX = 128, MAXB = 64 };
/* ggml type ids (slm_kernels.h SLM_WTYPE_*). */
enum { Q41 = SLM_WTYPE_Q4_1, Q80 = SLM_WTYPE_Q8_0, Q50 = SLM_WTYPE_Q5_0, Q4K = SLM_WTYPE_Q4_K, Q6K = SLM_WTYPE_Q6_K };

/* Bytes of one row of `cols` values of `type`, and where a block keeps its f16 scale(s). */
static size_t row_bytes(int type, int cols) {
    switch (type) {
    case Q41: return (size_t)cols / 32 * 20;
    case Q80: return (size_t)cols / 32 * 34;
    case Q50: return (size_t)cols / 32 * 22;
    case Q4K: return (size_t)cols / 256 * 144;
    default: return (size_t)cols / 256 * 210;  /* Q6K */
    }
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd64(void) { rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27; return rng * 0x2545f4914f6cdd1dull; }
static float frand(void) { return (float)(rnd64() >> 40) / 16777216.0f * 2.0f - 1.0f; }

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) { fprintf(stderr, "arm_bench: out of memory\n"); exit(1); }
    return p;
}

/* Whether the matrices are in the tile16 layout (what slmd's default weights_layout =
 * repacked gives on a path that prefers it) or the model file's row layout. */
static int tile16;
/* Whether a matrix of this type is tile16: as slmd repacks, the types the path has tile16
 * kernels for. */
static int tiled(int type) { return tile16 && slm_tile16_preferred(type); }

/* A random quantized matrix with small normal f16 scales (and mins) in every block, in the
 * layout chosen (`tiled`). */
static uint8_t *random_matrix(int rows, int cols, int type) {
    const size_t bytes = (size_t)rows * row_bytes(type, cols), bb = row_bytes(type, type == Q4K || type == Q6K ? 256 : 32);
    uint8_t *w = xmalloc(bytes);
    for (size_t i = 0; i + 8 <= bytes; i += 8) { const uint64_t r = rnd64(); memcpy(w + i, &r, 8); }
    for (size_t b = 0; b < bytes / bb; b++) {
        const uint16_t d = (uint16_t)(0x1c00 | (rnd64() & 0x3ff)), m = (uint16_t)(0x9c00 | (rnd64() & 0x3ff));
        memcpy(w + b * bb + (type == Q6K ? 208 : 0), &d, 2);  /* Q6_K keeps d after its quants */
        if (type == Q41 || type == Q4K) memcpy(w + b * bb + 2, &m, 2);  /* m, or the K super-block dmin */
    }
    if (!tiled(type)) return w;
    uint8_t *t = xmalloc(bytes);
    slm_repack_tile16(type, w, t, (ptrdiff_t)row_bytes(type, cols), rows);
    free(w);
    return t;
}

typedef struct {
    uint8_t *wq, *wk, *wv, *wo, *wg, *wu, *wd;
    int tq, tk, tv, to, tg, tu, td;  /* their types */
    float *attn_norm, *ffn_norm;
    uint16_t *kc, *vc;
} layer;
static layer L[LAYERS];
static uint8_t *w_out;
static float *out_norm, rope_cos[CTX][D / 2], rope_sin[CTX][D / 2];

/* Activations: [MAXB][F] int8 with per-block scales (slm_q8_acts). */
typedef struct { int8_t qs[MAXB * F]; float d[MAXB * F / 32], s[MAXB * F / 32]; int32_t isum[MAXB * F / 32]; } q8buf;
static q8buf act, act2;
static float x[MAXB][E], xb[MAXB][E], q[MAXB][E], k[MAXB][KV], v[MAXB][KV], att[MAXB][E], tmp[MAXB][F], gate[MAXB][F],
    up[MAXB][F], qh[D], *logits;

static void matmul(const uint8_t *w, int type, int rows, int cols, const q8buf *a, int tokens, float *y, int ys) {
    const slm_q8_acts acts = {a->qs, a->d, a->s, a->isum, cols, tokens};
    const ptrdiff_t rb = (ptrdiff_t)row_bytes(type, cols);
    if (tiled(type)) slm_matmul_tile16(type, w, rb, rows, 0, rows, &acts, y, ys);
    else if (type != Q41 && type != Q80) slm_matmul_kq(type, w, rb, 0, rows, &acts, y, ys);
    else if (type == Q41) slm_matmul_q4_1(w, rb, 0, rows, &acts, y, ys);
    else slm_matmul_q8_0(w, rb, 0, rows, &acts, y, ys);
}
static void quantize(q8buf *a, int b, int cols, const float *src) {
    slm_quantize_q8(src, cols, a->qs + b * cols, a->d + b * cols / 32, a->s + b * cols / 32, a->isum + b * cols / 32);
}
static void rmsnorm(const float *in, const float *w, float *out) {
    double ss = 0;
    for (int i = 0; i < E; i++) ss += (double)(in[i] * in[i]);
    const float scale = 1.0f / sqrtf((float)(ss / E) + 1e-5f);
    for (int i = 0; i < E; i++) out[i] = (in[i] * scale) * w[i];
}
static void rope(float *vec, int heads, int pos) {
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < D / 2; i++) {
            float *p = vec + h * D + 2 * i;
            const float x0 = p[0], x1 = p[1];
            p[0] = x0 * rope_cos[pos][i] - x1 * rope_sin[pos][i];
            p[1] = x0 * rope_sin[pos][i] + x1 * rope_cos[pos][i];
        }
}

/* One forward pass over tokens at positions pos0..pos0+B-1 (cache rows below pos0 are filled). */
static void forward(int B, int pos0) {
    for (int b = 0; b < B; b++) for (int i = 0; i < E; i++) x[b][i] = frand();
    for (int l = 0; l < LAYERS; l++) {
        const layer *ly = &L[l];
        for (int b = 0; b < B; b++) { rmsnorm(x[b], ly->attn_norm, xb[b]); quantize(&act, b, E, xb[b]); }
        matmul(ly->wq, ly->tq, E, E, &act, B, q[0], E);
        matmul(ly->wk, ly->tk, KV, E, &act, B, k[0], KV);
        matmul(ly->wv, ly->tv, KV, E, &act, B, v[0], KV);
        for (int b = 0; b < B; b++) {
            rope(q[b], H, pos0 + b);
            rope(k[b], HKV, pos0 + b);
            slm_f32_to_f16(k[b], ly->kc + (size_t)(pos0 + b) * KV, KV);
            slm_f32_to_f16(v[b], ly->vc + (size_t)(pos0 + b) * KV, KV);
        }
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                const int off = h / (H / HKV) * D;
                memcpy(qh, q[b] + h * D, sizeof qh);
                slm_round_f16(qh, D);
                slm_attn_f16(qh, ly->kc + off, ly->vc + off, KV, pos0 + b + 1, D, 0.125f, att[b] + h * D);
                slm_quantize_q8(att[b] + h * D, D, act.qs + b * E + h * D, act.d + (b * E + h * D) / 32,
                                act.s + (b * E + h * D) / 32, act.isum + (b * E + h * D) / 32);
            }
        matmul(ly->wo, ly->to, E, E, &act, B, tmp[0], F);
        for (int b = 0; b < B; b++) for (int i = 0; i < E; i++) x[b][i] += tmp[b][i];
        for (int b = 0; b < B; b++) { rmsnorm(x[b], ly->ffn_norm, xb[b]); quantize(&act, b, E, xb[b]); }
        matmul(ly->wg, ly->tg, F, E, &act, B, gate[0], F);
        matmul(ly->wu, ly->tu, F, E, &act, B, up[0], F);
        for (int b = 0; b < B; b++) {
            for (int i = 0; i < F; i++) gate[b][i] = gate[b][i] / (1.0f + expf(-gate[b][i])) * up[b][i];
            quantize(&act2, b, F, gate[b]);
        }
        matmul(ly->wd, ly->td, E, F, &act2, B, tmp[0], F);
        for (int b = 0; b < B; b++) for (int i = 0; i < E; i++) x[b][i] += tmp[b][i];
    }
    rmsnorm(x[B - 1], out_norm, xb[0]);
    quantize(&act, 0, E, xb[0]);
    matmul(w_out, Q80, V, E, &act, 1, logits, V);
}

static float *random_floats(int n) {
    float *p = xmalloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) p[i] = 1.0f + 0.1f * frand();
    return p;
}

int main(int argc, char **argv) {
    int a = 1, layout = -1, kquant = 0;
    for (; a + 1 < argc && argv[a][0] == '-'; a += 2) {
        if (strcmp(argv[a], "--path") == 0) {
            if (!slm_kernels_force(atoi(argv[a + 1]))) { fprintf(stderr, "arm_bench: path %s not supported here\n", argv[a + 1]); return 2; }
        } else if (strcmp(argv[a], "--layout") == 0) {
            layout = strcmp(argv[a + 1], "rows") == 0 ? SLM_LAYOUT_ROWS : strcmp(argv[a + 1], "tile16") == 0 ? SLM_LAYOUT_TILE16 : -2;
            if (layout == -2) { fprintf(stderr, "arm_bench: --layout takes rows or tile16\n"); return 2; }
        } else if (strcmp(argv[a], "--weights") == 0) {
            kquant = strcmp(argv[a + 1], "q4_k_m") == 0 ? 1 : strcmp(argv[a + 1], "q4_1") == 0 ? 0 : -1;
            if (kquant < 0) { fprintf(stderr, "arm_bench: --weights takes q4_1 or q4_k_m\n"); return 2; }
        } else {
            fprintf(stderr, "arm_bench: unknown option %s\n", argv[a]);
            return 2;
        }
    }
    tile16 = (layout == -1 ? slm_preferred_layout() : layout) == SLM_LAYOUT_TILE16;
    const char *mode = a < argc ? argv[a] : "";
    const int n = a + 1 < argc ? atoi(argv[a + 1]) : 0, P = a + 2 < argc ? atoi(argv[a + 2]) : 16;
    if (!(strcmp(mode, "setup") == 0 || ((strcmp(mode, "decode") == 0 || strcmp(mode, "prefill") == 0) && n >= 0)) ||
        P < 1 || P > MAXB || P > CTX) {
        fprintf(stderr, "usage: arm_bench [--path ID] [--layout rows|tile16] [--weights q4_1|q4_k_m] decode N | prefill N P "
                        "(P <= %d) | setup\n", MAXB);
        return 2;
    }
    for (int l = 0; l < LAYERS; l++) {
        layer *ly = &L[l];
        /* llama-quantize's use_more_bits(l, LAYERS): the first and last eighth and every third layer between. */
        const int more = l < LAYERS / 8 || l >= 7 * LAYERS / 8 || (l - LAYERS / 8) % 3 == 2;
        const int base = kquant ? Q50 : Q41;
        ly->tq = ly->tk = ly->to = ly->tg = ly->tu = base;
        ly->tv = kquant ? (more ? Q80 : Q50) : Q41;
        ly->td = kquant ? (more ? Q6K : Q4K) : Q41;
        ly->wq = random_matrix(E, E, ly->tq); ly->wk = random_matrix(KV, E, ly->tk); ly->wv = random_matrix(KV, E, ly->tv);
        ly->wo = random_matrix(E, E, ly->to); ly->wg = random_matrix(F, E, ly->tg); ly->wu = random_matrix(F, E, ly->tu);
        ly->wd = random_matrix(E, F, ly->td);
        ly->attn_norm = random_floats(E); ly->ffn_norm = random_floats(E);
        ly->kc = xmalloc(sizeof(uint16_t) * CTX * KV); ly->vc = xmalloc(sizeof(uint16_t) * CTX * KV);
        float row[KV];
        for (int p = 0; p < CTX; p++) {  /* the cache as earlier tokens left it */
            for (int i = 0; i < KV; i++) row[i] = frand() * 2.0f;
            slm_f32_to_f16(row, ly->kc + (size_t)p * KV, KV);
            for (int i = 0; i < KV; i++) row[i] = frand() * 2.0f;
            slm_f32_to_f16(row, ly->vc + (size_t)p * KV, KV);
        }
    }
    w_out = random_matrix(V, E, Q80);
    out_norm = random_floats(E);
    logits = xmalloc(sizeof(float) * V);
    for (int p = 0; p < CTX; p++)
        for (int i = 0; i < D / 2; i++) {
            const float th = (float)p * powf(10000.0f, -2.0f * (float)i / D);
            rope_cos[p][i] = cosf(th); rope_sin[p][i] = sinf(th);
        }

    for (int r = 0; r < n; r++) {
        if (mode[0] == 'd') forward(1, CTX - 1);
        else forward(P, 0);
    }
    float check = 0;
    for (int i = 0; i < V; i += 97) check += logits[i] * (float)(n > 0);
    printf("path %s, layout %s, %s, n %d, P %d, weights %s (checksum %g)\n", slm_kernels_path(), tile16 ? "tile16" : "rows",
           mode, n, mode[0] == 'p' ? P : 1, kquant ? "q4_k_m" : "q4_1", check);
    return 0;
}
