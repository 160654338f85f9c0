/* test_kernels.c — tests of kernels/: the "ref" oracle against finite
 * differences and double precision; every "blas" op against "ref" in both
 * modes on 1 and 2 threads; blas determinism and fast-mode perturbation; the
 * backend registry and the name tables.
 *
 * What it is not: a benchmark, and not a test of the engine's layers (those
 * compose these ops). weight_grad and dropout are tested in
 * test_kernels_more.c; the helpers both files use (splitmix64 with fixed
 * seeds, so a failure reproduces; guarded buffers; comparisons) are in
 * kernels_test_util.h.
 *
 * Every comparison prints the largest difference, where it is, both values and
 * the limit; NaN and Inf are failures, never skipped. Output buffers sit
 * between guard zones filled with a NaN canary (an overrun changes its bits,
 * an overread poisons the result).
 */
#include "kernels_test_util.h"

/* ====================================================================== */
/* 1. finite-difference gradient checks on "ref"                          */
/* ====================================================================== */

/* Central differences: g = (L(t+h) - L(t-h)) / (fl(t+h) - fl(t-h)); the
 * denominator is the step actually taken (computed exactly in double), so the
 * rounding of t±h to float costs nothing. Losses are summed in double from
 * the float outputs, so the only errors are the float rounding of the outputs
 * and the truncation term h^2/6 * f'''. */

enum { LB = 5, LIN = 7, LOUT = 4 };

/* y[LB,LOUT] = x[LB,LIN] · W[LOUT,LIN]^T + b; L = sum(y ⊙ R), in double */
static double linear_loss(arena *A, float *const dev[4], const float *x, const float *W,
                          const float *b, const float *R) {
    sb_backend *be = A->be;
    set(A, dev[0], x, LB * LIN);
    set(A, dev[1], W, LOUT * LIN);
    set(A, dev[2], b, LOUT);
    be->i->gemm(be, 0, 1, LB, LOUT, LIN, 1.0f, dev[0], LIN, dev[1], LIN, 0.0f, dev[3], LOUT);
    be->i->bias_add(be, dev[3], dev[2], LB, LOUT);
    float y[LB * LOUT];
    get(A, y, dev[3], LB * LOUT);
    double L = 0;
    for (int i = 0; i < LB * LOUT; i++) L += (double)y[i] * (double)R[i];
    return L;
}

static int gradcheck_should_match_finite_differences_for_linear_layer(void) {
    sb_backend *be = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(be, "ref backend");
    rng r = {1};
    float x[LB * LIN], W[LOUT * LIN], b[LOUT], R[LB * LOUT];
    fill(&r, x, LB * LIN, -1, 1);
    fill(&r, W, LOUT * LIN, -1, 1);
    fill(&r, b, LOUT, -1, 1);
    fill(&r, R, LB * LOUT, -1, 1);
    arena A = {.be = be};
    float *dev[4] = {put(&A, x, LB * LIN), put(&A, W, LOUT * LIN), put(&A, b, LOUT),
                     put(&A, NULL, LB * LOUT)};
    float *dR = put(&A, R, LB * LOUT), *ddx = put(&A, NULL, LB * LIN);
    float *ddW = put(&A, NULL, LOUT * LIN), *ddb = put(&A, NULL, LOUT);
    /* dL/dy = R. dx[LB,LIN] += R·W ; dW[LOUT,LIN] += R^T·x ; db += colsum(R) */
    be->i->gemm(be, 0, 0, LB, LIN, LOUT, 1.0f, dR, LOUT, dev[1], LIN, 1.0f, ddx, LIN);
    be->i->gemm(be, 1, 0, LOUT, LIN, LB, 1.0f, dR, LOUT, dev[0], LIN, 1.0f, ddW, LIN);
    be->i->bias_grad(be, ddb, dR, LB, LOUT);
    float gx[LB * LIN], gW[LOUT * LIN], gb[LOUT];
    get(&A, gx, ddx, LB * LIN);
    get(&A, gW, ddW, LOUT * LIN);
    get(&A, gb, ddb, LOUT);

    /* The layer is linear in every parameter, so truncation error is zero and a
     * large step is best: h = 0.25. What is left is the float rounding of the
     * outputs: each y has |error| <= gamma_{LIN+1} * (sum|x||w| + |b|)
     * <= 8u * 8 = 3.8e-6 (all inputs in [-1,1]); a parameter moves at most
     * LB = 5 outputs, so the difference quotient is off by at most
     * 5 * 2 * 3.8e-6 / 0.5 = 7.6e-5, plus ~1e-6 of rounding in the analytic
     * sums. 1e-4 is that worst case rounded up; a wrong transpose, a missed row
     * or a factor 2 is off by O(0.1). */
    const float h = 0.25f;
    const double atol = 1e-4;
    float *params[3] = {x, W, b};
    const float *analytic[3] = {gx, gW, gb};
    size_t count[3] = {LB * LIN, LOUT * LIN, LOUT};
    const char *names[3] = {"linear dx", "linear dW", "linear db"};
    int fails = 0;
    for (int p = 0; p < 3; p++) {
        double num[LB * LIN];
        for (size_t i = 0; i < count[p]; i++) {
            float keep = params[p][i], up = keep + h, dn = keep - h;
            params[p][i] = up;
            double Lp = linear_loss(&A, dev, x, W, b, R);
            params[p][i] = dn;
            double Lm = linear_loss(&A, dev, x, W, b, R);
            params[p][i] = keep;
            num[i] = (Lp - Lm) / ((double)up - (double)dn);
        }
        fails += check_grad(names[p], analytic[p], num, count[p], atol, 0);
    }
    fails += !guards_ok(&A, "linear gradcheck");
    arena_free(&A);
    sb_backend_free(be);
    return fails;
}

/* analytic[i] = R_i f'(x_i) via act_backward; numeric[i] by central
 * differences of L = sum f(x) ⊙ R computed with act_forward */
static int act_grads(sb_backend *be, sb_act act, float h, const float *x0, const float *R,
                     size_t n, float *analytic, double *numeric) {
    arena A = {.be = be};
    float *x = new_floats(n), *out = new_floats(n);
    memcpy(x, x0, n * sizeof *x);
    float *dx = put(&A, x, n), *dR = put(&A, R, n), *dout = put(&A, NULL, n);
    float *dg = put(&A, NULL, n);
    be->i->act_backward(be, act, dg, dR, dx, n);
    get(&A, analytic, dg, n);
    for (size_t i = 0; i < n; i++) {
        float keep = x[i], up = keep + h, dn = keep - h;
        double L[2];
        for (int s = 0; s < 2; s++) {
            x[i] = s == 0 ? up : dn;
            set(&A, dx, x, n);
            be->i->act_forward(be, act, dout, dx, n);
            get(&A, out, dout, n);
            L[s] = 0;
            for (size_t k = 0; k < n; k++) L[s] += (double)out[k] * (double)R[k];
        }
        x[i] = keep;
        numeric[i] = (L[0] - L[1]) / ((double)up - (double)dn);
    }
    int ok = guards_ok(&A, sb_act_name(act));
    arena_free(&A);
    free(x);
    free(out);
    return ok;
}

enum { NACT = 64 };

static void act_inputs(rng *r, sb_act act, float *x, float *R) {
    for (int i = 0; i < NACT; i++) {
        do
            x[i] = rng_unif(r, -3, 3);
        while (act == SB_ACT_RELU && fabsf(x[i]) < 0.1f); /* stay 0.1 away from the kink */
        R[i] = rng_unif(r, -1, 1);
    }
}

static int gradcheck_should_match_finite_differences_for_activations(void) {
    static const struct {
        sb_act act;
        float h;
        double atol;
    } cases[] = {
        /* relu is linear on each side and |x| >= 0.1 > h: the difference
         * quotient is exact up to double rounding (~1e-14); 1e-6 leaves room
         * for nothing but a wrong derivative. */
        {SB_ACT_RELU, 1.0f / 128, 1e-6},
        /* tanh, h = 2^-7: truncation h^2/6 * max|tanh'''| (= 2) = 2.0e-5;
         * tanhf is within 2 ulp (2 * 6e-8) of tanh, so rounding adds at most
         * 2 * 1.2e-7 / (2h) = 1.5e-5. 1e-4 is ~3x that sum. */
        {SB_ACT_TANH, 1.0f / 128, 1e-4},
        /* gelu, h = 2^-7: |gelu| <= 3 on [-3,3] and its float evaluation is
         * within ~1e-6 (a few ulp of 3, tanhf's 2 ulp scaled by x/2);
         * rounding <= 2e-6 / (2h) = 1.3e-4, truncation h^2/6 * max|gelu'''|
         * (< 1) < 1e-5. 3e-4 is ~2x the worst case; a wrong coefficient in
         * the derivative is off by > 1e-2 somewhere in [-3,3]. */
        {SB_ACT_GELU, 1.0f / 128, 3e-4},
    };
    sb_backend *be = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(be, "ref backend");
    rng r = {2};
    int fails = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float x[NACT], R[NACT], analytic[NACT];
        double numeric[NACT];
        act_inputs(&r, cases[c].act, x, R);
        if (!act_grads(be, cases[c].act, cases[c].h, x, R, NACT, analytic, numeric)) fails++;
        char what[64];
        snprintf(what, sizeof what, "act_backward %s", sb_act_name(cases[c].act));
        fails += check_grad(what, analytic, numeric, NACT, cases[c].atol, 0);
    }
    sb_backend_free(be);
    return fails;
}

enum { XB = 6, XC = 5 };

static int gradcheck_should_match_finite_differences_for_softmax_cross_entropy(void) {
    sb_backend *be = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(be, "ref backend");
    rng r = {3};
    float logits[XB * XC];
    int32_t labels[XB];
    fill(&r, logits, XB * XC, -2, 2);
    fill_labels(&r, labels, XB, XC);
    arena A = {.be = be};
    float *dlog = put(&A, logits, XB * XC), *dprobs = put(&A, NULL, XB * XC);
    float *dloss = put(&A, NULL, 1), *dlab = put(&A, labels, XB), *dgrad = put(&A, NULL, XB * XC);
    be->i->xent_forward(be, dprobs, dloss, dlog, (const int32_t *)dlab, XB, XC);
    be->i->xent_backward(be, dgrad, dprobs, (const int32_t *)dlab, XB, XC);
    float analytic[XB * XC], loss0;
    get(&A, analytic, dgrad, XB * XC);
    get(&A, &loss0, dloss, 1);
    int fails = 0;

    /* the loss itself against log-softmax in double: per row, C = 5 exps
     * (1 ulp each), a sum, logf and a subtraction stay within ~1e-6 of a loss
     * below 5; the float mean of 6 such rows adds < 1e-6. 1e-5 is 5x that. */
    double want = 0;
    for (int b = 0; b < XB; b++) {
        double mx = logits[b * XC], s = 0;
        for (int j = 1; j < XC; j++) mx = fmax(mx, logits[b * XC + j]);
        for (int j = 0; j < XC; j++) s += exp((double)logits[b * XC + j] - mx);
        want += log(s) - ((double)logits[b * XC + labels[b]] - mx);
    }
    want /= XB;
    if (!isfinite(loss0) || fabs(loss0 - want) > 1e-5) {
        fprintf(stderr, "xent loss: got %.9g, double-precision %.9g, diff %.3g > limit 1e-5\n",
                loss0, want, fabs(loss0 - want));
        fails++;
    }

    /* Numeric gradient of the float loss xent_forward returns, h = 2^-4.
     * Rounding: that loss is within ~3e-6 of exact (above, with margin), so
     * the quotient is off by <= 2 * 3e-6 / (2h) = 4.8e-5. Truncation: the third
     * derivative of the mean loss in one logit is p(1-p)(1-2p)/B <= 0.0962/6,
     * times h^2/6: 1.0e-5. 2e-4 is ~3x the sum; gradients are (p - y)/B, up to
     * 1/6, and a missing /B or one-hot is off by > 1e-2. */
    const float h = 1.0f / 16;
    double numeric[XB * XC];
    for (int i = 0; i < XB * XC; i++) {
        float keep = logits[i], up = keep + h, dn = keep - h;
        float L[2];
        for (int s = 0; s < 2; s++) {
            logits[i] = s == 0 ? up : dn;
            set(&A, dlog, logits, XB * XC);
            be->i->xent_forward(be, dprobs, dloss, dlog, (const int32_t *)dlab, XB, XC);
            get(&A, &L[s], dloss, 1);
        }
        logits[i] = keep;
        numeric[i] = ((double)L[0] - (double)L[1]) / ((double)up - (double)dn);
    }
    fails += check_grad("xent_backward", analytic, numeric, XB * XC, 2e-4, 0);
    fails += !guards_ok(&A, "xent gradcheck");
    arena_free(&A);
    sb_backend_free(be);
    return fails;
}

/* The checker above must be able to fail: a gradient off by 1%, one entry off
 * by 10x the tolerance, or the derivative of the wrong activation are caught. */
static int gradcheck_should_flag_a_deliberately_wrong_gradient(void) {
    sb_backend *be = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(be, "ref backend");
    rng r = {4};
    float x[NACT], R[NACT], analytic[NACT], wrong[NACT], other[NACT];
    double numeric[NACT], unused[NACT];
    act_inputs(&r, SB_ACT_TANH, x, R);
    CHECK(act_grads(be, SB_ACT_TANH, 1.0f / 128, x, R, NACT, analytic, numeric), "guards");
    CHECK(act_grads(be, SB_ACT_GELU, 1.0f / 128, x, R, NACT, other, unused), "guards");
    sb_backend_free(be);
    CHECK(check_grad("tanh", analytic, numeric, NACT, 1e-4, 0) == 0, "the true gradient passes");
    for (int i = 0; i < NACT; i++) wrong[i] = analytic[i] * 1.01f;
    CHECK(check_grad("scaled", wrong, numeric, NACT, 1e-4, 1) != 0, "1%% scaling not flagged");
    memcpy(wrong, analytic, sizeof wrong);
    wrong[NACT / 2] += 1e-3f;
    CHECK(check_grad("one entry", wrong, numeric, NACT, 1e-4, 1) != 0, "1e-3 offset not flagged");
    CHECK(check_grad("gelu for tanh", other, numeric, NACT, 1e-4, 1) != 0,
          "wrong activation's derivative not flagged");
    numeric[3] = NAN;
    CHECK(check_grad("nan", analytic, numeric, NACT, 1e-4, 1) != 0, "NaN not flagged");
    return 0;
}

/* ====================================================================== */
/* GEMM data: op(A)[M,K], op(B)[K,N], C[M,N] with row strides > width      */
/* ====================================================================== */

typedef struct gemm_case {
    int tA, tB, M, N, K;
    float alpha, beta;
    int padA, padB, padC; /* extra stride beyond the stored width */
} gemm_case;

typedef struct gemm_data {
    int lda, ldb, ldc;
    size_t nA, nB, nC;
    float *A, *B, *C;
} gemm_data;

/* Inputs in [-1,1]; stride padding holds the NaN canary (a kernel that reads
 * it produces NaN); C holds NaN when beta == 0 (BLAS must not read it). */
static void gemm_data_new(gemm_data *g, const gemm_case *c, rng *r) {
    int wA = c->tA ? c->M : c->K, hA = c->tA ? c->K : c->M;
    int wB = c->tB ? c->K : c->N, hB = c->tB ? c->N : c->K;
    g->lda = (wA > 0 ? wA : 1) + c->padA;
    g->ldb = (wB > 0 ? wB : 1) + c->padB;
    g->ldc = (c->N > 0 ? c->N : 1) + c->padC;
    g->nA = (size_t)hA * g->lda;
    g->nB = (size_t)hB * g->ldb;
    g->nC = (size_t)c->M * g->ldc;
    g->A = new_floats(g->nA);
    g->B = new_floats(g->nB);
    g->C = new_floats(g->nC);
    for (size_t i = 0; i < g->nA; i++)
        g->A[i] = (int)(i % (size_t)g->lda) < wA ? rng_unif(r, -1, 1) : canary();
    for (size_t i = 0; i < g->nB; i++)
        g->B[i] = (int)(i % (size_t)g->ldb) < wB ? rng_unif(r, -1, 1) : canary();
    for (size_t i = 0; i < g->nC; i++)
        g->C[i] = (int)(i % (size_t)g->ldc) < c->N && c->beta != 0.0f ? rng_unif(r, -1, 1)
                                                                       : canary();
}

static void gemm_data_free(gemm_data *g) {
    free(g->A);
    free(g->B);
    free(g->C);
}

static double opA(const gemm_case *c, const gemm_data *g, int i, int k) {
    return c->tA ? g->A[(size_t)k * g->lda + i] : g->A[(size_t)i * g->lda + k];
}
static double opB(const gemm_case *c, const gemm_data *g, int k, int j) {
    return c->tB ? g->B[(size_t)j * g->ldb + k] : g->B[(size_t)k * g->ldb + j];
}

/* Runs the case on be; out receives C (nC floats, padding included); returns
 * 1 when guards and stride padding are intact. */
static int gemm_run(sb_backend *be, const gemm_case *c, const gemm_data *g, float *out,
                    const char *what) {
    arena A = {.be = be};
    float *dA = put(&A, g->A, g->nA), *dB = put(&A, g->B, g->nB), *dC = put(&A, g->C, g->nC);
    be->i->gemm(be, c->tA, c->tB, c->M, c->N, c->K, c->alpha, dA, g->lda, dB, g->ldb, c->beta,
                dC, g->ldc);
    get(&A, out, dC, g->nC);
    int ok = guards_ok(&A, what);
    for (size_t i = 0; ok && i < g->nC; i++) {
        if ((int)(i % (size_t)g->ldc) >= c->N && bits_of(out[i]) != CANARY_BITS) {
            fprintf(stderr, "%s: C stride padding [%zu] overwritten\n", what, i);
            ok = 0;
        }
    }
    arena_free(&A);
    return ok;
}

/* Copies the M x N block of a strided C into dst (so padding is not compared). */
static void gemm_block(const gemm_case *c, const gemm_data *g, const float *C, float *dst) {
    for (int i = 0; i < c->M; i++)
        memcpy(dst + (size_t)i * c->N, C + (size_t)i * g->ldc, (size_t)c->N * sizeof(float));
}

/* Per-element bound on |computed - exact| for any order: the K products summed,
 * times alpha, plus beta*C: gamma_{K+2} * (|alpha| sum_k |a||b| + |beta||C|). */
static void gemm_bound(const gemm_case *c, const gemm_data *g, double factor, double *limit,
                       double *exact) {
    for (int i = 0; i < c->M; i++) {
        for (int j = 0; j < c->N; j++) {
            double s = 0, sabs = 0, c0 = c->beta != 0.0f ? g->C[(size_t)i * g->ldc + j] : 0;
            for (int k = 0; k < c->K; k++) {
                s += opA(c, g, i, k) * opB(c, g, k, j);
                sabs += fabs(opA(c, g, i, k) * opB(c, g, k, j));
            }
            size_t o = (size_t)i * c->N + j;
            if (exact) exact[o] = c->alpha * s + c->beta * c0;
            limit[o] = factor * gamma_n(c->K + 2) *
                       (fabs(c->alpha) * sabs + fabs(c->beta) * fabs(c0));
        }
    }
}

static const gemm_case gemm_cases[] = {
    /* tA tB   M    N    K  alpha  beta  padA padB padC */
    {0, 0, 37, 13, 29, 1.0f, 0.0f, 0, 0, 0},
    {0, 1, 37, 13, 29, 1.5f, 0.5f, 3, 2, 5},
    {1, 0, 13, 37, 64, -0.75f, 1.0f, 1, 0, 2},
    {1, 1, 37, 13, 29, 2.0f, -1.25f, 2, 3, 1},
    {0, 0, 1, 1, 1, 1.0f, 0.0f, 0, 0, 0},
    {0, 1, 64, 128, 100, 1.0f, 0.0f, 0, 0, 0},
    {1, 1, 200, 3, 513, 0.5f, 2.0f, 4, 4, 4},
    {1, 0, 3, 200, 1000, 1.0f, 1.0f, 1, 1, 7},
    {0, 0, 7, 5, 3, 0.0f, 0.5f, 1, 1, 1}, /* alpha 0: C = beta*C, A and B unread */
    {0, 0, 5, 3, 0, 1.0f, 0.5f, 0, 0, 2}, /* K = 0: C = beta*C */
};
#define N_GEMM_CASES (sizeof gemm_cases / sizeof gemm_cases[0])

static void gemm_tag(char *buf, size_t cap, const gemm_case *c, const char *backend) {
    snprintf(buf, cap, "%s gemm tA=%d tB=%d M=%d N=%d K=%d alpha=%g beta=%g pads=%d/%d/%d",
             backend, c->tA, c->tB, c->M, c->N, c->K, c->alpha, c->beta, c->padA, c->padB,
             c->padC);
}

static int ref_gemm_should_match_double_precision_for_all_transposes(void) {
    sb_backend *be = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(be, "ref backend");
    rng r = {5};
    int fails = 0;
    for (size_t t = 0; t < N_GEMM_CASES; t++) {
        const gemm_case *c = &gemm_cases[t];
        gemm_data g;
        gemm_data_new(&g, c, &r);
        size_t mn = (size_t)c->M * c->N;
        float *out = new_floats(g.nC), *blk = new_floats(mn), *exf = new_floats(mn);
        double *limit = malloc((mn ? mn : 1) * sizeof *limit);
        double *exact = malloc((mn ? mn : 1) * sizeof *exact);
        SB_ASSERT(limit && exact);
        char what[160];
        gemm_tag(what, sizeof what, c, "ref");
        fails += !gemm_run(be, c, &g, out, what);
        gemm_block(c, &g, out, blk);
        /* limit: the one-sided bound (factor 1): the double product is exact
         * to ~1e-16, ref's float result is within gamma_{K+2}(...) of it */
        gemm_bound(c, &g, 1.0, limit, exact);
        for (size_t i = 0; i < mn; i++) exf[i] = (float)exact[i];
        /* converting exact to float adds u|exact| <= u(...) more: widen by 1.5 */
        for (size_t i = 0; i < mn; i++) limit[i] = 1.5 * limit[i] + 1e-30;
        fails += within(what, blk, exf, limit, 0, mn);
        free(out), free(blk), free(exf), free(limit), free(exact);
        gemm_data_free(&g);
    }
    sb_backend_free(be);
    return fails;
}

/* ====================================================================== */
/* optimizers against double precision                                    */
/* ====================================================================== */

static int ref_optimizers_should_match_double_precision_formulas(void) {
    sb_backend *be = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(be, "ref backend");
    enum { N = 257 };
    rng r = {6};
    float w[N], m[N], v[N], g[N], got[N], gm[N], gv[N], want[N];
    double limit[N];
    fill(&r, w, N, -1, 1);
    fill(&r, m, N, -0.1f, 0.1f);
    fill(&r, v, N, 0, 0.01f);
    fill(&r, g, N, -1, 1);
    int fails = 0;

    /* SGD, lr 0.05, momentum 0.9, wd 1e-2. Longest path: g + wd*w (2
     * roundings), buf*momentum + d (2), w - lr*buf (2): 6 roundings of
     * quantities bounded by |w| + lr(|momentum*buf| + |g| + |wd*w|), hence
     * gamma_6 times that. */
    const float lr = 0.05f, mom = 0.9f, wd = 1e-2f;
    arena A = {.be = be};
    float *dw = put(&A, w, N), *dm = put(&A, m, N), *dv = put(&A, v, N), *dg = put(&A, g, N);
    be->i->sgd_update(be, dw, dm, dg, N, lr, mom, wd);
    get(&A, got, dw, N);
    get(&A, gm, dm, N);
    for (int i = 0; i < N; i++) {
        double d = (double)g[i] + (double)wd * w[i];
        double buf = (double)m[i] * mom + d;
        want[i] = (float)(w[i] - (double)lr * buf);
        limit[i] = gamma_n(6) * (fabs(w[i]) + lr * (fabs((double)m[i] * mom) + fabs(g[i]) +
                                                    fabs((double)wd * w[i])));
        limit[i] += UNIT_ROUNDOFF * fabs((double)want[i]); /* want rounded to float */
    }
    fails += within("sgd w", got, want, limit, 0, N);

    /* AdamW, t = 3. Longest path to the step term: lerp (3 roundings), v
     * (3, halved by the sqrt), sqrt/bc2_sqrt + eps with bc2_sqrt rounded (4),
     * step_size rounded, times m, divided (3): ~12; the decay path has 3.
     * gamma_16 of (|w| + |step_size * m_mag / denom|) bounds both with margin;
     * m_mag = beta1|m| + (1-beta1)|g| avoids dividing by a cancelled m.
     * A missing bias correction would be off by 1/(1-0.9^3) = 3.7x. */
    const float alr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, awd = 0.1f;
    const int t = 3;
    set(&A, dw, w, N);
    set(&A, dm, m, N);
    be->i->adam_update(be, dw, dm, dv, dg, N, alr, b1, b2, eps, awd, t);
    get(&A, got, dw, N);
    get(&A, gm, dm, N);
    get(&A, gv, dv, N);
    double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t), step = alr / bc1;
    for (int i = 0; i < N; i++) {
        double wi = w[i] * (1 - (double)alr * awd);
        double mi = (double)b1 * m[i] + (1 - (double)b1) * g[i];
        double vi = (double)b2 * v[i] + (1 - (double)b2) * g[i] * (double)g[i];
        double denom = sqrt(vi) / sqrt(bc2) + eps;
        want[i] = (float)(wi - step * mi / denom);
        double m_mag = b1 * fabs(m[i]) + (1 - (double)b1) * fabs(g[i]);
        limit[i] = gamma_n(16) * (fabs(wi) + step * m_mag / denom) +
                   UNIT_ROUNDOFF * fabs((double)want[i]);
    }
    fails += within("adam w", got, want, limit, 0, N);
    fails += !guards_ok(&A, "optimizers");
    arena_free(&A);
    sb_backend_free(be);
    return fails;
}

/* The float operation sequences ref.c documents (PyTorch's order of
 * operations), written out a second time: a reordering in ref.c that the
 * double-precision test above cannot see (e.g. value*(m/denom) instead of
 * (value*m)/denom) changes bits and fails here. Tolerance 0 by design. */
static int ref_optimizers_should_follow_pytorch_operation_order_bitwise(void) {
    sb_backend *be = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(be, "ref backend");
    enum { N = 101 };
    rng r = {61};
    float w[N], m[N], v[N], g[N], got[3][N], want[3][N];
    fill(&r, w, N, -1, 1), fill(&r, m, N, -0.1f, 0.1f), fill(&r, v, N, 0, 0.01f);
    fill(&r, g, N, -1, 1);
    arena A = {.be = be};
    float *dw = put(&A, w, N), *dm = put(&A, m, N), *dv = put(&A, v, N), *dg = put(&A, g, N);
    int fails = 0;

    const float lr = 0.05f, mom = 0.9f, wd = 1e-2f;
    be->i->sgd_update(be, dw, dm, dg, N, lr, mom, wd);
    get(&A, got[0], dw, N), get(&A, got[1], dm, N);
    for (int i = 0; i < N; i++) {
        float d = g[i] + wd * w[i];         /* grad.add(param, alpha=wd) */
        want[1][i] = m[i] * mom + d;        /* buf.mul_(momentum).add_(d) */
        want[0][i] = w[i] - lr * want[1][i]; /* param.add_(buf, alpha=-lr) */
    }
    fails += same_bits("sgd w order", got[0], want[0], N);
    fails += same_bits("sgd momentum order", got[1], want[1], N);

    for (int variant = 0; variant < 2; variant++) {
        /* beta1 0.9: lerp's lower branch; 0.3: its upper branch */
        const float alr = 1e-2f, b1 = variant ? 0.3f : 0.9f, b2 = 0.999f, eps = 1e-8f;
        const float awd = 0.1f;
        const int t = 5;
        set(&A, dw, w, N), set(&A, dm, m, N), set(&A, dv, v, N);
        be->i->adam_update(be, dw, dm, dv, dg, N, alr, b1, b2, eps, awd, t);
        get(&A, got[0], dw, N), get(&A, got[1], dm, N), get(&A, got[2], dv, N);
        double bc1 = 1.0 - pow((double)b1, t), bc2 = 1.0 - pow((double)b2, t);
        float neg_step = (float)-((double)alr / bc1), bc2s = (float)sqrt(bc2);
        float wt = (float)(1.0 - (double)b1), omb2 = (float)(1.0 - (double)b2);
        float decay = (float)(1.0 - (double)alr * (double)awd);
        for (int i = 0; i < N; i++) {
            float wi = w[i] * decay; /* param.mul_(1 - lr*wd) */
            float mi = wt < 0.5f ? m[i] + wt * (g[i] - m[i]) /* exp_avg.lerp_(g, 1-beta1) */
                                 : g[i] - (g[i] - m[i]) * (1.0f - wt);
            float vi = v[i] * b2;     /* exp_avg_sq.mul_(beta2) */
            vi = vi + omb2 * g[i] * g[i]; /* .addcmul_(g, g, value=1-beta2) */
            float denom = sqrtf(vi) / bc2s + eps; /* (sqrt(v) / bc2_sqrt).add_(eps) */
            want[0][i] = wi + neg_step * mi / denom; /* param.addcdiv_(m, denom, -step) */
            want[1][i] = mi;
            want[2][i] = vi;
        }
        const char *names[3] = {"adam w order", "adam m order", "adam v order"};
        for (int k = 0; k < 3; k++) fails += same_bits(names[k], got[k], want[k], N);
    }
    fails += !guards_ok(&A, "optimizer order");
    arena_free(&A);
    sb_backend_free(be);
    return fails;
}

/* ====================================================================== */
/* backward ops add (+=) into their gradient outputs                      */
/* ====================================================================== */

/* For each op: result(start = base) must equal base + result(start = 0), bit
 * for bit — each op adds its finished value with one float addition. (blas in
 * fast mode adds chunk partials one by one, so it is excluded by design.) */
static int check_accumulates(sb_backend *be, const char *tag) {
    enum { B = 70, C = 9, N = B * C };
    rng r = {7};
    float base[N], x[N], dout[N], logits[N], zero_res[N], base_res[N], sum[N];
    int32_t labels[B];
    fill(&r, base, N, -1, 1);
    fill(&r, x, N, -3, 3);
    fill(&r, dout, N, -1, 1);
    fill(&r, logits, N, -2, 2);
    fill_labels(&r, labels, B, C);
    arena A = {.be = be};
    float *dx = put(&A, x, N), *ddout = put(&A, dout, N), *dg = put(&A, NULL, N);
    float *dlog = put(&A, logits, N), *dprobs = put(&A, NULL, N), *dloss = put(&A, NULL, 1);
    float *dlab = put(&A, labels, B);
    be->i->xent_forward(be, dprobs, dloss, dlog, (const int32_t *)dlab, B, C);
    int fails = 0;
    for (int op = 0; op < 5; op++) {
        size_t n = op == 3 ? C : N;
        for (int start = 0; start < 2; start++) {
            set(&A, dg, start ? base : (float[N]){0}, n);
            if (op < 3)
                be->i->act_backward(be, (sb_act)op, dg, ddout, dx, N);
            else if (op == 3)
                be->i->bias_grad(be, dg, ddout, B, C);
            else
                be->i->xent_backward(be, dg, dprobs, (const int32_t *)dlab, B, C);
            get(&A, start ? base_res : zero_res, dg, n);
        }
        for (size_t i = 0; i < n; i++) sum[i] = base[i] + zero_res[i];
        static const char *names[] = {"act_backward relu", "act_backward tanh",
                                      "act_backward gelu", "bias_grad", "xent_backward"};
        char what[96];
        snprintf(what, sizeof what, "%s %s accumulates", tag, names[op]);
        fails += same_bits(what, base_res, sum, n);
    }
    fails += !guards_ok(&A, tag);
    arena_free(&A);
    return fails;
}

static int backward_ops_should_add_into_gradients(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    sb_backend *blas = make("blas", SB_MODE_DETERMINISTIC, 2, 0);
    CHECK(ref && blas, "backends");
    int fails = check_accumulates(ref, "ref") + check_accumulates(blas, "blas deterministic/2");
    /* ref gemm with beta = 1: C + alpha*acc, so the same rule holds bitwise
     * (OpenBLAS may add K-blocks one at a time: checked by tolerance instead) */
    const gemm_case c = {1, 0, 9, 7, 11, 1.0f, 1.0f, 0, 0, 0};
    rng r = {8};
    gemm_data g;
    gemm_data_new(&g, &c, &r);
    float *with = new_floats(g.nC), *without = new_floats(g.nC), *sum = new_floats(g.nC);
    fails += !gemm_run(ref, &c, &g, with, "ref gemm beta=1");
    float *keep = g.C;
    g.C = new_floats(g.nC); /* zeros */
    fails += !gemm_run(ref, &c, &g, without, "ref gemm beta=1 from 0");
    for (size_t i = 0; i < g.nC; i++) sum[i] = keep[i] + without[i];
    fails += same_bits("ref gemm beta=1 accumulates", with, sum, g.nC);
    free(g.C);
    g.C = keep;
    gemm_data_free(&g);
    free(with), free(without), free(sum);
    sb_backend_free(ref);
    sb_backend_free(blas);
    return fails;
}

/* ====================================================================== */
/* 2. every blas op against ref: op x shape x mode x threads              */
/* ====================================================================== */

static const sb_mode modes[] = {SB_MODE_DETERMINISTIC, SB_MODE_FAST};
static const int thread_counts[] = {1, 2};
#define FOR_EACH_CONFIG(mi, ti)                                                                \
    for (int mi = 0; mi < 2; mi++)                                                             \
        for (int ti = 0; ti < 2; ti++)

static int blas_gemm_should_match_ref_within_summation_bound(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    FOR_EACH_CONFIG(mi, ti) {
        sb_backend *blas = make("blas", modes[mi], thread_counts[ti], 0);
        CHECK(blas, "blas backend");
        rng r = {9};
        for (size_t t = 0; t < N_GEMM_CASES; t++) {
            const gemm_case *c = &gemm_cases[t];
            gemm_data g;
            gemm_data_new(&g, c, &r);
            size_t mn = (size_t)c->M * c->N;
            float *want = new_floats(g.nC), *got = new_floats(g.nC);
            float *wb = new_floats(mn), *gb = new_floats(mn);
            double *limit = malloc((mn ? mn : 1) * sizeof *limit);
            SB_ASSERT(limit);
            char what[200], tag[40];
            snprintf(tag, sizeof tag, "blas %s/%d", sb_mode_name(modes[mi]), thread_counts[ti]);
            gemm_tag(what, sizeof what, c, tag);
            fails += !gemm_run(ref, c, &g, want, what);
            fails += !gemm_run(blas, c, &g, got, what);
            gemm_block(c, &g, want, wb);
            gemm_block(c, &g, got, gb);
            /* both are within gamma_{K+2}(|alpha| sum|a||b| + |beta||C|) of the
             * exact value whatever their order (OpenBLAS blocks K and may use
             * FMA), so they are within twice that of each other */
            gemm_bound(c, &g, 2.0, limit, NULL);
            fails += within(what, gb, wb, limit, 0, mn);
            free(want), free(got), free(wb), free(gb), free(limit);
            gemm_data_free(&g);
        }
        sb_backend_free(blas);
    }
    sb_backend_free(ref);
    return fails;
}

static const struct {
    int B, N;
} batch_shapes[] = {{1, 1}, {37, 13}, {64, 10}, {130, 7}, {5, 300}, {1000, 33}, {4099, 3}};

typedef struct batch_out {
    float *out, *dbias, *probs, *dlogits, loss;
} batch_out;

/* Runs bias_add, bias_grad, xent_forward and xent_backward on be. */
static int batch_run(sb_backend *be, int B, int N, const float *out0, const float *bias,
                     const float *dout, const float *dbias0, const float *logits,
                     const int32_t *labels, const float *dl0, batch_out *o, const char *what) {
    size_t BN = (size_t)B * N;
    arena A = {.be = be};
    float *dout_ = put(&A, out0, BN), *dbias_ = put(&A, bias, N), *dd = put(&A, dout, BN);
    float *ddb = put(&A, dbias0, N), *dlog = put(&A, logits, BN), *dlab = put(&A, labels, B);
    float *dprobs = put(&A, NULL, BN), *dloss = put(&A, NULL, 1), *ddl = put(&A, dl0, BN);
    be->i->bias_add(be, dout_, dbias_, B, N);
    be->i->bias_grad(be, ddb, dd, B, N);
    be->i->xent_forward(be, dprobs, dloss, dlog, (const int32_t *)dlab, B, N);
    be->i->xent_backward(be, ddl, dprobs, (const int32_t *)dlab, B, N);
    get(&A, o->out, dout_, BN);
    get(&A, o->dbias, ddb, N);
    get(&A, o->probs, dprobs, BN);
    get(&A, &o->loss, dloss, 1);
    get(&A, o->dlogits, ddl, BN);
    int ok = guards_ok(&A, what);
    arena_free(&A);
    return ok;
}

static void batch_out_new(batch_out *o, size_t BN, size_t N) {
    o->out = new_floats(BN), o->dbias = new_floats(N), o->probs = new_floats(BN);
    o->dlogits = new_floats(BN);
}

static void batch_out_free(batch_out *o) {
    free(o->out), free(o->dbias), free(o->probs), free(o->dlogits);
}

static int blas_batch_ops_should_match_ref_within_summation_bound(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    FOR_EACH_CONFIG(mi, ti) {
        sb_backend *blas = make("blas", modes[mi], thread_counts[ti], 0);
        CHECK(blas, "blas backend");
        for (size_t s = 0; s < sizeof batch_shapes / sizeof batch_shapes[0]; s++) {
            int B = batch_shapes[s].B, N = batch_shapes[s].N;
            size_t BN = (size_t)B * N;
            rng r = {100 + s};
            float *out0 = new_floats(BN), *bias = new_floats(N), *dout = new_floats(BN);
            float *dbias0 = new_floats(N), *logits = new_floats(BN), *dl0 = new_floats(BN);
            int32_t *labels = malloc((size_t)B * sizeof *labels);
            double *limit = malloc((size_t)N * sizeof *limit);
            SB_ASSERT(labels && limit);
            fill(&r, out0, BN, -1, 1), fill(&r, bias, N, -1, 1), fill(&r, dout, BN, -1, 1);
            fill(&r, dbias0, N, -1, 1), fill(&r, logits, BN, -4, 4), fill(&r, dl0, BN, -1, 1);
            fill_labels(&r, labels, B, N);
            batch_out want, got;
            batch_out_new(&want, BN, N), batch_out_new(&got, BN, N);
            char what[128];
            snprintf(what, sizeof what, "blas %s/%d B=%d N=%d", sb_mode_name(modes[mi]),
                     thread_counts[ti], B, N);
            fails += !batch_run(ref, B, N, out0, bias, dout, dbias0, logits, labels, dl0, &want,
                                "ref");
            fails += !batch_run(blas, B, N, out0, bias, dout, dbias0, logits, labels, dl0, &got,
                                what);
            char w2[192];
            /* elementwise, same code as ref: bitwise */
            snprintf(w2, sizeof w2, "%s bias_add", what);
            fails += same_bits(w2, got.out, want.out, BN);
            snprintf(w2, sizeof w2, "%s softmax probs", what);
            fails += same_bits(w2, got.probs, want.probs, BN);
            snprintf(w2, sizeof w2, "%s xent_backward", what);
            fails += same_bits(w2, got.dlogits, want.dlogits, BN);
            /* bias_grad: B additions into dbias in some order; each result is
             * within gamma_{B+1}(sum_b |d| + |dbias0|) of exact, so the two are
             * within twice that of each other */
            for (int j = 0; j < N; j++) {
                double sabs = fabs(dbias0[j]);
                for (int b = 0; b < B; b++) sabs += fabs(dout[(size_t)b * N + j]);
                limit[j] = 2 * gamma_n(B + 1) * sabs;
            }
            snprintf(w2, sizeof w2, "%s bias_grad", what);
            fails += within(w2, got.dbias, want.dbias, limit, 0, N);
            /* loss: row losses are bitwise equal (ref's code); only the order of
             * their B-term sum differs, then one division: twice
             * gamma_{B+1} * sum_b |l_b| / B, l_b from double log-softmax */
            double lsum = 0;
            for (int b = 0; b < B; b++) {
                const float *x = logits + (size_t)b * N;
                double mx = x[0], se = 0;
                for (int j = 1; j < N; j++) mx = fmax(mx, x[j]);
                for (int j = 0; j < N; j++) se += exp((double)x[j] - mx);
                lsum += fabs(log(se) - ((double)x[labels[b]] - mx));
            }
            snprintf(w2, sizeof w2, "%s xent loss", what);
            fails += within(w2, &got.loss, &want.loss, NULL, 2 * gamma_n(B + 1) * lsum / B, 1);
            batch_out_free(&want), batch_out_free(&got);
            free(out0), free(bias), free(dout), free(dbias0), free(logits), free(dl0);
            free(labels), free(limit);
        }
        sb_backend_free(blas);
    }
    sb_backend_free(ref);
    return fails;
}

enum { EW_ACT_FWD, EW_ACT_BWD, EW_SGD, EW_ADAM, EW_ZERO };

static const struct ew_case {
    const char *name;
    int kind;
    sb_act act;
    float p[5];
    int t;
} ew_cases[] = {
    {"act_forward relu", EW_ACT_FWD, SB_ACT_RELU, {0}, 0},
    {"act_forward tanh", EW_ACT_FWD, SB_ACT_TANH, {0}, 0},
    {"act_forward gelu", EW_ACT_FWD, SB_ACT_GELU, {0}, 0},
    {"act_backward relu", EW_ACT_BWD, SB_ACT_RELU, {0}, 0},
    {"act_backward tanh", EW_ACT_BWD, SB_ACT_TANH, {0}, 0},
    {"act_backward gelu", EW_ACT_BWD, SB_ACT_GELU, {0}, 0},
    {"sgd lr=0.1", EW_SGD, 0, {0.1f, 0.0f, 0.0f}, 0},
    {"sgd lr=0.05 momentum=0.9 wd=1e-2", EW_SGD, 0, {0.05f, 0.9f, 1e-2f}, 0},
    {"adam t=1", EW_ADAM, 0, {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f}, 1},
    {"adamw t=7 wd=0.1 beta1=0.3 (lerp upper branch)", EW_ADAM, 0, {3e-3f, 0.3f, 0.99f, 1e-6f, 0.1f}, 7},
    {"zero", EW_ZERO, 0, {0}, 0},
};

/* x, y, z are read and written, g is read; what each means depends on the op:
 * act: z = f(x) / z += y f'(x); sgd: w=x, mom=y; adam: w=x, m=y, v=z. */
static int ew_run(sb_backend *be, const struct ew_case *c, size_t n, float *x, float *y,
                  float *z, const float *g, const char *what) {
    arena A = {.be = be};
    float *dx = put(&A, x, n), *dy = put(&A, y, n), *dz = put(&A, z, n), *dg = put(&A, g, n);
    switch (c->kind) {
    case EW_ACT_FWD: be->i->act_forward(be, c->act, dz, dx, n); break;
    case EW_ACT_BWD: be->i->act_backward(be, c->act, dz, dy, dx, n); break;
    case EW_SGD: be->i->sgd_update(be, dx, dy, dg, n, c->p[0], c->p[1], c->p[2]); break;
    case EW_ADAM:
        be->i->adam_update(be, dx, dy, dz, dg, n, c->p[0], c->p[1], c->p[2], c->p[3], c->p[4],
                           c->t);
        break;
    case EW_ZERO: be->i->zero(be, dz, n); break;
    }
    get(&A, x, dx, n), get(&A, y, dy, n), get(&A, z, dz, n);
    int ok = guards_ok(&A, what);
    arena_free(&A);
    return ok;
}

static int blas_elementwise_ops_should_equal_ref_bitwise(void) {
    /* Tolerance 0: blas runs ref's own scalar loops on disjoint ranges (see
     * blas.c), so any difference is a partition bug (a skipped, doubled or
     * shifted element), not rounding. n = 40001 crosses the size at which
     * blas starts using its thread pool. */
    static const size_t sizes[] = {1, 481, 40001};
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    FOR_EACH_CONFIG(mi, ti) {
        sb_backend *blas = make("blas", modes[mi], thread_counts[ti], 0);
        CHECK(blas, "blas backend");
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t n = sizes[s];
            for (size_t k = 0; k < sizeof ew_cases / sizeof ew_cases[0]; k++) {
                const struct ew_case *c = &ew_cases[k];
                rng r = {200 + k};
                float *in[4], *out[2][3];
                for (int a = 0; a < 4; a++) in[a] = new_floats(n);
                fill(&r, in[0], n, -5, 5), fill(&r, in[1], n, -1, 1);
                fill(&r, in[2], n, 0, 1), fill(&r, in[3], n, -1, 1); /* v >= 0 for adam */
                for (int b = 0; b < 2; b++)
                    for (int a = 0; a < 3; a++) {
                        out[b][a] = new_floats(n);
                        memcpy(out[b][a], in[a], n * sizeof(float));
                    }
                char what[160];
                snprintf(what, sizeof what, "blas %s/%d n=%zu %s", sb_mode_name(modes[mi]),
                         thread_counts[ti], n, c->name);
                fails += !ew_run(ref, c, n, out[0][0], out[0][1], out[0][2], in[3], "ref");
                fails += !ew_run(blas, c, n, out[1][0], out[1][1], out[1][2], in[3], what);
                for (int a = 0; a < 3; a++) {
                    char w2[200];
                    snprintf(w2, sizeof w2, "%s (array %c)", what, "xyz"[a]);
                    fails += same_bits(w2, out[1][a], out[0][a], n);
                }
                for (int a = 0; a < 4; a++) free(in[a]);
                for (int b = 0; b < 2; b++)
                    for (int a = 0; a < 3; a++) free(out[b][a]);
            }
        }
        sb_backend_free(blas);
    }
    sb_backend_free(ref);
    return fails;
}

/* ====================================================================== */
/* 3./4. determinism and perturbation of the batch reductions             */
/* ====================================================================== */

/* A batch for the reduction tests: dout[B,N] and logits[B,C] with labels. */
typedef struct red_data {
    int B, N, C;
    float *dout, *logits;
    int32_t *labels;
} red_data;

/* wide = 1: magnitudes spread over 9 decades (dout = ±10^[-3,6], logits
 * scaled per row by 10^[-2,3]) so that any change of summation order changes
 * the rounded float sum; wide = 0: ordinary values in [-1,1]. */
static void red_data_new(red_data *d, int B, int N, int C, int wide, uint64_t seed) {
    rng r = {seed};
    d->B = B, d->N = N, d->C = C;
    d->dout = new_floats((size_t)B * N);
    d->logits = new_floats((size_t)B * C);
    d->labels = malloc((size_t)B * sizeof *d->labels);
    SB_ASSERT(d->labels);
    for (size_t i = 0; i < (size_t)B * N; i++) {
        float v = rng_unif(&r, -1, 1);
        d->dout[i] = wide ? (v < 0 ? -1.0f : 1.0f) * powf(10.0f, rng_unif(&r, -3, 6)) : v;
    }
    for (int b = 0; b < B; b++) {
        float scale = wide ? powf(10.0f, rng_unif(&r, -2, 3)) : 1.0f;
        for (int j = 0; j < C; j++) d->logits[(size_t)b * C + j] = scale * rng_unif(&r, -1, 1);
    }
    fill_labels(&r, d->labels, B, C);
}

static void red_data_free(red_data *d) {
    free(d->dout), free(d->logits), free(d->labels);
}

/* Backend buffers for repeated calls on one backend. */
typedef struct red_bufs {
    arena A;
    float *dout, *dbias, *logits, *labels, *probs, *loss;
} red_bufs;

static void red_bufs_new(red_bufs *rb, sb_backend *be, const red_data *d) {
    memset(rb, 0, sizeof *rb);
    rb->A.be = be;
    rb->dout = put(&rb->A, d->dout, (size_t)d->B * d->N);
    rb->dbias = put(&rb->A, NULL, (size_t)d->N);
    rb->logits = put(&rb->A, d->logits, (size_t)d->B * d->C);
    rb->labels = put(&rb->A, d->labels, (size_t)d->B);
    rb->probs = put(&rb->A, NULL, (size_t)d->B * d->C);
    rb->loss = put(&rb->A, NULL, 1);
}

/* dbias[N] = bias_grad from zero; *loss and probs[B*C] from xent_forward */
static void red_call(red_bufs *rb, const red_data *d, float *dbias, float *loss, float *probs) {
    sb_backend *be = rb->A.be;
    be->i->zero(be, rb->dbias, (size_t)d->N);
    be->i->bias_grad(be, rb->dbias, rb->dout, d->B, d->N);
    be->i->xent_forward(be, rb->probs, rb->loss, rb->logits, (const int32_t *)rb->labels, d->B,
                        d->C);
    get(&rb->A, dbias, rb->dbias, (size_t)d->N);
    get(&rb->A, loss, rb->loss, 1);
    if (probs) get(&rb->A, probs, rb->probs, (size_t)d->B * d->C);
}

static int blas_deterministic_reductions_should_repeat_bitwise(void) {
    static const struct {
        int B, N;
    } shapes[] = {{1000, 33}, {4099, 3}, {37, 13}};
    sb_backend *be = make("blas", SB_MODE_DETERMINISTIC, 2, 0);
    CHECK(be, "blas backend");
    int fails = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        red_data d;
        red_data_new(&d, shapes[s].B, shapes[s].N, shapes[s].N, 1, 300 + s);
        red_bufs rb;
        red_bufs_new(&rb, be, &d);
        size_t BC = (size_t)d.B * d.C;
        float *db0 = new_floats(d.N), *db = new_floats(d.N), *p0 = new_floats(BC);
        float *p = new_floats(BC), l0, l;
        red_call(&rb, &d, db0, &l0, p0);
        for (int rep = 1; rep < 10 && fails == 0; rep++) {
            red_call(&rb, &d, db, &l, p);
            char what[128];
            snprintf(what, sizeof what, "blas deterministic/2 B=%d N=%d call %d vs 1", d.B, d.N,
                     rep + 1);
            fails += same_bits(what, db, db0, d.N) + same_bits(what, &l, &l0, 1) +
                     same_bits(what, p, p0, BC);
        }
        fails += !guards_ok(&rb.A, "repeat");
        arena_free(&rb.A);
        free(db0), free(db), free(p0), free(p);
        red_data_free(&d);
    }
    /* GEMM is a reduction over K too: OpenBLAS with 2 threads, repeated */
    rng r = {310};
    for (size_t t = 0; t < N_GEMM_CASES; t++) {
        const gemm_case *c = &gemm_cases[t];
        gemm_data g;
        gemm_data_new(&g, c, &r);
        size_t mn = (size_t)c->M * c->N;
        float *out = new_floats(g.nC), *c0 = new_floats(mn), *c1 = new_floats(mn);
        char what[200];
        gemm_tag(what, sizeof what, c, "blas deterministic/2 repeated");
        fails += !gemm_run(be, c, &g, out, what);
        gemm_block(c, &g, out, c0); /* stride padding holds NaN canaries */
        for (int rep = 1; rep < 10; rep++) {
            fails += !gemm_run(be, c, &g, out, what);
            gemm_block(c, &g, out, c1);
            if (same_bits(what, c1, c0, mn)) {
                fails++;
                break;
            }
        }
        free(out), free(c0), free(c1);
        gemm_data_free(&g);
    }
    sb_backend_free(be);
    return fails;
}

/* More than the mode promises (same thread count only), but true of this
 * implementation: the chunking of bias_grad and the loss does not depend on
 * the thread count. If that is ever given up, change this test and blas.c's
 * header together. */
static int blas_deterministic_reductions_should_not_depend_on_thread_count(void) {
    red_data d;
    red_data_new(&d, 4099, 7, 7, 1, 320);
    float db[2][7], l[2];
    for (int k = 0; k < 2; k++) {
        sb_backend *be = make("blas", SB_MODE_DETERMINISTIC, k + 1, 0);
        CHECK(be, "blas backend");
        red_bufs rb;
        red_bufs_new(&rb, be, &d);
        red_call(&rb, &d, db[k], &l[k], NULL);
        arena_free(&rb.A);
        sb_backend_free(be);
    }
    red_data_free(&d);
    return same_bits("bias_grad 2 threads vs 1", db[1], db[0], 7) +
           same_bits("loss 2 threads vs 1", &l[1], &l[0], 1);
}

/* Calls the reduction up to 50 times on a fast+perturb backend and counts the
 * calls until the result's bits change. With 1024 chunks of values spread
 * over 9 decades, two different orders give the same float sum with
 * negligible probability, so 50 identical results mean the order never
 * changed. */
static int perturbed_varies(int use_loss) {
    int fails = 0;
    for (int threads = 1; threads <= 2; threads++) {
        sb_backend *be = make("blas", SB_MODE_FAST, threads, 1);
        CHECK(be, "blas backend");
        CHECK(be->perturb == 1, "threads=%d: perturb not recorded on the backend", threads);
        red_data d;
        red_data_new(&d, 4096, 3, 5, 1, 330 + threads);
        red_bufs rb;
        red_bufs_new(&rb, be, &d);
        float db0[3], db[3], l0, l;
        red_call(&rb, &d, db0, &l0, NULL);
        int differed_at = 0;
        for (int rep = 2; rep <= 50 && !differed_at; rep++) {
            red_call(&rb, &d, db, &l, NULL);
            for (int j = 0; j < 3; j++) CHECK(isfinite(db[j]), "non-finite bias_grad");
            CHECK(isfinite(l), "non-finite loss");
            if (use_loss ? bits_of(l) != bits_of(l0) : memcmp(db, db0, sizeof db) != 0)
                differed_at = rep;
        }
        if (!differed_at) {
            fprintf(stderr,
                    "fast+perturb, %d thread(s): 50 calls of %s gave identical bits "
                    "(%a): the perturbation does not reach the summation order\n",
                    threads, use_loss ? "xent_forward's loss" : "bias_grad",
                    use_loss ? l0 : db0[0]);
            fails++;
        } else {
            printf("  fast+perturb, %d thread(s): %s changed bits at call %d\n", threads,
                   use_loss ? "loss" : "bias_grad", differed_at);
        }
        fails += !guards_ok(&rb.A, "perturb");
        arena_free(&rb.A);
        red_data_free(&d);
        sb_backend_free(be);
    }
    return fails;
}

static int blas_fast_perturbed_bias_grad_should_vary_between_calls(void) {
    return perturbed_varies(0);
}

static int blas_fast_perturbed_loss_should_vary_between_calls(void) { return perturbed_varies(1); }

/* The same wide-magnitude batch, deterministic mode with perturb requested:
 * the switch is ignored (and reported off) and 50 calls agree bitwise. */
static int blas_deterministic_mode_should_ignore_perturb_and_never_vary(void) {
    int fails = 0;
    for (int threads = 1; threads <= 2; threads++) {
        sb_backend *be = make("blas", SB_MODE_DETERMINISTIC, threads, 1);
        CHECK(be, "blas backend");
        CHECK(be->perturb == 0, "deterministic backend reports perturb on");
        red_data d;
        red_data_new(&d, 4096, 3, 5, 1, 340 + threads);
        red_bufs rb;
        red_bufs_new(&rb, be, &d);
        float db0[3], db[3], l0, l;
        red_call(&rb, &d, db0, &l0, NULL);
        for (int rep = 2; rep <= 50 && !fails; rep++) {
            red_call(&rb, &d, db, &l, NULL);
            char what[96];
            snprintf(what, sizeof what, "deterministic/%d perturb requested, call %d vs 1",
                     threads, rep);
            fails += same_bits(what, db, db0, 3) + same_bits(what, &l, &l0, 1);
        }
        arena_free(&rb.A);
        red_data_free(&d);
        sb_backend_free(be);
    }
    return fails;
}

/* ====================================================================== */
/* 5. registry and names                                                  */
/* ====================================================================== */

static int backend_new_should_reject_unknown_names_and_bad_threads(void) {
    sb_backend_config ok = {.mode = SB_MODE_DETERMINISTIC, .threads = 1};
    sb_error err;
    memset(&err, 0, sizeof err);
    CHECK(sb_backend_new("cuda-nope", &ok, &err) == NULL, "unknown name accepted");
    CHECK(err.status == SB_ERR_ARG && strstr(err.msg, "cuda-nope"),
          "message should name the backend: status %d, '%s'", err.status, err.msg);
    CHECK(sb_backend_new(NULL, &ok, &err) == NULL && err.msg[0], "NULL name accepted");
    CHECK(sb_backend_new("ref", NULL, &err) == NULL && err.msg[0], "NULL config accepted");
    CHECK(sb_backend_new("nope", &ok, NULL) == NULL, "NULL err must be allowed");
    const char *const *names = sb_backend_names();
    int count = 0;
    for (; names[count]; count++) {
        static const int bad[] = {0, -1, -2147483647 - 1, 1000000};
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
            sb_backend_config c = ok;
            c.threads = bad[k];
            memset(&err, 0, sizeof err);
            CHECK(sb_backend_new(names[count], &c, &err) == NULL, "%s: threads=%d accepted",
                  names[count], bad[k]);
            CHECK(err.status == SB_ERR_ARG && strstr(err.msg, "threads"),
                  "%s threads=%d: message should mention threads: '%s'", names[count], bad[k],
                  err.msg);
        }
        sb_backend_config c = ok;
        c.mode = (sb_mode)7;
        CHECK(sb_backend_new(names[count], &c, &err) == NULL, "%s: mode 7 accepted",
              names[count]);
        sb_backend *be = sb_backend_new(names[count], &ok, &err);
        CHECK(be, "%s: valid config rejected: %s", names[count], err.msg);
        CHECK(strcmp(be->name, names[count]) == 0, "name '%s' != '%s'", be->name, names[count]);
        sb_backend_free(be);
    }
    CHECK(count == 2, "expected ref and blas, got %d names", count);
    /* ref runs on one thread whatever it is asked, and says so */
    sb_backend_config four = {.mode = SB_MODE_FAST, .threads = 4, .perturb = 1};
    sb_backend *be = sb_backend_new("ref", &four, &err);
    CHECK(be && be->threads == 1 && be->perturb == 0 && be->mode == SB_MODE_FAST,
          "ref with threads=4: %s", be ? "wrong fields" : err.msg);
    sb_backend_free(be);
    sb_backend_free(NULL);
    return 0;
}

static int mode_and_act_names_should_round_trip(void) {
    const sb_mode ms[] = {SB_MODE_DETERMINISTIC, SB_MODE_FAST, SB_MODE_CANONICAL};
    for (int k = 0; k < 3; k++) {
        sb_mode m = (sb_mode)-1;
        CHECK(sb_mode_parse(sb_mode_name(ms[k]), &m) == 0 && m == ms[k], "mode %d", (int)ms[k]);
    }
    const sb_act as[] = {SB_ACT_RELU, SB_ACT_TANH, SB_ACT_GELU};
    for (int k = 0; k < 3; k++) {
        sb_act a = (sb_act)-1;
        CHECK(sb_act_parse(sb_act_name(as[k]), &a) == 0 && a == as[k], "act %d", (int)as[k]);
    }
    CHECK(strcmp(sb_mode_name(SB_MODE_FAST), "fast") == 0, "fast");
    CHECK(strcmp(sb_mode_name(SB_MODE_CANONICAL), "canonical") == 0, "canonical");
    CHECK(strcmp(sb_act_name(SB_ACT_GELU), "gelu") == 0, "gelu");
    static const char *bad[] = {"", "Fast", "fast ", "determinism", "Canonical", "softmax",
                                "RELU", "gelu_tanh"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        sb_mode m = SB_MODE_FAST;
        sb_act a = SB_ACT_TANH;
        CHECK(sb_mode_parse(bad[k], &m) == -1 && m == SB_MODE_FAST, "mode '%s' parsed", bad[k]);
        CHECK(sb_act_parse(bad[k], &a) == -1 && a == SB_ACT_TANH, "act '%s' parsed", bad[k]);
    }
    CHECK(sb_mode_parse(NULL, NULL) == -1 && sb_act_parse(NULL, NULL) == -1, "NULL parsed");
    return 0;
}

static int blas_info_should_describe_openblas(void) {
    const char *info = sb_blas_info();
    CHECK(info && strncmp(info, "OpenBLAS ", 9) == 0 && strstr(info, "core="),
          "unexpected: '%s'", info ? info : "(null)");
    CHECK(sb_blas_info() == info, "the description should be built once");
    printf("  %s\n", info);
    return 0;
}

static const sb_test_case cases[] = {
    SB_CASE(gradcheck_should_match_finite_differences_for_linear_layer),
    SB_CASE(gradcheck_should_match_finite_differences_for_activations),
    SB_CASE(gradcheck_should_match_finite_differences_for_softmax_cross_entropy),
    SB_CASE(gradcheck_should_flag_a_deliberately_wrong_gradient),
    SB_CASE(ref_gemm_should_match_double_precision_for_all_transposes),
    SB_CASE(ref_optimizers_should_match_double_precision_formulas),
    SB_CASE(ref_optimizers_should_follow_pytorch_operation_order_bitwise),
    SB_CASE(backward_ops_should_add_into_gradients),
    SB_CASE(blas_gemm_should_match_ref_within_summation_bound),
    SB_CASE(blas_batch_ops_should_match_ref_within_summation_bound),
    SB_CASE(blas_elementwise_ops_should_equal_ref_bitwise),
    SB_CASE(blas_deterministic_reductions_should_repeat_bitwise),
    SB_CASE(blas_deterministic_reductions_should_not_depend_on_thread_count),
    SB_CASE(blas_fast_perturbed_bias_grad_should_vary_between_calls),
    SB_CASE(blas_fast_perturbed_loss_should_vary_between_calls),
    SB_CASE(blas_deterministic_mode_should_ignore_perturb_and_never_vary),
    SB_CASE(backend_new_should_reject_unknown_names_and_bad_threads),
    SB_CASE(mode_and_act_names_should_round_trip),
    SB_CASE(blas_info_should_describe_openblas),
};

SB_TEST_MAIN(cases)
