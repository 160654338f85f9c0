/* test_canonical.c — canonical mode (docs/canonical.md): its math functions
 * against double-precision libm, its summation tree against the strided loop
 * the document specifies, and its promise — every op bitwise equal between
 * "ref" and "blas", for thread counts 1..8 and on the scalar, AVX2 and
 * AVX-512 GEMM paths — over random shapes; plus the error of the canonical
 * GEMM against float64 next to OpenBLAS's on the same inputs.
 *
 * What it is not: a speed test (samebits bench --gemm measures speed).
 */
#include "canonical.h"
#include "kernels_test_util.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

/* ====================================================================== */
/* helpers                                                                */
/* ====================================================================== */

static const char *const ISAS[] = {"scalar", "avx2", "avx512"};
#define N_ISAS 3

/* A blas canonical backend on the given path; NULL (and *skip = 1) when this
 * CPU cannot run it. */
static sb_backend *make_canon_blas(const char *isa, int threads, int *skip) {
    *skip = 0;
    setenv("SB_CANONICAL_ISA", isa, 1);
    sb_backend_config cfg = {.mode = SB_MODE_CANONICAL, .threads = threads};
    sb_error err = {0};
    sb_backend *be = sb_backend_new("blas", &cfg, &err);
    unsetenv("SB_CANONICAL_ISA");
    if (!be && strstr(err.msg, "cannot run")) *skip = 1;
    else if (!be) fprintf(stderr, "blas canonical (%s, %d threads): %s\n", isa, threads, err.msg);
    return be;
}

static double ulp_distance(float got, double want) {
    /* in units of the float ULP at the double result (subnormal-aware) */
    if (isinf(want) || isinf(got)) return (double)got == want ? 0 : INFINITY;
    double aw = fabs(want);
    int e;
    frexp(aw < 0x1p-126 ? 0x1p-126 : aw, &e);
    double ulp = ldexp(1.0, e - 24);
    return fabs((double)got - want) / ulp;
}

/* ====================================================================== */
/* 1. math                                                                */
/* ====================================================================== */

typedef struct math_case {
    const char *name;
    float (*ours)(float);
    double (*libm)(double);
    float lo, hi;       /* the range sampled */
    double max_ulp;     /* the stated bound (canonical_math.c's header) */
} math_case;

static int check_math_range(const math_case *mc) {
    /* every float in [lo, hi] whose bit pattern is a multiple of `step`, plus
     * both ends: ~4 million inputs per function, every binade covered */
    uint32_t a = bits_of(mc->lo), b = bits_of(mc->hi);
    double worst = 0;
    float worst_x = 0;
    size_t count = 0;
    for (int side = 0; side < 2; side++) {
        /* side 0: the non-negative part, side 1: the negative part */
        float lo = side ? (mc->hi < 0 ? mc->hi : -0.0f) : (mc->lo > 0 ? mc->lo : 0.0f);
        float hi = side ? mc->lo : mc->hi;
        if (side == 0 && mc->hi < 0) continue;
        if (side == 1 && mc->lo >= 0) continue;
        a = bits_of(lo), b = bits_of(hi);
        uint32_t step = (b - a) / 2000000u + 1;
        for (uint32_t u = a; u <= b && u >= a; u += step) {
            float x;
            memcpy(&x, &u, 4);
            double want = mc->libm((double)x);
            float got = mc->ours(x);
            CHECK(!isnan(got) || isnan(want), "%s(%a) = NaN, want %a", mc->name, x, want);
            double d = ulp_distance(got, want);
            if (d > worst) worst = d, worst_x = x;
            count++;
            if (b - u < step) break;
        }
    }
    printf("%s: max error %.3f ULP at x = %a over %zu inputs in [%g, %g] (bound %.1f)\n",
           mc->name, worst, worst_x, count, mc->lo, mc->hi, mc->max_ulp);
    CHECK(worst <= mc->max_ulp, "%s: %.3f ULP at %a (%a vs %a) over the bound %.1f", mc->name,
          worst, worst_x, mc->ours(worst_x), mc->libm(worst_x), mc->max_ulp);
    return 0;
}

/* Bounds: our own polynomials are not correctly rounded; 1 ULP for exp and
 * log (one final rounding plus a small polynomial error), 2 ULP for tanh,
 * whose middle branch 1 - 2/(e^2x + 1) carries exp's error through two more
 * roundings (canonical_math.c). The ranges cover overflow, gradual underflow
 * and every binade of the inputs a network produces. */
static int canonical_math_should_stay_within_its_ulp_bounds_of_double_libm(void) {
    const math_case cases[] = {
        {"expf", sb_canon_expf, exp, -104.0f, 88.72283f, 1.0},
        {"logf", sb_canon_logf, log, 0x1p-149f, 3.4e38f, 1.0},
        {"tanhf", sb_canon_tanhf, tanh, -12.0f, 12.0f, 2.0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        if (check_math_range(&cases[k])) return 1;
    return 0;
}

static int same_float(float a, float b) { return bits_of(a) == bits_of(b); }

static int canonical_math_should_follow_c99_for_special_values(void) {
    const float inf = INFINITY, nan = NAN;
    CHECK(isnan(sb_canon_expf(nan)) && isnan(sb_canon_logf(nan)) && isnan(sb_canon_tanhf(nan)),
          "NaN in must give NaN");
    CHECK(same_float(sb_canon_expf(inf), inf), "exp(+inf) = %a", sb_canon_expf(inf));
    CHECK(same_float(sb_canon_expf(-inf), 0.0f), "exp(-inf) = %a", sb_canon_expf(-inf));
    CHECK(same_float(sb_canon_expf(0.0f), 1.0f) && same_float(sb_canon_expf(-0.0f), 1.0f),
          "exp(±0) = 1");
    CHECK(same_float(sb_canon_expf(88.7229f), inf), "exp(88.7229) overflows: %a",
          sb_canon_expf(88.7229f));
    CHECK(isfinite(sb_canon_expf(88.72283f)), "exp(88.72283) is finite");
    CHECK(same_float(sb_canon_expf(-104.0f), 0.0f) && same_float(sb_canon_expf(-200.0f), 0.0f),
          "deep underflow is +0");
    float sub = sb_canon_expf(-100.0f); /* 3.7e-44: subnormal */
    CHECK(sub > 0.0f && sub < 0x1p-126f, "exp(-100) = %a, want a subnormal", sub);
    CHECK(ulp_distance(sub, exp(-100.0)) <= 1.0, "exp(-100) = %a vs %a", sub, exp(-100.0));
    CHECK(same_float(sb_canon_logf(0.0f), -inf) && same_float(sb_canon_logf(-0.0f), -inf),
          "log(±0) = -inf");
    CHECK(isnan(sb_canon_logf(-1.0f)) && isnan(sb_canon_logf(-inf)), "log(<0) = NaN");
    CHECK(same_float(sb_canon_logf(inf), inf), "log(+inf) = +inf");
    CHECK(same_float(sb_canon_logf(1.0f), 0.0f), "log(1) = +0: %a", sb_canon_logf(1.0f));
    CHECK(ulp_distance(sb_canon_logf(0x1p-149f), log(0x1p-149)) <= 1.0, "log(min subnormal)");
    CHECK(same_float(sb_canon_tanhf(0.0f), 0.0f) && same_float(sb_canon_tanhf(-0.0f), -0.0f),
          "tanh(±0) = ±0");
    CHECK(same_float(sb_canon_tanhf(inf), 1.0f) && same_float(sb_canon_tanhf(-inf), -1.0f),
          "tanh(±inf) = ±1");
    CHECK(same_float(sb_canon_tanhf(1e-40f), 1e-40f), "tanh keeps subnormals");
    CHECK(same_float(sb_canon_tanhf(-20.0f), -1.0f), "tanh(-20) = -1");
    CHECK(sb_canon_powi(0.9, 0) == 1.0 && sb_canon_powi(0.5, 10) == 1.0 / 1024.0 &&
              fabs(sb_canon_powi(0.999, 1000) - pow(0.999, 1000)) < 1e-14,
          "powi");
    return 0;
}

/* ====================================================================== */
/* 2. the summation tree is the documented strided loop                   */
/* ====================================================================== */

static int canonical_sum_should_equal_the_documented_strided_tree_for_every_length(void) {
    rng r = {11};
    enum { MAXN = 64 * 70 + 5 };
    float *x = new_floats(MAXN), *p = new_floats(MAXN);
    /* values of many magnitudes so that a different order shows in the bits */
    for (size_t i = 0; i < MAXN; i++) x[i] = ldexpf(rng_unif(&r, -1, 1), (int)(rng_next(&r) % 40) - 20);
    for (size_t n = 0; n <= MAXN; n += (n < 300 ? 1 : 61)) {
        size_t nb = (n + SB_CANON_BLOCK - 1) / SB_CANON_BLOCK;
        for (size_t b = 0; b < nb; b++) {
            float s = 0.0f;
            size_t e = (b + 1) * SB_CANON_BLOCK < n ? (b + 1) * SB_CANON_BLOCK : n;
            for (size_t i = b * SB_CANON_BLOCK; i < e; i++) s = s + x[i];
            p[b] = s;
        }
        for (size_t s = 1; s < nb; s *= 2)
            for (size_t i = 0; i + s < nb; i += 2 * s) p[i] = p[i] + p[i + s];
        float want = nb ? p[0] : 0.0f;
        float got = sb_canon_sum(x, n, 1);
        CHECK(same_float(got, want), "n = %zu: sb_canon_sum %a, strided loop %a", n, got, want);
    }
    free(x);
    free(p);
    return 0;
}

/* ====================================================================== */
/* 3. GEMM: ref == blas on every path and thread count                    */
/* ====================================================================== */

typedef struct shape {
    int tA, tB, M, N, K;
    float alpha, beta;
    int pad; /* extra stride */
} shape;

/* One GEMM on backend `be` into `out` (M*N floats), with guard checks. */
static int run_gemm(sb_backend *be, const shape *s, const float *hA, const float *hB,
                    const float *hC, float *out, const char *what) {
    int lda = (s->tA ? s->M : s->K) + s->pad, ldb = (s->tB ? s->K : s->N) + s->pad,
        ldc = s->N + s->pad;
    size_t na = (size_t)(s->tA ? s->K : s->M) * (size_t)lda,
           nb = (size_t)(s->tB ? s->N : s->K) * (size_t)ldb, nc = (size_t)s->M * (size_t)ldc;
    arena a = {.be = be};
    float *A = put(&a, hA, na), *B = put(&a, hB, nb), *C = put(&a, hC, nc);
    be->i->gemm(be, s->tA, s->tB, s->M, s->N, s->K, s->alpha, A, lda, B, ldb, s->beta, C, ldc);
    float *host = new_floats(nc);
    get(&a, host, C, nc);
    for (int i = 0; i < s->M; i++)
        memcpy(out + (size_t)i * (size_t)s->N, host + (size_t)i * (size_t)ldc,
               (size_t)s->N * sizeof(float));
    /* stride padding must be untouched */
    int bad = 0;
    for (int i = 0; i < s->M && !bad; i++)
        for (int j = s->N; j < ldc; j++)
            if (bits_of(host[(size_t)i * (size_t)ldc + (size_t)j]) !=
                bits_of(hC[(size_t)i * (size_t)ldc + (size_t)j]))
                bad = 1;
    free(host);
    int ok = guards_ok(&a, what);
    arena_free(&a);
    CHECK(ok && !bad, "%s: wrote outside C", what);
    return 0;
}

static shape random_shape(rng *r, int k) {
    static const int tr[4][2] = {{0, 1}, {0, 0}, {1, 0}, {1, 1}}; /* engine uses the first 3 */
    static const float alphas[] = {1.0f, 1.0f, 0.5f, -1.25f, 0.0f};
    static const float betas[] = {0.0f, 0.0f, 1.0f, -0.75f};
    shape s;
    s.tA = tr[k % 4][0];
    s.tB = tr[k % 4][1];
    /* below one vector, odd, around the tile sizes, and a few larger */
    s.M = 1 + (int)(rng_next(r) % (k % 3 == 0 ? 7 : 70));
    s.N = 1 + (int)(rng_next(r) % (k % 5 == 0 ? 15 : 97));
    s.K = 1 + (int)(rng_next(r) % 300);
    s.alpha = alphas[rng_next(r) % 5];
    s.beta = betas[rng_next(r) % 4];
    s.pad = (int)(rng_next(r) % 3);
    return s;
}

/* One shape on ref, then on blas on every SIMD path with every thread count
 * 1..8 (other == 0) or with 1 and `other` threads: bitwise equal, nothing
 * outside C written. Random inputs from r; skipped_isa[isa] set for a path
 * this CPU cannot run. */
static int gemm_on_every_path(sb_backend *ref, rng *r, const shape *sp, int other,
                              int skipped_isa[N_ISAS]) {
    const shape s = *sp;
    int lda = (s.tA ? s.M : s.K) + s.pad, ldb = (s.tB ? s.K : s.N) + s.pad, ldc = s.N + s.pad;
    size_t na = (size_t)(s.tA ? s.K : s.M) * (size_t)lda,
           nb = (size_t)(s.tB ? s.N : s.K) * (size_t)ldb, nc = (size_t)s.M * (size_t)ldc;
    float *hA = new_floats(na), *hB = new_floats(nb), *hC = new_floats(nc);
    fill(r, hA, na, -1, 1);
    fill(r, hB, nb, -1, 1);
    fill(r, hC, nc, -1, 1);
    if (s.beta == 0.0f) /* C must not be read: NaN would leak into the result */
        for (size_t i = 0; i < nc; i++) hC[i] = canary();
    float *want = new_floats((size_t)s.M * s.N), *got = new_floats((size_t)s.M * s.N);
    char what[160];
    snprintf(what, sizeof what, "ref tA=%d tB=%d M=%d N=%d K=%d alpha=%g beta=%g", s.tA, s.tB,
             s.M, s.N, s.K, s.alpha, s.beta);
    if (run_gemm(ref, &s, hA, hB, hC, want, what)) return 1;
    for (int isa = 0; isa < N_ISAS; isa++) {
        for (int th = 1; th <= 8; th++) {
            if (other && th != 1 && th != other) continue;
            int skip;
            sb_backend *be = make_canon_blas(ISAS[isa], th, &skip);
            if (skip) {
                skipped_isa[isa] = 1;
                break;
            }
            CHECK(be, "blas canonical %s %d", ISAS[isa], th);
            snprintf(what, sizeof what, "blas/%s/%d tA=%d tB=%d M=%d N=%d K=%d alpha=%g beta=%g",
                     ISAS[isa], th, s.tA, s.tB, s.M, s.N, s.K, s.alpha, s.beta);
            int rc = run_gemm(be, &s, hA, hB, hC, got, what);
            sb_backend_free(be);
            if (rc || same_bits(what, got, want, (size_t)s.M * s.N)) return 1;
        }
    }
    free(hA), free(hB), free(hC), free(want), free(got);
    return 0;
}

static int canonical_gemm_should_equal_ref_bitwise_on_every_path_and_thread_count(void) {
    rng r = {2024};
    sb_backend *ref = make("ref", SB_MODE_CANONICAL, 1, 0);
    CHECK(ref, "ref");
    int shapes = 0, skipped_isa[N_ISAS] = {0};
    for (int k = 0; k < 120; k++) {
        shape s = random_shape(&r, k);
        if (k == 0) s = (shape){0, 1, 64, 256, 784, 1.0f, 0.0f, 0}; /* the MLP's fc1 forward */
        if (k == 1) s = (shape){1, 0, 256, 784, 64, 1.0f, 0.0f, 0}; /* its weight gradient */
        if (k == 2) s = (shape){0, 0, 33, 1100, 520, 1.0f, 0.0f, 0}; /* > NC and > KC */
        if (k == 3) s = (shape){0, 1, 40, 300, 600, 0.5f, 1.0f, 1}; /* beta != 0 over 2 k-blocks */
        /* the engine's paths by name (canonical_gemm.c): the transposed
         * orientation over two strips of Cᵀ, with beta; transposed with
         * fewer columns than a vector and several vectors of rows; beta != 0
         * over k-blocks with the accumulators in workspace strips; B read in
         * place with ldb == 32 (full tiles); op(A) read in place (few
         * columns) over k-blocks with beta; transposed over k-blocks */
        if (k == 4) s = (shape){0, 1, 16, 4200, 20, 0.5f, -0.75f, 1};
        if (k == 5) s = (shape){0, 1, 100, 7, 150, -1.25f, 0.0f, 0};
        if (k == 6) s = (shape){0, 0, 260, 270, 270, 0.5f, -0.75f, 0};
        if (k == 7) s = (shape){0, 0, 28, 32, 40, 1.0f, 0.0f, 0};
        if (k == 8) s = (shape){1, 0, 30, 20, 600, 0.5f, 1.0f, 2};
        if (k == 9) s = (shape){0, 1, 40, 10, 300, 1.0f, 0.0f, 0};
        /* every thread count 1..8 on the first shapes, then a rotating pair */
        if (gemm_on_every_path(ref, &r, &s, k < 8 ? 0 : 2 + k % 7, skipped_isa)) return 1;
        shapes++;
    }
    sb_backend_free(ref);
    printf("%d shapes bitwise equal to ref on", shapes);
    for (int isa = 0; isa < N_ISAS; isa++)
        printf(" %s%s", ISAS[isa], skipped_isa[isa] ? " (not on this CPU: skipped)" : "");
    printf(", threads 1..8\n");
    return 0;
}

/* The driver's and kernels' paths by name (canonical_gemm.c,
 * canonical_gemm_x86.c), each shape on every SIMD path and every thread
 * count 1..8: the short-k call (k <= SB_CANON_SHORT_K, op(A) = A; B in
 * place and packed, whole, two-vector and one-vector masked tail tiles,
 * row strips past SHORT_ROWS and column blocks past NC, each epilogue);
 * narrow panels of up to 28 rows (at most 16 columns: the per-head products
 * with A and Aᵀ in place, evened-out panel heights, over k-blocks with the
 * accumulators in C and in the workspace, B packed, and the transposed
 * orientation over many columns of C); op(A) = Aᵀ read in place under wide
 * panels; the epilogue's alpha == 1 and beta == 1 cases next to others; and
 * products large enough to be split among threads on each of those paths. */
static int canonical_gemm_paths_should_equal_ref_bitwise_on_every_path_and_thread_count(void) {
    static const shape paths[] = {
        /* the short-k call */
        {0, 0, 32, 784, 10, 1.0f, 0.0f, 0},   /* the CNN's fc dx */
        {0, 0, 8, 2100, 9, 1.0f, 0.0f, 1},    /* conv1 fwd-like, 3 column blocks */
        {0, 1, 300, 70, 14, 0.5f, -0.75f, 1}, /* B packed, 2 row strips, 1-vector tail */
        {0, 0, 3, 50, 1, -1.25f, 1.0f, 2},    /* k = 1, 2-vector masked tail */
        {0, 0, 33, 16, 14, 1.0f, 1.0f, 0},    /* one vector, beta 1 */
        {0, 1, 40, 48, 5, 1.0f, -0.75f, 0},   /* B packed, alpha 1 with beta */
        {0, 0, 17, 96, 13, 0.5f, 0.0f, 0},    /* whole tiles, alpha only */
        {0, 0, 600, 500, 12, 0.5f, 1.0f, 1},  /* split by rows among threads */
        {0, 1, 100, 2000, 7, 1.0f, 0.0f, 0},  /* split by columns */
        /* narrow panels */
        {0, 0, 32, 16, 32, 1.0f, 0.0f, 0},    /* tf head att.v */
        {0, 0, 32, 16, 32, 1.0f, 1.0f, 0},    /* dpre.k */
        {1, 0, 32, 16, 32, 1.0f, 1.0f, 0},    /* attT.do, dpreT.q */
        {0, 0, 32, 16, 32, 0.5f, -0.75f, 1},
        {1, 0, 32, 16, 32, -1.25f, 1.0f, 2},
        {0, 0, 45, 13, 40, 1.0f, 0.0f, 0},    /* 28 + 17 rows */
        {1, 0, 61, 16, 300, 0.5f, 0.0f, 0},   /* two k-blocks, accumulators in C */
        {0, 0, 100, 9, 270, 0.5f, 1.0f, 1},   /* two k-blocks, workspace strips */
        {0, 1, 40, 16, 50, 1.0f, 0.0f, 0},    /* B packed */
        {0, 1, 16, 72, 600, 1.0f, 1.0f, 0},   /* transposed: 28 + 28 + 16 columns */
        {0, 1, 8, 9, 3000, 1.0f, 1.0f, 0},    /* transposed, CNN conv1 dW-like */
        {0, 1, 5, 100, 130, -1.25f, 0.5f, 1}, /* transposed, 28-column panels */
        {0, 1, 16, 700, 600, 1.0f, 1.0f, 0},  /* transposed, split by columns */
        {1, 0, 400, 16, 300, 1.0f, 1.0f, 0},  /* split by rows */
        /* Aᵀ in place under wide panels */
        {1, 0, 40, 30, 64, 1.0f, 1.0f, 0},
        {1, 0, 20, 20, 600, 0.5f, 0.0f, 1},
        /* Aᵀ of one row panel in place over many columns, B in place (its
         * next tile prefetched): M 1..14, N not a multiple of 16, K 1 and odd */
        {1, 0, 10, 784, 32, 1.0f, 0.0f, 0},   /* the CNN's fc dW */
        {1, 0, 10, 256, 64, 1.0f, 0.0f, 0},   /* the MLP's fc3 dW */
        {1, 0, 1, 50, 1, -1.25f, 1.0f, 2},
        {1, 0, 7, 100, 33, 0.5f, -0.75f, 1},
        {1, 0, 14, 300, 17, 1.0f, 1.0f, 0},
        {1, 0, 3, 70, 300, -1.25f, 0.5f, 2},  /* two k-blocks, workspace */
        {1, 0, 5, 41, 257, 0.5f, 0.0f, 0},    /* two k-blocks, accumulators in C */
        {0, 0, 10, 784, 32, 1.0f, 0.0f, 0},   /* the same with op(A) = A */
        {0, 0, 9, 150, 31, 0.5f, 1.0f, 1},
        {0, 1, 10, 100, 40, 1.0f, 0.0f, 0},   /* NT, transposed orientation */
        /* the few-columns NT call: rows of C in lanes, A turned in
         * registers; a shifted last panel (M not a multiple of 16), 1..3
         * trailing steps through the copy, N 1 and 16, each epilogue, and
         * row splits among threads */
        {0, 1, 32, 10, 784, 1.0f, 0.0f, 0},   /* the CNN's fc forward */
        {0, 1, 64, 10, 256, 1.0f, 0.0f, 0},   /* the MLP's fc3 forward */
        {0, 1, 17, 3, 50, 0.5f, -0.75f, 1},
        {0, 1, 16, 16, 67, -1.25f, 1.0f, 2},
        {0, 1, 45, 1, 130, 1.0f, 0.0f, 0},
        {0, 1, 40, 5, 17, 1.0f, 1.0f, 1},
        {0, 1, 700, 9, 200, 0.5f, 0.0f, 0},
        {0, 1, 1000, 12, 301, 1.0f, -0.75f, 1},
        /* ... with leading dimensions of 1024 and 2048 floats: A's k-blocks
         * copied per panel, B's rows copied (more than 8 of them, or at
         * least 4 panels) or read in place; 3 trailing steps from the copy */
        {0, 1, 32, 10, 1000, 1.0f, 0.0f, 24},
        {0, 1, 32, 6, 1000, 0.5f, -0.75f, 24},
        {0, 1, 90, 5, 1027, 1.0f, 1.0f, 1021},
        {0, 1, 16, 16, 300, -1.25f, 0.0f, 724},
        /* the other orientations at those strides: A packed instead of
         * read in place (a narrow region), B's rows copied apart for the
         * transposed orientation (16 rows; a 3-step last block), and the
         * normal orientation for fewer rows */
        {0, 0, 64, 16, 1000, 1.0f, 0.0f, 24},
        {0, 0, 40, 16, 200, 0.5f, 1.0f, 824}, /* one k-block: not the narrow path */
        {0, 1, 16, 72, 1000, 1.0f, 1.0f, 24},
        {0, 1, 16, 40, 1027, 0.5f, 0.0f, 1021},
        {0, 1, 8, 64, 1000, 1.0f, -0.75f, 24},
    };
    rng r = {77};
    sb_backend *ref = make("ref", SB_MODE_CANONICAL, 1, 0);
    CHECK(ref, "ref");
    int skipped_isa[N_ISAS] = {0};
    const int n = (int)(sizeof paths / sizeof paths[0]);
    for (int k = 0; k < n; k++)
        if (gemm_on_every_path(ref, &r, &paths[k], 0, skipped_isa)) return 1;
    sb_backend_free(ref);
    printf("%d shapes bitwise equal to ref on", n);
    for (int isa = 0; isa < N_ISAS; isa++)
        printf(" %s%s", ISAS[isa], skipped_isa[isa] ? " (not on this CPU: skipped)" : "");
    printf(", threads 1..8\n");
    return 0;
}

/* ====================================================================== */
/* 4. every other op: ref == blas on every path and thread count          */
/* ====================================================================== */

/* Runs the op sequence of one training step's kernels on `be` and appends
 * every output to `out` (host floats); returns the number written. */
typedef struct op_inputs {
    int B, N, K, C;
    float *x, *g, *w, *dw, *mask, *logits;
    int32_t *labels;
} op_inputs;

static size_t run_ops(sb_backend *be, const op_inputs *in, float *out, const char *what,
                      int *fail) {
    size_t n = (size_t)in->B * in->N, at = 0;
    arena a = {.be = be};
    float *x = put(&a, in->x, n), *g = put(&a, in->g, n), *mask = put(&a, in->mask, n);
    float *y = put(&a, NULL, n), *d = put(&a, in->g, n);
    float *bias = put(&a, in->w, (size_t)in->N), *db = put(&a, in->w, (size_t)in->N);
    size_t nl = (size_t)in->B * in->C;
    float *logits = put(&a, in->logits, nl), *probs = put(&a, NULL, nl), *loss = put(&a, NULL, 1);
    float *dlog = logits; /* reused once the forward has read it (MAX_BUFS) */
    float *labels = put(&a, in->labels, (size_t)in->B);
    size_t nw = (size_t)in->N * in->K;
    float *xk = put(&a, in->x, (size_t)in->B * in->K), *dW = put(&a, NULL, nw);
    float *pw = put(&a, in->w, n), *pm = put(&a, in->g, n), *pv = put(&a, NULL, n);
#define TAKE(ptr, cnt) (get(&a, out + at, (ptr), (cnt)), at += (cnt))
    be->i->bias_add(be, x, bias, in->B, in->N);
    TAKE(x, n);
    be->i->bias_grad(be, db, g, in->B, in->N);
    TAKE(db, (size_t)in->N);
    const sb_act acts[] = {SB_ACT_RELU, SB_ACT_TANH, SB_ACT_GELU};
    for (int k = 0; k < 3; k++) {
        be->i->act_forward(be, acts[k], y, x, n);
        TAKE(y, n);
        be->i->act_backward(be, acts[k], d, g, x, n);
        TAKE(d, n);
    }
    be->i->xent_forward(be, probs, loss, logits, (const int32_t *)labels, in->B, in->C);
    TAKE(probs, nl);
    TAKE(loss, 1);
    be->i->xent_backward(be, dlog, probs, (const int32_t *)labels, in->B, in->C);
    TAKE(dlog, nl);
    be->i->weight_grad(be, dW, g, xk, in->B, in->N, in->K);
    TAKE(dW, nw);
    be->i->dropout_forward(be, y, x, mask, n, 1.25f);
    TAKE(y, n);
    be->i->dropout_backward(be, d, g, mask, n, 1.25f);
    TAKE(d, n);
    be->i->sgd_update(be, pw, pm, g, n, 0.01f, 0.9f, 1e-4f);
    TAKE(pw, n);
    TAKE(pm, n);
    for (int t = 1; t <= 3; t++) be->i->adam_update(be, pw, pm, pv, g, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, t);
    TAKE(pw, n);
    TAKE(pm, n);
    TAKE(pv, n);
    be->i->zero(be, y, n);
    TAKE(y, n);
#undef TAKE
    if (!guards_ok(&a, what)) *fail = 1;
    arena_free(&a);
    return at;
}

static int canonical_ops_should_equal_ref_bitwise_on_every_path_and_thread_count(void) {
    rng r = {77};
    /* B x N: small, odd, multi-block (B > 64), and large enough that blas
     * splits the elementwise ops among its workers (> 16384 elements) */
    const int dims[][4] = {{1, 1, 1, 1},     {3, 5, 7, 2},     {32, 32, 16, 4},
                           {65, 33, 17, 10}, {200, 97, 31, 7}, {300, 128, 784, 10},
                           {64, 256, 784, 10}};
    sb_backend *ref = make("ref", SB_MODE_CANONICAL, 1, 0);
    CHECK(ref, "ref");
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        op_inputs in = {.B = dims[di][0], .N = dims[di][1], .K = dims[di][2], .C = dims[di][3]};
        size_t n = (size_t)in.B * in.N, nmax = (size_t)in.B * (in.N > in.K ? in.N : in.K);
        in.x = new_floats(nmax);
        in.g = new_floats(n);
        in.w = new_floats(n);
        in.mask = new_floats(n);
        in.logits = new_floats((size_t)in.B * in.C);
        in.labels = calloc((size_t)in.B, sizeof *in.labels);
        fill(&r, in.x, nmax, -4, 4);
        fill(&r, in.g, n, -1, 1);
        fill(&r, in.w, n, -0.5f, 0.5f);
        fill(&r, in.logits, (size_t)in.B * in.C, -6, 6);
        fill_labels(&r, in.labels, in.B, in.C);
        for (size_t i = 0; i < n; i++) in.mask[i] = rng_next(&r) % 5 ? 1.0f : 0.0f;
        size_t cap = 20 * n + 3 * (size_t)in.B * in.C + (size_t)in.N * in.K + in.N + 1;
        float *want = new_floats(cap), *got = new_floats(cap);
        int fail = 0;
        size_t cnt = run_ops(ref, &in, want, "ref", &fail);
        CHECK(!fail && cnt <= cap, "ref ops");
        for (int isa = 0; isa < N_ISAS; isa++) {
            for (int th = 1; th <= 8; th++) {
                int skip;
                sb_backend *be = make_canon_blas(ISAS[isa], th, &skip);
                if (skip) break;
                CHECK(be, "blas canonical");
                char what[128];
                snprintf(what, sizeof what, "blas/%s/%d B=%d N=%d K=%d C=%d", ISAS[isa], th, in.B,
                         in.N, in.K, in.C);
                size_t c2 = run_ops(be, &in, got, what, &fail);
                sb_backend_free(be);
                CHECK(!fail && c2 == cnt, "%s: guards or count", what);
                if (same_bits(what, got, want, cnt)) return 1;
            }
        }
        free(in.x), free(in.g), free(in.w), free(in.mask), free(in.logits), free(in.labels);
        free(want), free(got);
    }
    sb_backend_free(ref);
    return 0;
}

/* ====================================================================== */
/* 5. accuracy against float64, next to OpenBLAS                          */
/* ====================================================================== */

/* Per element, the error relative to the condition sum_k |a_ik||b_kj| (the
 * quantity Higham's bound gamma_K multiplies): |c - c64| / sum|a||b|. The
 * canonical GEMM runs k-blocks of SB_CANON_KB (256) steps, each one FMA
 * chain, and adds the block sums; OpenBLAS runs FMA chains over its own
 * k-blocks (448 here) and adds those. Up to 256 steps the two are the same
 * chain (the same bits); beyond, a single chain's error would grow like K
 * (measured before the blocks: 1.6x OpenBLAS's mean error at K = 784, 3.2x
 * at 4000, 5.6x at 16384), the blocked one's like 256*sqrt(K/256). The
 * check, shape by shape (a pooled average would let many short shapes hide
 * one long one): the canonical mean error at most 1.02x OpenBLAS's, its
 * max at most 1.5x (a margin for the sampling noise of a maximum; measured
 * ratios are printed), and every error within gamma_K. */
static int canonical_gemm_error_should_be_no_worse_than_openblas(void) {
    rng r = {99};
    sb_backend *be = make("blas", SB_MODE_CANONICAL, 1, 0);
    CHECK(be, "blas canonical");
    const int shapes[][3] = {{64, 256, 784}, {64, 784, 256}, {256, 784, 64}, {64, 10, 256},
                             {128, 128, 1024}, {50, 60, 4000},  {33, 47, 301},  {256, 256, 256},
                             {16, 72, 6272},  {32, 32, 16384}, {10, 9, 25088}};
    int over_gamma = 0, worse = 0;
    openblas_set_num_threads(1);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        float *A = new_floats((size_t)M * K), *B = new_floats((size_t)K * N);
        float *Cc = new_floats((size_t)M * N), *Co = new_floats((size_t)M * N);
        fill(&r, A, (size_t)M * K, -1, 1);
        fill(&r, B, (size_t)K * N, -1, 1);
        be->i->gemm(be, 0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, Cc, N);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f,
                    Co, N);
        double c_max = 0, o_max = 0, c_sum = 0, o_sum = 0;
        for (int i = 0; i < M; i++) {
            for (int j = 0; j < N; j++) {
                double exact = 0, cond = 0;
                for (int k = 0; k < K; k++) {
                    double p = (double)A[(size_t)i * K + k] * (double)B[(size_t)k * N + j];
                    exact += p;
                    cond += fabs(p);
                }
                double ec = fabs(Cc[(size_t)i * N + j] - exact) / cond;
                double eo = fabs(Co[(size_t)i * N + j] - exact) / cond;
                if (ec > gamma_n(K)) over_gamma = 1;
                c_sum += ec, o_sum += eo;
                if (ec > c_max) c_max = ec;
                if (eo > o_max) o_max = eo;
            }
        }
        double c_mean = c_sum / ((double)M * N), o_mean = o_sum / ((double)M * N);
        int bad = c_mean > 1.02 * o_mean || c_max > 1.5 * o_max;
        printf("  %4dx%4dx%5d  mean rel error: canonical %.3g, OpenBLAS %.3g (x%.2f); max %.3g, "
               "%.3g (x%.2f)%s\n",
               M, N, K, c_mean, o_mean, c_mean / o_mean, c_max, o_max, c_max / o_max,
               bad ? "  WORSE" : "");
        worse += bad;
        free(A), free(B), free(Cc), free(Co);
    }
    sb_backend_free(be);
    CHECK(!over_gamma, "an error exceeded Higham's gamma_K bound");
    CHECK(!worse, "%d shapes with a mean error above 1.02x or a max above 1.5x OpenBLAS's", worse);
    return 0;
}

/* ====================================================================== */
/* 6. the switch                                                          */
/* ====================================================================== */

static int canonical_isa_switch_should_reject_unknown_values(void) {
    int skip;
    setenv("SB_CANONICAL_ISA", "sse9", 1);
    sb_backend_config cfg = {.mode = SB_MODE_CANONICAL, .threads = 2};
    sb_error err = {0};
    sb_backend *be = sb_backend_new("blas", &cfg, &err);
    unsetenv("SB_CANONICAL_ISA");
    CHECK(!be && strstr(err.msg, "SB_CANONICAL_ISA=sse9"), "accepted or unclear: '%s'", err.msg);
    be = make_canon_blas("scalar", 2, &skip);
    CHECK(be && be->mode == SB_MODE_CANONICAL && be->threads == 2, "scalar path");
    sb_backend_free(be);
    CHECK(sb_canon_isa_supported(SB_CANON_ISA_SCALAR), "scalar always runs");
    printf("best path on this CPU: %s\n", sb_canon_isa_name(sb_canon_isa_best()));
    return 0;
}

/* The array forms on every path this CPU runs: each element's bits equal
 * the scalar function's, over a walk through the whole float range (every
 * 997th bit pattern, both signs, NaNs and infinities included), dense runs
 * around every branch point of the scalar code, every tail length 0..40 and
 * in place (y == x). */
static float from_u32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int vector_math_matches(sb_canon_isa isa, const float *x, size_t n, float *y,
                               const char *what) {
    for (int f = 0; f < 2; f++) {
        if (f == 0) sb_canon_tanhf_n(isa, y, x, n);
        else sb_canon_expf_n(isa, y, x, n);
        for (size_t i = 0; i < n; i++) {
            float want = f == 0 ? sb_canon_tanhf(x[i]) : sb_canon_expf(x[i]);
            if (!same_float(y[i], want)) {
                fprintf(stderr, "%s %s (%s): x = %a (0x%08x): got %a, scalar %a\n",
                        f == 0 ? "tanh" : "exp", sb_canon_isa_name(isa), what, x[i],
                        bits_of(x[i]), y[i], want);
                return 0;
            }
        }
    }
    return 1;
}

static int canonical_vector_math_should_give_the_scalar_bits_on_every_path(void) {
    enum { CHUNK = 1 << 16 };
    float *x = malloc(CHUNK * sizeof *x), *y = malloc(CHUNK * sizeof *y);
    CHECK(x && y, "out of memory");
    static const float edges[] = {0.55f, 9.5f, 0x1p-12f, 0x1.62e42ep+6f, -104.0f, 0.0f,
                                  0x1p-126f, 44.0f, 0.275f, 4.75f, 1.0f, 88.0f};
    int tested = 0;
    for (int isa = SB_CANON_ISA_SCALAR; isa <= SB_CANON_ISA_AVX512; isa++) {
        if (!sb_canon_isa_supported((sb_canon_isa)isa)) continue;
        tested++;
        /* the whole range, CHUNK values at a time */
        uint64_t u = 0;
        while (u < (1ull << 32)) {
            size_t n = 0;
            for (; n < CHUNK && u < (1ull << 32); n++, u += 997) x[n] = from_u32((uint32_t)u);
            if (!vector_math_matches((sb_canon_isa)isa, x, n, y, "range walk")) goto fail;
        }
        /* 2000 neighbours of each branch point, both signs */
        for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++) {
            size_t n = 0;
            uint32_t b = bits_of(edges[e]);
            for (int d = -500; d < 500; d++) {
                uint32_t v = (uint32_t)((int64_t)b + d);
                if (b == 0 && d < 0) v = (uint32_t)-d;
                x[n++] = from_u32(v);
                x[n++] = from_u32(v ^ 0x80000000u);
            }
            if (!vector_math_matches((sb_canon_isa)isa, x, n, y, "branch points")) goto fail;
        }
        /* tails and in place */
        for (size_t n = 0; n <= 40; n++) {
            for (size_t i = 0; i < n; i++) x[i] = (float)((int)i - 20) * 0.37f;
            if (!vector_math_matches((sb_canon_isa)isa, x, n, y, "tail")) goto fail;
            float want[40];
            for (size_t i = 0; i < n; i++) want[i] = sb_canon_tanhf(x[i]);
            sb_canon_tanhf_n((sb_canon_isa)isa, x, x, n);
            for (size_t i = 0; i < n; i++)
                if (!same_float(x[i], want[i])) {
                    fprintf(stderr, "tanh %s in place, n = %zu: element %zu differs\n",
                            sb_canon_isa_name((sb_canon_isa)isa), n, i);
                    goto fail;
                }
        }
    }
    printf("%d paths give the scalar bits\n", tested);
    free(x);
    free(y);
    return 0;
fail:
    free(x);
    free(y);
    return 1;
}

static const sb_test_case cases[] = {
    SB_CASE(canonical_math_should_stay_within_its_ulp_bounds_of_double_libm),
    SB_CASE(canonical_math_should_follow_c99_for_special_values),
    SB_CASE(canonical_vector_math_should_give_the_scalar_bits_on_every_path),
    SB_CASE(canonical_sum_should_equal_the_documented_strided_tree_for_every_length),
    SB_CASE(canonical_gemm_should_equal_ref_bitwise_on_every_path_and_thread_count),
    SB_CASE(canonical_gemm_paths_should_equal_ref_bitwise_on_every_path_and_thread_count),
    SB_CASE(canonical_ops_should_equal_ref_bitwise_on_every_path_and_thread_count),
    SB_CASE(canonical_gemm_error_should_be_no_worse_than_openblas),
    SB_CASE(canonical_isa_switch_should_reject_unknown_values),
};

SB_TEST_MAIN(cases)
