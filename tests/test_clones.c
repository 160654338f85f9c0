/* test_clones.c — the vector clones of ref's elementwise loops (SB_CLONES in
 * kernels/ref.c: default, AVX2, AVX-512, picked by CPU at load time) must give
 * the same bits as the plain scalar loops. This file compiles a second copy of
 * ref.c with the clones switched off and compares it, op by op, with the
 * backend the library hands out (which runs the best clone for this CPU).
 */
#define SB_NO_CLONES
#define sb_ref_init sb_ref_init_scalar_copy
#define sb_ref_alloc sb_ref_alloc_scalar_copy
#define sb_ref_free sb_ref_free_scalar_copy
#define sb_ref_upload sb_ref_upload_scalar_copy
#define sb_ref_download sb_ref_download_scalar_copy
#define sb_ref_zero sb_ref_zero_scalar_copy
#include "../kernels/ref.c"
#undef sb_ref_init

#include "sb_test.h"

#include <math.h>
#include <string.h>

#define N 1031 /* odd: exercises every clone's vector body and scalar tail */

static void fill(float *x, size_t n, unsigned seed) {
    /* values over many magnitudes, both signs, zeros, and a few specials */
    unsigned s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        float mant = (float)(s >> 8) / 16777216.0f - 0.5f;
        int ex = (int)((s >> 3) % 20) - 10;
        x[i] = ldexpf(mant, ex);
    }
    x[0] = 0.0f;
    x[1] = -0.0f;
    x[2] = 1e-40f; /* subnormal */
}

static int same_bits(const float *a, const float *b, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        CHECK(memcmp(&a[i], &b[i], 4) == 0, "%s: element %zu: clone %.9g vs scalar %.9g", what, i,
              (double)a[i], (double)b[i]);
    return 0;
}

static int vector_clones_should_equal_the_scalar_loops_bitwise(void) {
    sb_error err = {0};
    sb_backend_config cfg = {.mode = SB_MODE_DETERMINISTIC, .threads = 1};
    sb_backend *be = sb_backend_new("ref", &cfg, &err);
    CHECK(be != NULL, "%s", err.msg);
    static float in[N], d[N], g[N], a1[N], a2[N], b1[N], b2[N], c1[N], c2[N];
    fill(in, N, 1);
    fill(d, N, 2);
    fill(g, N, 3);
    const sb_act acts[] = {SB_ACT_RELU, SB_ACT_TANH, SB_ACT_GELU};
    for (int k = 0; k < 3; k++) {
        be->i->act_forward(be, acts[k], a1, in, N);
        ref_act_forward(NULL, acts[k], a2, in, N);
        if (same_bits(a1, a2, N, sb_act_name(acts[k]))) return 1;
        fill(b1, N, 4);
        fill(b2, N, 4);
        be->i->act_backward(be, acts[k], b1, d, in, N);
        ref_act_backward(NULL, acts[k], b2, d, in, N);
        if (same_bits(b1, b2, N, "act_backward")) return 1;
    }
    fill(a1, N, 5);
    fill(a2, N, 5);
    be->i->bias_add(be, a1, g, 1, N);
    ref_bias_add(NULL, a2, g, 1, N);
    if (same_bits(a1, a2, N, "bias_add")) return 1;
    for (int wd = 0; wd < 2; wd++) {
        fill(a1, N, 6);
        fill(a2, N, 6);
        memset(b1, 0, sizeof b1);
        memset(b2, 0, sizeof b2);
        for (int step = 0; step < 3; step++) {
            be->i->sgd_update(be, a1, b1, g, N, 0.1f, 0.9f, wd ? 0.01f : 0.0f);
            ref_sgd_update(NULL, a2, b2, g, N, 0.1f, 0.9f, wd ? 0.01f : 0.0f);
        }
        if (same_bits(a1, a2, N, "sgd w") || same_bits(b1, b2, N, "sgd momentum")) return 1;
        fill(a1, N, 7);
        fill(a2, N, 7);
        memset(b1, 0, sizeof b1);
        memset(b2, 0, sizeof b2);
        memset(c1, 0, sizeof c1);
        memset(c2, 0, sizeof c2);
        for (int t = 1; t <= 3; t++) {
            be->i->adam_update(be, a1, b1, c1, g, N, 0.01f, 0.9f, 0.999f, 1e-8f, wd ? 0.01f : 0.0f, t);
            ref_adam_update(NULL, a2, b2, c2, g, N, 0.01f, 0.9f, 0.999f, 1e-8f, wd ? 0.01f : 0.0f, t);
        }
        if (same_bits(a1, a2, N, "adam w") || same_bits(b1, b2, N, "adam m") ||
            same_bits(c1, c2, N, "adam v"))
            return 1;
    }
    /* dropout: a keep-mask of 0.0f / 1.0f with some -0.0f (drops too), and
     * Inf / NaN inputs at dropped places, where the select must give +0.0f in
     * every clone; scale 1/(1-0.3) rounds the product */
    static float mask[N];
    for (size_t i = 0; i < N; i++) mask[i] = (i * 7u) % 10 < 3 ? 0.0f : 1.0f;
    for (size_t i = 5; i < N; i += 97) mask[i] = -0.0f;
    fill(a1, N, 8);
    for (size_t i = 0; i < N; i += 13)
        if (mask[i] == 0.0f) a1[i] = i % 2 ? INFINITY : NAN;
    const float scale = 1.0f / (1.0f - 0.3f);
    be->i->dropout_forward(be, b1, a1, mask, N, scale);
    ref_dropout_forward(NULL, b2, a1, mask, N, scale);
    if (same_bits(b1, b2, N, "dropout_forward")) return 1;
    fill(c1, N, 9);
    fill(c2, N, 9);
    be->i->dropout_backward(be, c1, a1, mask, N, scale);
    ref_dropout_backward(NULL, c2, a1, mask, N, scale);
    if (same_bits(c1, c2, N, "dropout_backward")) return 1;
    sb_backend_free(be);
    return 0;
}

static const sb_test_case cases[] = {
    SB_CASE(vector_clones_should_equal_the_scalar_loops_bitwise),
};
SB_TEST_MAIN(cases)
