/* test_kernels_more.c — tests of the weight-gradient and dropout ops of
 * kernels/ (weight_grad, dropout_forward, dropout_backward): the "ref" oracle
 * against finite differences, every "blas" path against "ref" (both modes,
 * 1 and 2 threads), the determinism of blas's deterministic weight_grad and
 * the variation of its fast, perturbed one.
 *
 * What it is not: a benchmark, and not a test of the engine's layers. It
 * lives beside test_kernels.c (the older ops) to keep both files readable;
 * the helpers they share are in kernels_test_util.h. Data comes from the
 * seeded splitmix64 there, so a failure reproduces.
 */
#include "kernels_test_util.h"

#include <cblas.h>

static const sb_mode modes[] = {SB_MODE_DETERMINISTIC, SB_MODE_FAST};
static const int thread_counts[] = {1, 2};

/* ====================================================================== */
/* weight_grad data                                                       */
/* ====================================================================== */

/* dout[B,N] and inp[B,K] on the host. */
typedef struct wg_data {
    int B, N, K;
    float *dout, *inp;
} wg_data;

/* wide = 0: values in [-1,1]. wide = 1: dout = ±10^[-3,6] (9 decades), inp in
 * [-1,1], so that any change in the order of the batch sum changes the
 * rounded float result. */
static void wg_data_new(wg_data *d, int B, int N, int K, int wide, uint64_t seed) {
    rng r = {seed};
    d->B = B, d->N = N, d->K = K;
    d->dout = new_floats((size_t)B * N);
    d->inp = new_floats((size_t)B * K);
    for (size_t i = 0; i < (size_t)B * N; i++) {
        float v = rng_unif(&r, -1, 1);
        d->dout[i] = wide ? (v < 0 ? -1.0f : 1.0f) * powf(10.0f, rng_unif(&r, -3, 6)) : v;
    }
    fill(&r, d->inp, (size_t)B * K, -1, 1);
}

static void wg_data_free(wg_data *d) { free(d->dout), free(d->inp); }

/* Backend buffers for repeated calls on one backend. */
typedef struct wg_bufs {
    arena A;
    float *dout, *inp, *dW;
    float *nan_fill; /* host: N*K NaN canaries written into dW before each call */
} wg_bufs;

static void wg_bufs_new(wg_bufs *wb, sb_backend *be, const wg_data *d) {
    memset(wb, 0, sizeof *wb);
    wb->A.be = be;
    size_t nk = (size_t)d->N * d->K;
    wb->dout = put(&wb->A, d->dout, (size_t)d->B * d->N);
    wb->inp = put(&wb->A, d->inp, (size_t)d->B * d->K);
    wb->nan_fill = new_floats(nk);
    for (size_t i = 0; i < nk; i++) wb->nan_fill[i] = canary();
    wb->dW = put(&wb->A, wb->nan_fill, nk);
}

static void wg_bufs_free(wg_bufs *wb) {
    arena_free(&wb->A);
    free(wb->nan_fill);
}

/* dW (host, N*K floats) = weight_grad on the backend. dW's backend buffer
 * holds NaN canaries before the call: the op overwrites dW (kernels.h), so a
 * kernel that reads or accumulates into it returns NaN, which every
 * comparison below reports as a failure. */
static void wg_call(wg_bufs *wb, const wg_data *d, float *dW) {
    sb_backend *be = wb->A.be;
    size_t nk = (size_t)d->N * d->K;
    set(&wb->A, wb->dW, wb->nan_fill, nk);
    be->i->weight_grad(be, wb->dW, wb->dout, wb->inp, d->B, d->N, d->K);
    get(&wb->A, dW, wb->dW, nk);
}

/* One call on a fresh set of buffers; returns 1 when guards are intact. */
static int wg_once(sb_backend *be, const wg_data *d, float *dW, const char *what) {
    wg_bufs wb;
    wg_bufs_new(&wb, be, d);
    wg_call(&wb, d, dW);
    int ok = guards_ok(&wb.A, what);
    wg_bufs_free(&wb);
    return ok;
}

/* Per element, the limit on |a - b| for two float computations of
 * sum_b dout[b,n]*inp[b,k] in any order: each is within
 * gamma_{B+1} * sum_b |dout[b,n]*inp[b,k]| of the exact sum. B+1 covers every
 * path here: ref has one rounded product and at most B-1 rounded additions per
 * term; OpenBLAS fuses the product (fewer); fast mode rounds at most rows-1
 * times inside an SGEMM chunk and then nchunks-1 times adding chunk partials
 * into dW (the first add is onto +0.0f, exact), rows + nchunks - 2 <= B - 1.
 * Two such results are within twice that of each other. */
static double *wg_limits(const wg_data *d) {
    size_t nk = (size_t)d->N * d->K;
    double *lim = malloc((nk ? nk : 1) * sizeof *lim);
    SB_ASSERT(lim);
    for (size_t i = 0; i < nk; i++) lim[i] = 0;
    for (int b = 0; b < d->B; b++)
        for (int n = 0; n < d->N; n++) {
            double g = fabs((double)d->dout[(size_t)b * d->N + n]);
            const float *x = d->inp + (size_t)b * d->K;
            double *row = lim + (size_t)n * d->K;
            for (int k = 0; k < d->K; k++) row[k] += g * fabs((double)x[k]);
        }
    double f = 2 * gamma_n(d->B + 1);
    for (size_t i = 0; i < nk; i++) lim[i] *= f;
    return lim;
}

/* ====================================================================== */
/* 1. finite differences on "ref" (and the same check on every blas path) */
/* ====================================================================== */

/* L(W) = sum over (b,n) of G[b,n] * Y[b,n] with Y[B,N] = X[B,K] · W[N,K]^T
 * (the linear layer's forward, by the backend's gemm), summed in double from
 * the float Y. dL/dW = G^T X, which is weight_grad(dout = G, inp = X). */
enum { GB = 19, GN = 4, GK = 7 }; /* GB = 19: three 8-row chunks in fast mode */

static double wg_loss(arena *A, float *dX, float *dWt, float *dY, const float *W, const float *G) {
    sb_backend *be = A->be;
    set(A, dWt, W, GN * GK);
    be->i->gemm(be, 0, 1, GB, GN, GK, 1.0f, dX, GK, dWt, GK, 0.0f, dY, GN);
    float Y[GB * GN];
    get(A, Y, dY, GB * GN);
    double L = 0;
    for (int i = 0; i < GB * GN; i++) L += (double)Y[i] * (double)G[i];
    return L;
}

static int wg_gradcheck(sb_backend *be, const char *tag) {
    rng r = {401};
    float X[GB * GK], W[GN * GK], G[GB * GN], analytic[GN * GK];
    fill(&r, X, GB * GK, -1, 1), fill(&r, W, GN * GK, -1, 1), fill(&r, G, GB * GN, -1, 1);
    arena A = {.be = be};
    float *dX = put(&A, X, GB * GK), *dWt = put(&A, W, GN * GK), *dY = put(&A, NULL, GB * GN);
    float *dG = put(&A, G, GB * GN), *dgrad = put(&A, NULL, GN * GK);
    be->i->weight_grad(be, dgrad, dG, dX, GB, GN, GK);
    get(&A, analytic, dgrad, GN * GK);

    /* L is linear in W, so the central difference has no truncation error
     * and a large step is best: h = 0.5. What is left is rounding. Each
     * float Y[b,n] is within gamma_GK * sum_k |x||w| <= 4.2e-7 * 7 * 1.5 =
     * 4.4e-6 of exact (|x| <= 1, |w| <= 1 + h); moving W[n,k] changes the GB
     * outputs of column n only (the others repeat bit for bit), so the
     * quotient is off by at most GB * 2 * 4.4e-6 / (2h) = 1.7e-4. The
     * analytic sum of GB = 19 products adds gamma_20 * 19 = 2.3e-5. 3e-4 is
     * that worst case rounded up; a missed or doubled row, a transposed dW
     * or a wrong operand is off by O(0.1). */
    const float h = 0.5f;
    const double atol = 3e-4;
    double numeric[GN * GK];
    for (int i = 0; i < GN * GK; i++) {
        float keep = W[i], up = keep + h, dn = keep - h;
        W[i] = up;
        double Lp = wg_loss(&A, dX, dWt, dY, W, G);
        W[i] = dn;
        double Lm = wg_loss(&A, dX, dWt, dY, W, G);
        W[i] = keep;
        numeric[i] = (Lp - Lm) / ((double)up - (double)dn);
    }
    char what[96];
    snprintf(what, sizeof what, "%s weight_grad vs finite differences", tag);
    int fails = check_grad(what, analytic, numeric, GN * GK, atol, 0);
    fails += !guards_ok(&A, what);
    arena_free(&A);
    return fails;
}

static int gradcheck_should_match_finite_differences_for_weight_grad(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = wg_gradcheck(ref, "ref");
    sb_backend_free(ref);
    for (int mi = 0; mi < 2; mi++)
        for (int ti = 0; ti < 2; ti++) {
            sb_backend *blas = make("blas", modes[mi], thread_counts[ti], 0);
            CHECK(blas, "blas backend");
            char tag[48];
            snprintf(tag, sizeof tag, "blas %s/%d", sb_mode_name(modes[mi]), thread_counts[ti]);
            fails += wg_gradcheck(blas, tag);
            sb_backend_free(blas);
        }
    return fails;
}

/* A keep-mask of n entries, about 30% dropped (0.0f), the rest 1.0f. */
static void fill_mask(rng *r, float *mask, size_t n) {
    for (size_t i = 0; i < n; i++) mask[i] = rng_next(r) % 10 < 3 ? 0.0f : 1.0f;
}

/* Forward/backward consistency with a fixed mask: the gradient dropout_backward
 * gives must be the derivative of L(x) = sum R ⊙ dropout_forward(x). */
static int dropout_gradcheck(sb_backend *be, float scale, const char *tag) {
    enum { N = 97 };
    rng r = {402};
    float x[N], R[N], mask[N], analytic[N], out[N];
    fill(&r, x, N, -1, 1), fill(&r, R, N, -1, 1), fill_mask(&r, mask, N);
    arena A = {.be = be};
    float *dx = put(&A, x, N), *dR = put(&A, R, N), *dmask = put(&A, mask, N);
    float *dout = put(&A, NULL, N), *dg = put(&A, NULL, N);
    be->i->dropout_backward(be, dg, dR, dmask, N, scale);
    get(&A, analytic, dg, N);

    /* Linear in x: no truncation error, h = 0.25. A kept output is
     * fl(x*scale), within u*|x|*scale <= 6e-8 * 1.25 * 1.43 = 1.1e-7 of
     * exact; only output i moves, so the quotient is off by at most
     * |R| * 2 * 1.1e-7 / (2h) = 4.3e-7, and the analytic dout*scale by one
     * rounding more (< 1e-7). 1e-6 is ~2x that; a missing or squared scale
     * is off by 0.43|R| (~0.4 at the largest of 97 draws). A gradient through
     * a dropped element is caught exactly: dropped elements must come out
     * exactly 0 on both sides (checked after). */
    const float h = 0.25f;
    double numeric[N];
    for (int i = 0; i < N; i++) {
        float keep = x[i], up = keep + h, dn = keep - h;
        double L[2];
        for (int s = 0; s < 2; s++) {
            x[i] = s == 0 ? up : dn;
            set(&A, dx, x, N);
            be->i->dropout_forward(be, dout, dx, dmask, N, scale);
            get(&A, out, dout, N);
            L[s] = 0;
            for (int k = 0; k < N; k++) L[s] += (double)out[k] * (double)R[k];
        }
        x[i] = keep;
        numeric[i] = (L[0] - L[1]) / ((double)up - (double)dn);
    }
    char what[96];
    snprintf(what, sizeof what, "%s dropout scale=%g vs finite differences", tag, scale);
    int fails = check_grad(what, analytic, numeric, N, 1e-6, 0);
    for (int i = 0; i < N; i++) {
        if (mask[i] == 0.0f && (analytic[i] != 0.0f || numeric[i] != 0.0)) {
            fprintf(stderr, "%s: dropped element %d has gradient %.9g (numeric %.9g)\n", what, i,
                    analytic[i], numeric[i]);
            fails++;
            break;
        }
    }
    fails += !guards_ok(&A, what);
    arena_free(&A);
    return fails;
}

static int gradcheck_should_match_finite_differences_for_dropout(void) {
    /* p = 0.3 (scale not a power of two, so the product rounds) and p = 0.5 */
    const float scales[] = {1.0f / (1.0f - 0.3f), 2.0f};
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    sb_backend *blas = make("blas", SB_MODE_FAST, 2, 0);
    CHECK(ref && blas, "backends");
    int fails = 0;
    for (int s = 0; s < 2; s++)
        fails += dropout_gradcheck(ref, scales[s], "ref") +
                 dropout_gradcheck(blas, scales[s], "blas fast/2");
    sb_backend_free(ref);
    sb_backend_free(blas);
    return fails;
}

/* ====================================================================== */
/* 2. dropout: the formula of kernels.h, bit for bit, on every backend    */
/* ====================================================================== */

/* n = 40001 crosses the size at which blas starts using its thread pool. Kept
 * elements: out = inp*scale, one rounding, computed here the same way (this
 * file is built with -ffp-contract=off too). Dropped elements are +0.0f even
 * where the input is Inf or NaN (the op selects, it does not multiply by the
 * mask), and a mask of -0.0f drops (it compares equal to 0). Backward adds the
 * selected term into a non-zero gradient: base + term, one addition.
 * Tolerance 0: this is the specification, not an approximation of it. */
static int dropout_formula(sb_backend *be, const char *tag) {
    enum { N = 40001 };
    const float scale = 1.0f / (1.0f - 0.1f);
    rng r = {403};
    float *x = new_floats(N), *mask = new_floats(N), *dout = new_floats(N);
    float *base = new_floats(N), *got = new_floats(N), *want = new_floats(N);
    fill(&r, x, N, -5, 5), fill(&r, dout, N, -1, 1), fill(&r, base, N, -1, 1);
    fill_mask(&r, mask, N);
    for (int i = 0; i < N; i += 101) {
        if (mask[i] == 0.0f) { /* non-finite values where they must not leak */
            x[i] = (i / 101) % 2 ? INFINITY : NAN;
            dout[i] = (i / 101) % 2 ? -INFINITY : NAN;
        }
    }
    for (int i = 7; i < N; i += 997) mask[i] = -0.0f;
    arena A = {.be = be};
    float *dx = put(&A, x, N), *dmask = put(&A, mask, N), *dd = put(&A, dout, N);
    float *dy = put(&A, NULL, N), *dg = put(&A, base, N);
    int fails = 0;
    char what[96];

    be->i->dropout_forward(be, dy, dx, dmask, N, scale);
    get(&A, got, dy, N);
    for (int i = 0; i < N; i++) want[i] = mask[i] != 0.0f ? x[i] * scale : 0.0f;
    snprintf(what, sizeof what, "%s dropout_forward", tag);
    fails += same_bits(what, got, want, N);

    be->i->dropout_backward(be, dg, dd, dmask, N, scale);
    get(&A, got, dg, N);
    for (int i = 0; i < N; i++) want[i] = base[i] + (mask[i] != 0.0f ? dout[i] * scale : 0.0f);
    snprintf(what, sizeof what, "%s dropout_backward adds into the gradient", tag);
    fails += same_bits(what, got, want, N);
    fails += !guards_ok(&A, what);
    arena_free(&A);
    free(x), free(mask), free(dout), free(base), free(got), free(want);
    return fails;
}

static int dropout_should_scale_kept_zero_dropped_and_add_into_gradients_bitwise(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = dropout_formula(ref, "ref");
    sb_backend_free(ref);
    for (int mi = 0; mi < 2; mi++)
        for (int ti = 0; ti < 2; ti++) {
            sb_backend *blas = make("blas", modes[mi], thread_counts[ti], 0);
            CHECK(blas, "blas backend");
            char tag[48];
            snprintf(tag, sizeof tag, "blas %s/%d", sb_mode_name(modes[mi]), thread_counts[ti]);
            fails += dropout_formula(blas, tag);
            sb_backend_free(blas);
        }
    return fails;
}

/* ====================================================================== */
/* 3. every blas path against ref                                         */
/* ====================================================================== */

static const struct {
    int B, N, K;
} wg_shapes[] = {
    {1, 1, 1},     {5, 3, 7},     {8, 4, 9},       {9, 4, 9},      {37, 13, 29},
    {130, 7, 33},  {1000, 33, 17}, {64, 10, 256},  {64, 256, 256}, {64, 256, 784},
    {0, 3, 5}, /* an empty batch: dW = +0.0f everywhere */
};
#define N_WG_SHAPES (sizeof wg_shapes / sizeof wg_shapes[0])

static int blas_weight_grad_should_match_ref_within_summation_bound(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    for (size_t s = 0; s < N_WG_SHAPES; s++) {
        wg_data d;
        wg_data_new(&d, wg_shapes[s].B, wg_shapes[s].N, wg_shapes[s].K, 0, 500 + s);
        size_t nk = (size_t)d.N * d.K;
        float *want = new_floats(nk), *got = new_floats(nk), *zeros = new_floats(nk);
        double *lim = wg_limits(&d);
        char what[128];
        snprintf(what, sizeof what, "ref weight_grad B=%d N=%d K=%d", d.B, d.N, d.K);
        fails += !wg_once(ref, &d, want, what);
        if (d.B == 0) fails += same_bits(what, want, zeros, nk);
        for (int mi = 0; mi < 2; mi++)
            for (int ti = 0; ti < 2; ti++) {
                sb_backend *blas = make("blas", modes[mi], thread_counts[ti], 0);
                CHECK(blas, "blas backend");
                snprintf(what, sizeof what, "blas %s/%d weight_grad B=%d N=%d K=%d",
                         sb_mode_name(modes[mi]), thread_counts[ti], d.B, d.N, d.K);
                fails += !wg_once(blas, &d, got, what);
                /* the limit: see wg_limits (0 for B = 0: both must be +0.0f) */
                fails += within(what, got, want, lim, 0, nk);
                if (d.B == 0) fails += same_bits(what, got, zeros, nk);
                sb_backend_free(blas);
            }
        free(want), free(got), free(zeros), free(lim);
        wg_data_free(&d);
    }
    sb_backend_free(ref);
    return fails;
}

static int blas_dropout_should_equal_ref_bitwise(void) {
    /* Tolerance 0: blas runs ref's own loops on disjoint ranges (blas.c), so
     * any difference is a partition bug (a skipped, doubled or shifted
     * element), not rounding. 40001 crosses the pool threshold. */
    static const size_t sizes[] = {1, 481, 40001};
    const float scales[] = {1.0f / (1.0f - 0.1f), 1.0f / (1.0f - 0.5f), 1.0f / (1.0f - 0.9f)};
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    for (int mi = 0; mi < 2; mi++)
        for (int ti = 0; ti < 2; ti++) {
            sb_backend *blas = make("blas", modes[mi], thread_counts[ti], 0);
            CHECK(blas, "blas backend");
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
                size_t n = sizes[s];
                for (int k = 0; k < 3; k++) {
                    rng r = {600 + 10 * s + (uint64_t)k};
                    float *x = new_floats(n), *mask = new_floats(n), *g0 = new_floats(n);
                    float *out[2], *grad[2];
                    fill(&r, x, n, -5, 5), fill(&r, g0, n, -1, 1), fill_mask(&r, mask, n);
                    sb_backend *bes[2] = {ref, blas};
                    char what[128];
                    snprintf(what, sizeof what, "blas %s/%d n=%zu scale=%g",
                             sb_mode_name(modes[mi]), thread_counts[ti], n, scales[k]);
                    for (int b = 0; b < 2; b++) {
                        out[b] = new_floats(n), grad[b] = new_floats(n);
                        arena A = {.be = bes[b]};
                        float *dx = put(&A, x, n), *dm = put(&A, mask, n);
                        float *dy = put(&A, NULL, n), *dg = put(&A, g0, n);
                        bes[b]->i->dropout_forward(bes[b], dy, dx, dm, n, scales[k]);
                        /* backward with the forward's input as dout */
                        bes[b]->i->dropout_backward(bes[b], dg, dx, dm, n, scales[k]);
                        get(&A, out[b], dy, n), get(&A, grad[b], dg, n);
                        fails += !guards_ok(&A, what);
                        arena_free(&A);
                    }
                    char w2[160];
                    snprintf(w2, sizeof w2, "%s dropout_forward", what);
                    fails += same_bits(w2, out[1], out[0], n);
                    snprintf(w2, sizeof w2, "%s dropout_backward", what);
                    fails += same_bits(w2, grad[1], grad[0], n);
                    for (int b = 0; b < 2; b++) free(out[b]), free(grad[b]);
                    free(x), free(mask), free(g0);
                }
            }
            sb_backend_free(blas);
        }
    sb_backend_free(ref);
    return fails;
}

/* ====================================================================== */
/* 4. deterministic weight_grad: repeats, thread counts                   */
/* ====================================================================== */

/* The MLP's three layers at batch 64 (784-256-256-10), a long batch, and a
 * batch longer than OpenBLAS's GEMM_Q on this machine's core (SkylakeX: 448). */
static const struct {
    int B, N, K;
} det_shapes[] = {{64, 256, 784}, {64, 256, 256}, {64, 10, 256}, {1000, 33, 17}, {784, 64, 100}};

static int blas_deterministic_weight_grad_should_repeat_bitwise(void) {
    int fails = 0;
    for (int ti = 0; ti < 2; ti++) {
        sb_backend *be = make("blas", SB_MODE_DETERMINISTIC, thread_counts[ti], 1);
        CHECK(be, "blas backend");
        CHECK(be->perturb == 0, "deterministic backend reports perturb on");
        for (size_t s = 0; s < sizeof det_shapes / sizeof det_shapes[0]; s++) {
            wg_data d;
            wg_data_new(&d, det_shapes[s].B, det_shapes[s].N, det_shapes[s].K, 1, 700 + s);
            size_t nk = (size_t)d.N * d.K;
            float *first = new_floats(nk), *again = new_floats(nk);
            wg_bufs wb;
            wg_bufs_new(&wb, be, &d);
            wg_call(&wb, &d, first);
            for (int rep = 2; rep <= 10; rep++) {
                wg_call(&wb, &d, again);
                char what[128];
                snprintf(what, sizeof what,
                         "blas deterministic/%d (perturb requested) B=%d N=%d K=%d call %d vs 1",
                         thread_counts[ti], d.B, d.N, d.K, rep);
                if (same_bits(what, again, first, nk)) {
                    fails++;
                    break;
                }
            }
            fails += !guards_ok(&wb.A, "weight_grad repeat");
            wg_bufs_free(&wb);
            free(first), free(again);
            wg_data_free(&d);
        }
        sb_backend_free(be);
    }
    return fails;
}

/* What OpenBLAS 0.3.21 does (blas.c's header): one thread runs its serial
 * level-3 driver, two or more its threaded driver, and the two cut a
 * reduction longer than GEMM_Q into K-blocks differently. Here the reduction
 * is the batch. Up to GEMM_Q rows it is one block on either driver, so the
 * bits cannot depend on the thread count; GEMM_Q is at least 256 on every
 * x86 core OpenBLAS 0.3.21 ships (448 on SkylakeX), so batches up to 256 are
 * tested on 1, 2 and 3 threads, with shapes large enough (M*N*K > 2^18) for
 * OpenBLAS to really use its threads. Longer batches are only reported: on
 * SkylakeX, B = 784 gives different bits on 1 and 2 threads. */
static int blas_deterministic_weight_grad_should_not_depend_on_threads_for_batches_up_to_256(void) {
    static const struct {
        int B, N, K;
        int asserted;
    } shapes[] = {{64, 256, 784, 1}, {64, 256, 256, 1}, {64, 10, 256, 1}, {256, 256, 784, 1},
                  {256, 129, 67, 1}, {784, 256, 100, 0}};
    int fails = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        wg_data d;
        wg_data_new(&d, shapes[s].B, shapes[s].N, shapes[s].K, 1, 800 + s);
        size_t nk = (size_t)d.N * d.K;
        float *res[3];
        for (int t = 0; t < 3; t++) {
            res[t] = new_floats(nk);
            sb_backend *be = make("blas", SB_MODE_DETERMINISTIC, t + 1, 0);
            CHECK(be, "blas backend");
            fails += !wg_once(be, &d, res[t], "weight_grad thread count");
            sb_backend_free(be);
        }
        for (int t = 1; t < 3; t++) {
            char what[128];
            snprintf(what, sizeof what,
                     "blas deterministic weight_grad B=%d N=%d K=%d: %d vs 1 thread", d.B, d.N,
                     d.K, t + 1);
            if (shapes[s].asserted) {
                fails += same_bits(what, res[t], res[0], nk);
            } else {
                int differ = memcmp(res[t], res[0], nk * sizeof(float)) != 0;
                printf("  note (not asserted): %s: %s\n", what,
                       differ ? "bits differ (OpenBLAS's K-blocking depends on its thread count)"
                              : "same bits");
            }
        }
        for (int t = 0; t < 3; t++) free(res[t]);
        wg_data_free(&d);
    }
    return fails;
}

/* ====================================================================== */
/* 5. fast weight_grad: perturbation and OpenBLAS's thread count          */
/* ====================================================================== */

/* Calls weight_grad up to 50 times on a fast+perturb backend and counts the
 * calls until the result's bits change. Every result must also stay within
 * the summation bound of ref's (the perturbed order is still a sum of the
 * same terms). Shapes: 512 chunks of values spread over 9 decades, where two
 * different orders give the same float sums with negligible probability, and
 * the MLP's first layer at batch 64 (8 chunks, 32 possible orders, 200704
 * sums). 50 identical results mean the order never changed. */
static int blas_fast_perturbed_weight_grad_should_vary_between_calls(void) {
    static const struct {
        int B, N, K;
    } shapes[] = {{4096, 3, 5}, {64, 256, 784}};
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        wg_data d;
        wg_data_new(&d, shapes[s].B, shapes[s].N, shapes[s].K, 1, 900 + s);
        size_t nk = (size_t)d.N * d.K;
        float *want = new_floats(nk), *first = new_floats(nk), *again = new_floats(nk);
        double *lim = wg_limits(&d);
        fails += !wg_once(ref, &d, want, "ref weight_grad");
        for (int ti = 0; ti < 2; ti++) {
            sb_backend *be = make("blas", SB_MODE_FAST, thread_counts[ti], 1);
            CHECK(be, "blas backend");
            CHECK(be->perturb == 1, "threads=%d: perturb not recorded", thread_counts[ti]);
            char what[128];
            snprintf(what, sizeof what, "blas fast+perturb/%d weight_grad B=%d N=%d K=%d",
                     thread_counts[ti], d.B, d.N, d.K);
            wg_bufs wb;
            wg_bufs_new(&wb, be, &d);
            wg_call(&wb, &d, first);
            fails += within(what, first, want, lim, 0, nk);
            int differed_at = 0;
            for (int rep = 2; rep <= 50 && !differed_at && !fails; rep++) {
                wg_call(&wb, &d, again);
                fails += within(what, again, want, lim, 0, nk);
                if (memcmp(again, first, nk * sizeof(float)) != 0) differed_at = rep;
            }
            if (!differed_at) {
                fprintf(stderr,
                        "%s: 50 calls gave identical bits: the perturbation does not reach the "
                        "summation order\n",
                        what);
                fails++;
            } else {
                printf("  %s: bits changed at call %d\n", what, differed_at);
            }
            fails += !guards_ok(&wb.A, what);
            wg_bufs_free(&wb);
            sb_backend_free(be);
        }
        free(want), free(first), free(again), free(lim);
        wg_data_free(&d);
    }
    sb_backend_free(ref);
    return fails;
}

/* The fast path puts OpenBLAS on one thread while the pool's workers call it
 * and must hand back the process-wide count it found: the run's own (2), or
 * whatever another caller had set (3). */
static int blas_fast_weight_grad_should_restore_the_openblas_thread_count(void) {
    sb_backend *be = make("blas", SB_MODE_FAST, 2, 0);
    CHECK(be, "blas backend");
    wg_data d;
    wg_data_new(&d, 64, 256, 784, 0, 1000);
    float *dW = new_floats((size_t)d.N * d.K);
    int fails = 0;
    const int before[] = {2, 3};
    for (int k = 0; k < 2; k++) {
        openblas_set_num_threads(before[k]);
        fails += !wg_once(be, &d, dW, "fast weight_grad");
        int after = openblas_get_num_threads();
        if (after != before[k]) {
            fprintf(stderr, "OpenBLAS threads: %d before fast weight_grad, %d after\n", before[k],
                    after);
            fails++;
        }
    }
    openblas_set_num_threads(2);
    free(dW);
    wg_data_free(&d);
    sb_backend_free(be);
    return fails;
}

/* Fast mode on one thread without perturb: one worker would finish the
 * chunks in queue order every time, so weight_grad is the whole-batch SGEMM
 * of the deterministic mode (blas.c's header) — the same bits. On two
 * threads the chunked path runs: its result must still be within the
 * summation bound of ref's. */
static int blas_fast_weight_grad_on_one_thread_should_be_the_deterministic_sgemm(void) {
    int fails = 0;
    for (size_t s = 0; s < 3; s++) { /* the MLP's three layers at batch 64 */
        wg_data d;
        wg_data_new(&d, det_shapes[s].B, det_shapes[s].N, det_shapes[s].K, 1, 1100 + s);
        size_t nk = (size_t)d.N * d.K;
        float *det = new_floats(nk), *fast = new_floats(nk), *want = new_floats(nk);
        double *lim = wg_limits(&d);
        sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
        sb_backend *bd = make("blas", SB_MODE_DETERMINISTIC, 1, 0);
        sb_backend *bf = make("blas", SB_MODE_FAST, 1, 0);
        sb_backend *bf2 = make("blas", SB_MODE_FAST, 2, 0);
        CHECK(ref && bd && bf && bf2, "backends");
        CHECK(bf->perturb == 0, "fast backend reports perturb on");
        fails += !wg_once(ref, &d, want, "ref weight_grad");
        fails += !wg_once(bd, &d, det, "deterministic weight_grad");
        fails += !wg_once(bf, &d, fast, "fast/1 weight_grad");
        char what[128];
        snprintf(what, sizeof what, "blas fast/1 vs deterministic/1 weight_grad B=%d N=%d K=%d",
                 d.B, d.N, d.K);
        fails += same_bits(what, fast, det, nk);
        fails += !wg_once(bf2, &d, fast, "fast/2 weight_grad");
        snprintf(what, sizeof what, "blas fast/2 weight_grad B=%d N=%d K=%d", d.B, d.N, d.K);
        fails += within(what, fast, want, lim, 0, nk);
        sb_backend_free(ref), sb_backend_free(bd), sb_backend_free(bf), sb_backend_free(bf2);
        free(det), free(fast), free(want), free(lim);
        wg_data_free(&d);
    }
    return fails;
}

static const sb_test_case cases[] = {
    SB_CASE(gradcheck_should_match_finite_differences_for_weight_grad),
    SB_CASE(gradcheck_should_match_finite_differences_for_dropout),
    SB_CASE(dropout_should_scale_kept_zero_dropped_and_add_into_gradients_bitwise),
    SB_CASE(blas_weight_grad_should_match_ref_within_summation_bound),
    SB_CASE(blas_dropout_should_equal_ref_bitwise),
    SB_CASE(blas_deterministic_weight_grad_should_repeat_bitwise),
    SB_CASE(blas_deterministic_weight_grad_should_not_depend_on_threads_for_batches_up_to_256),
    SB_CASE(blas_fast_perturbed_weight_grad_should_vary_between_calls),
    SB_CASE(blas_fast_weight_grad_should_restore_the_openblas_thread_count),
    SB_CASE(blas_fast_weight_grad_on_one_thread_should_be_the_deterministic_sgemm),
};

SB_TEST_MAIN(cases)
