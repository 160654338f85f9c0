/* test_kernels_bn.c — tests of the batch-norm ops of kernels/
 * (batchnorm_forward, batchnorm_forward_eval, batchnorm_backward): the "ref"
 * oracle against finite differences and double precision (batch statistics,
 * the unbiased running variance, eval mode), every "blas" path against "ref"
 * (deterministic and fast, 1 and 2 threads) with guard bytes around every
 * buffer, blas determinism, the variation of fast + perturb, and canonical
 * ref == blas bitwise for thread counts 1..4 and every SIMD path.
 *
 * What it is not: a benchmark or a PyTorch comparison (that comes with the
 * CNN model). Data comes from the seeded splitmix64 of kernels_test_util.h,
 * so a failure reproduces.
 */
#include "canonical.h"
#include "kernels_test_util.h"

static const sb_mode modes[] = {SB_MODE_DETERMINISTIC, SB_MODE_FAST};
static const int thread_counts[] = {1, 2};
static const float EPS = 1e-5f;
static const float MOMENTUM = 0.1f;

/* [N, C, S]: tiny and odd, a [N, C] input (S = 1), an image-like one large
 * enough that the channel split runs on the pool (> blas's serial threshold
 * of 16384 elements), and C > SB_BLAS_TILE (2048) so fast mode's locked add
 * crosses lock tiles. */
typedef struct bn_shape {
    int N, C, S;
} bn_shape;
static const bn_shape bn_shapes[] = {{4, 3, 5}, {7, 5, 1}, {8, 6, 400}, {9, 2100, 1}};
#define N_BN (sizeof bn_shapes / sizeof bn_shapes[0])

/* ====================================================================== */
/* data and one run on a backend                                          */
/* ====================================================================== */

typedef struct bn_data {
    int N, C, S;
    float *x, *w, *b, *g, *rm0, *rv0, *dx0, *dw0, *db0;
} bn_data;

static size_t bn_n(const bn_data *d) { return (size_t)d->N * d->C * d->S; }
static size_t at(const bn_data *d, int n, int c, int s) {
    return ((size_t)n * d->C + c) * d->S + s;
}

/* x: a per-channel offset in [-2,2] plus [-1,1] (the mean must not be ~0 for
 * the statistics to be tested), or with wide_x ±10^[-3,3] (any change in the
 * order of a channel sum changes its bits); dout in [-1,1], or with wide_g
 * ±10^[-3,6]. Running statistics start in [-1,1] and [0.5,2]. */
static void bn_data_new(bn_data *d, int N, int C, int S, int wide_x, int wide_g, uint64_t seed) {
    rng r = {seed};
    d->N = N, d->C = C, d->S = S;
    size_t n = bn_n(d);
    d->x = new_floats(n), d->g = new_floats(n), d->dx0 = new_floats(n);
    d->w = new_floats(C), d->b = new_floats(C), d->rm0 = new_floats(C), d->rv0 = new_floats(C);
    d->dw0 = new_floats(C), d->db0 = new_floats(C);
    for (int c = 0; c < C; c++) {
        float off = rng_unif(&r, -2, 2);
        for (int i = 0; i < N; i++)
            for (int s = 0; s < S; s++) {
                float v = rng_unif(&r, -1, 1);
                d->x[at(d, i, c, s)] =
                    wide_x ? (v < 0 ? -1.0f : 1.0f) * powf(10.0f, rng_unif(&r, -3, 3)) : off + v;
            }
    }
    fill(&r, d->w, C, 0.5f, 1.5f), fill(&r, d->b, C, -1, 1);
    fill(&r, d->rm0, C, -1, 1), fill(&r, d->rv0, C, 0.5f, 2);
    for (size_t i = 0; i < n; i++) {
        float v = rng_unif(&r, -1, 1);
        d->g[i] = wide_g ? (v < 0 ? -1.0f : 1.0f) * powf(10.0f, rng_unif(&r, -3, 6)) : v;
    }
    fill(&r, d->dx0, n, -1, 1), fill(&r, d->dw0, C, -1, 1), fill(&r, d->db0, C, -1, 1);
}

static void bn_data_free(bn_data *d) {
    free(d->x), free(d->w), free(d->b), free(d->g), free(d->rm0), free(d->rv0), free(d->dx0);
    free(d->dw0), free(d->db0);
}

typedef struct bn_out {
    float *out, *mean, *rstd, *rm, *rv, *eval, *dx, *dw, *db;
} bn_out;

static void bn_out_new(bn_out *o, const bn_data *d) {
    size_t n = bn_n(d);
    o->out = new_floats(n), o->eval = new_floats(n), o->dx = new_floats(n);
    o->mean = new_floats(d->C), o->rstd = new_floats(d->C), o->rm = new_floats(d->C);
    o->rv = new_floats(d->C), o->dw = new_floats(d->C), o->db = new_floats(d->C);
}

static void bn_out_free(bn_out *o) {
    free(o->out), free(o->eval), free(o->dx), free(o->mean), free(o->rstd), free(o->rm);
    free(o->rv), free(o->dw), free(o->db);
}

/* On fresh guarded buffers: the eval forward from rm0/rv0 (into eval), then
 * the training forward (out, mean, rstd pre-filled with NaN canaries: the op
 * must overwrite them; running stats start at rm0/rv0 and are updated), then
 * the backward (gradients pre-filled with dx0, dw0, db0: the op adds) from
 * this run's saved mean/rstd, or from smean/srstd when given (so two
 * backends' backward can be compared on the same statistics). Returns
 * failures (broken guards). */
static int bn_run(sb_backend *be, const bn_data *d, bn_out *o, const float *smean,
                  const float *srstd, const char *what) {
    arena A = {.be = be};
    const size_t n = bn_n(d), C = (size_t)d->C;
    float *nan_buf = new_floats(n);
    for (size_t i = 0; i < n; i++) nan_buf[i] = canary();
    float *x = put(&A, d->x, n), *w = put(&A, d->w, C), *b = put(&A, d->b, C);
    float *g = put(&A, d->g, n), *out = put(&A, nan_buf, n), *ev = put(&A, nan_buf, n);
    float *mean = put(&A, nan_buf, C), *rstd = put(&A, nan_buf, C);
    float *rm = put(&A, d->rm0, C), *rv = put(&A, d->rv0, C);
    float *dx = put(&A, d->dx0, n), *dw = put(&A, d->dw0, C), *db = put(&A, d->db0, C);
    float *bm = mean, *br = rstd;
    if (smean) bm = put(&A, smean, C), br = put(&A, srstd, C);
    be->i->batchnorm_forward_eval(be, ev, x, w, b, rm, rv, d->N, d->C, d->S, EPS);
    be->i->batchnorm_forward(be, out, mean, rstd, rm, rv, x, w, b, d->N, d->C, d->S, EPS,
                             MOMENTUM);
    be->i->batchnorm_backward(be, dx, dw, db, g, x, w, bm, br, d->N, d->C, d->S);
    get(&A, o->out, out, n), get(&A, o->eval, ev, n), get(&A, o->mean, mean, C);
    get(&A, o->rstd, rstd, C), get(&A, o->rm, rm, C), get(&A, o->rv, rv, C);
    get(&A, o->dx, dx, n), get(&A, o->dw, dw, C), get(&A, o->db, db, C);
    int fails = !guards_ok(&A, what);
    arena_free(&A);
    free(nan_buf);
    return fails;
}

static int bn_same(const char *what, const bn_data *d, const bn_out *a, const bn_out *b) {
    const size_t n = bn_n(d), C = (size_t)d->C;
    return same_bits(what, a->out, b->out, n) + same_bits(what, a->eval, b->eval, n) +
           same_bits(what, a->mean, b->mean, C) + same_bits(what, a->rstd, b->rstd, C) +
           same_bits(what, a->rm, b->rm, C) + same_bits(what, a->rv, b->rv, C) +
           same_bits(what, a->dx, b->dx, n) + same_bits(what, a->dw, b->dw, C) +
           same_bits(what, a->db, b->db, C);
}

/* ====================================================================== */
/* 1. gradient checks (ref)                                               */
/* ====================================================================== */

/* L = sum G * out of the training forward (batch statistics), in double */
static double bn_loss(sb_backend *be, const bn_data *d) {
    const size_t n = bn_n(d);
    float *out = new_floats(n), *m = new_floats(d->C), *rs = new_floats(d->C);
    be->i->batchnorm_forward(be, out, m, rs, NULL, NULL, d->x, d->w, d->b, d->N, d->C, d->S, EPS,
                             MOMENTUM);
    double L = 0;
    for (size_t i = 0; i < n; i++) L += (double)d->g[i] * out[i];
    free(out), free(m), free(rs);
    return L;
}

static double bn_fd(sb_backend *be, float *p, size_t k, float h, const bn_data *d) {
    float keep = p[k];
    p[k] = keep + h;
    double lp = bn_loss(be, d);
    p[k] = keep - h;
    double lm = bn_loss(be, d);
    p[k] = keep;
    return (lp - lm) / (2.0 * (double)h);
}

/* The analytic gradients (backward into zeroed buffers, training mode: the
 * statistics depend on the input) against central differences of the float
 * forward. Step h = 2^-7: the truncation error h^2/6 * |L'''| is ~1e-4 here
 * (rstd ~ 1..2, M <= 20); the float forward's rounding noise, ~M*u*sum|G*out|
 * ~ 1e-5, divided by 2h gives ~1e-3. The limit 5e-3 is above both; a wrong
 * formula (a missing mean term, a wrong sign, M - 1 for M) is off by O(0.05..1).
 * Shapes include S > 1 (the sums run over n and s) and S = 1. */
static int gradcheck_should_match_finite_differences_for_batchnorm_input_weight_and_bias(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    const bn_shape shapes[] = {{4, 3, 5}, {6, 2, 1}, {2, 2, 3}};
    int fails = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        bn_data d;
        bn_data_new(&d, shapes[si].N, shapes[si].C, shapes[si].S, 0, 0, 10 + si);
        const size_t n = bn_n(&d), C = (size_t)d.C;
        float *out = new_floats(n), *m = new_floats(C), *rs = new_floats(C);
        float *dx = new_floats(n), *dw = new_floats(C), *db = new_floats(C);
        ref->i->batchnorm_forward(ref, out, m, rs, NULL, NULL, d.x, d.w, d.b, d.N, d.C, d.S, EPS,
                                  MOMENTUM);
        ref->i->batchnorm_backward(ref, dx, dw, db, d.g, d.x, d.w, m, rs, d.N, d.C, d.S);
        double *nx = calloc(n, sizeof *nx), *nw = calloc(C, sizeof *nw), *nb = calloc(C, sizeof *nb);
        SB_ASSERT(nx && nw && nb);
        const float h = 0x1p-7f;
        for (size_t k = 0; k < n; k++) nx[k] = bn_fd(ref, d.x, k, h, &d);
        for (size_t k = 0; k < C; k++) nw[k] = bn_fd(ref, d.w, k, h, &d), nb[k] = bn_fd(ref, d.b, k, h, &d);
        char what[96];
        snprintf(what, sizeof what, "batchnorm N=%d C=%d S=%d dinp", d.N, d.C, d.S);
        fails += check_grad(what, dx, nx, n, 5e-3, 0);
        snprintf(what, sizeof what, "batchnorm N=%d C=%d S=%d dweight", d.N, d.C, d.S);
        fails += check_grad(what, dw, nw, C, 5e-3, 0);
        snprintf(what, sizeof what, "batchnorm N=%d C=%d S=%d dbias", d.N, d.C, d.S);
        fails += check_grad(what, db, nb, C, 5e-3, 0);
        free(out), free(m), free(rs), free(dx), free(dw), free(db), free(nx), free(nw), free(nb);
        bn_data_free(&d);
    }
    sb_backend_free(ref);
    return fails;
}

/* ====================================================================== */
/* 2. double-precision references                                         */
/* ====================================================================== */

/* |got - want| <= tol (per element), reporting the worst ratio */
static int within_d(const char *what, const float *got, const double *want, const double *tol,
                    size_t n) {
    size_t bad = n;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double)got[i] - want[i]);
        if (!isfinite(got[i]) || diff > tol[i]) {
            double ratio = isfinite(got[i]) ? diff / tol[i] : INFINITY;
            if (bad == n || ratio > worst) worst = ratio, bad = i;
        }
    }
    if (bad == n) return 0;
    fprintf(stderr, "%s: at [%zu] got %.9g, double %.17g, diff %.3g > limit %.3g\n", what, bad,
            got[bad], want[bad], fabs((double)got[bad] - want[bad]), tol[bad]);
    return 1;
}

/* The forward in double and the limits of a float computation in any order
 * (the same first-order analysis as layer norm's test, with the channel's
 * M = N*S values in place of a row):
 *   mean: a sum of M terms then a division, |err| <= E_m + u|m| with
 *     E_m = gamma(M+1) * sum|x| / M;
 *   variance: relative error rel_var = gamma(M+4) + 2 E_m sum|d| / Q (d_i
 *     carries the mean's error; the data keep that term small);
 *   rstd: rel_var / 2 + 3u (add, sqrt, divide);
 *   out = xhat * w + b: |w| (|xhat| (rel_rstd + 2u) + rstd E_m) + u|out|;
 *   running = (1-mom) * r0 + mom * batch: 2u|(1-mom) r0| (the rounding of
 *     1 - mom and the product) + mom * (err of batch) + u|mom * batch| (the
 *     product) + u|result| (the sum); the unbiased variance Q / (M - 1)
 *     has relative error rel_var + u;
 *   eval out from r0: rs has 3u, (x - r0) u, the products and the add u
 *     each: |w| |xhat| 6u + u|out|.
 * Every limit carries a factor 2 of slack for the first-order analysis. */
typedef struct bn_want {
    double *mean, *rstd, *out, *rm, *rv, *eval;     /* values */
    double *tmean, *trstd, *tout, *trm, *trv, *teval; /* limits */
} bn_want;

static void bn_want_new(bn_want *W, const bn_data *d) {
    const size_t n = bn_n(d), C = (size_t)d->C;
    double **v[] = {&W->mean, &W->rstd, &W->rm, &W->rv, &W->tmean, &W->trstd, &W->trm, &W->trv};
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) *v[k] = calloc(C, sizeof(double));
    double **el[] = {&W->out, &W->eval, &W->tout, &W->teval};
    for (size_t k = 0; k < sizeof el / sizeof el[0]; k++) *el[k] = calloc(n, sizeof(double));
    SB_ASSERT(W->mean && W->rstd && W->rm && W->rv && W->tmean && W->trstd && W->trm && W->trv);
    SB_ASSERT(W->out && W->eval && W->tout && W->teval);
    const double u = UNIT_ROUNDOFF, mom = MOMENTUM, keep = 1.0 - mom;
    const double M = (double)d->N * d->S;
    for (int c = 0; c < d->C; c++) {
        double s = 0, sa = 0, q = 0, sd = 0;
        for (int i = 0; i < d->N; i++)
            for (int j = 0; j < d->S; j++) {
                double x = d->x[at(d, i, c, j)];
                s += x, sa += fabs(x);
            }
        double m = s / M;
        for (int i = 0; i < d->N; i++)
            for (int j = 0; j < d->S; j++) {
                double dd = d->x[at(d, i, c, j)] - m;
                q += dd * dd, sd += fabs(dd);
            }
        double rstd = 1.0 / sqrt(q / M + (double)EPS), vu = q / (M - 1);
        double Em = gamma_n(M + 1) * sa / M;
        double rel_var = gamma_n(M + 4) + 2 * Em * sd / q, rel_rstd = rel_var / 2 + 3 * u;
        W->mean[c] = m, W->rstd[c] = rstd;
        W->tmean[c] = 2 * (Em + u * fabs(m));
        W->trstd[c] = 2 * rel_rstd * rstd;
        W->rm[c] = keep * d->rm0[c] + mom * m;
        W->rv[c] = keep * d->rv0[c] + mom * vu;
        W->trm[c] = 2 * (2 * u * fabs(keep * d->rm0[c]) + mom * (Em + u * fabs(m)) +
                         u * fabs(mom * m) + u * fabs(W->rm[c])) + 1e-30;
        W->trv[c] = 2 * (2 * u * fabs(keep * d->rv0[c]) + mom * vu * (rel_var + u) +
                         u * fabs(mom * vu) + u * fabs(W->rv[c])) + 1e-30;
        double ers = 1.0 / sqrt((double)d->rv0[c] + (double)EPS);
        for (int i = 0; i < d->N; i++)
            for (int j = 0; j < d->S; j++) {
                size_t e = at(d, i, c, j);
                double xhat = (d->x[e] - m) * rstd, o = xhat * d->w[c] + d->b[c];
                W->out[e] = o;
                W->tout[e] = 2 * (fabs((double)d->w[c]) * (fabs(xhat) * (rel_rstd + 2 * u) +
                                                            rstd * Em) + u * fabs(o)) + 1e-30;
                double exh = (d->x[e] - (double)d->rm0[c]) * ers, eo = exh * d->w[c] + d->b[c];
                W->eval[e] = eo;
                W->teval[e] = 2 * (fabs((double)d->w[c]) * fabs(exh) * 6 * u + u * fabs(eo)) + 1e-30;
            }
    }
}

static void bn_want_free(bn_want *W) {
    free(W->mean), free(W->rstd), free(W->out), free(W->rm), free(W->rv), free(W->eval);
    free(W->tmean), free(W->trstd), free(W->tout), free(W->trm), free(W->trv), free(W->teval);
}

static int bn_check_forward(const char *what, const bn_data *d, const bn_out *o, const bn_want *W) {
    const size_t n = bn_n(d), C = (size_t)d->C;
    char w2[192];
    int fails = 0;
    snprintf(w2, sizeof w2, "%s mean", what), fails += within_d(w2, o->mean, W->mean, W->tmean, C);
    snprintf(w2, sizeof w2, "%s rstd", what), fails += within_d(w2, o->rstd, W->rstd, W->trstd, C);
    snprintf(w2, sizeof w2, "%s out", what), fails += within_d(w2, o->out, W->out, W->tout, n);
    snprintf(w2, sizeof w2, "%s running_mean", what);
    fails += within_d(w2, o->rm, W->rm, W->trm, C);
    snprintf(w2, sizeof w2, "%s running_var (unbiased)", what);
    fails += within_d(w2, o->rv, W->rv, W->trv, C);
    snprintf(w2, sizeof w2, "%s eval out", what);
    fails += within_d(w2, o->eval, W->eval, W->teval, n);
    return fails;
}

/* Every backend, mode and thread count against the double forward: batch
 * mean and rstd (biased variance), the output, PyTorch's running update with
 * the UNBIASED variance (M = 7..20 here, so the factor M/(M-1) is 5..17%,
 * far above the limits: a biased running_var fails), and the eval forward
 * from the running statistics. */
static int batchnorm_forward_should_match_double_precision_stats_running_update_and_eval(void) {
    int fails = 0;
    const sb_backend_config cfgs[] = {{SB_MODE_DETERMINISTIC, 1, 0}, {SB_MODE_DETERMINISTIC, 2, 0},
                                      {SB_MODE_FAST, 2, 1}, {SB_MODE_CANONICAL, 1, 0},
                                      {SB_MODE_CANONICAL, 2, 0}};
    const char *names[] = {"ref", "blas"};
    for (size_t si = 0; si < N_BN; si++) {
        bn_data d;
        bn_data_new(&d, bn_shapes[si].N, bn_shapes[si].C, bn_shapes[si].S, 0, 0, 30 + si);
        bn_want W;
        bn_want_new(&W, &d);
        for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++)
            for (int bi = 0; bi < 2; bi++) {
                sb_backend_config cfg = cfgs[ci];
                sb_error err = {0};
                sb_backend *be = sb_backend_new(names[bi], &cfg, &err);
                CHECK(be, "%s: %s", names[bi], err.msg);
                bn_out o;
                bn_out_new(&o, &d);
                char what[128];
                snprintf(what, sizeof what, "%s %s/%d batchnorm N=%d C=%d S=%d", names[bi],
                         sb_mode_name(cfg.mode), be->threads, d.N, d.C, d.S);
                fails += bn_run(be, &d, &o, NULL, NULL, what);
                fails += bn_check_forward(what, &d, &o, &W);
                bn_out_free(&o);
                sb_backend_free(be);
            }
        bn_want_free(&W);
        bn_data_free(&d);
    }
    return fails;
}

/* ====================================================================== */
/* 3. blas against ref                                                    */
/* ====================================================================== */

/* Deterministic blas runs ref's channel functions on channel ranges, so it
 * must equal ref bit for bit (limit 0) in every output, on 1 and 2 threads.
 * Fast mode sums each channel over the batch in chunk-completion order:
 *   forward: both ref and fast are within the double-precision limits of
 *     test 2 (bn_want), so they differ by at most twice those;
 *   backward, run on ref's saved mean/rstd so that only the sums' order
 *     differs: G = S(dout) and X = S(dout*xhat) of two orders are within
 *     eG = 2 gamma(M+1) sum|dout| and eX = 2 gamma(M+1) sum|dout*xhat|;
 *     dbias and dweight within 2 gamma(M+2) (|d0| + sum|term|) (as layer
 *     norm's columns); dinp = dx0 + ((g - a) - xhat b) k with a = G/M,
 *     b = X/M differing by eG/M + 2u|a|, eX/M + 2u|b|, plus both sides'
 *     roundings of the three-step expression (6u on each term) and of the
 *     final add (2u): with a factor 2 of slack.
 * Guard bytes around every buffer. */
static int blas_batchnorm_should_equal_ref_deterministic_and_stay_within_bound_fast(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    const double u = UNIT_ROUNDOFF;
    int fails = 0;
    for (size_t si = 0; si < N_BN; si++) {
        bn_data d;
        bn_data_new(&d, bn_shapes[si].N, bn_shapes[si].C, bn_shapes[si].S, 0, 1, 50 + si);
        const size_t n = bn_n(&d), C = (size_t)d.C;
        const double M = (double)d.N * d.S;
        bn_want W;
        bn_want_new(&W, &d);
        bn_out want, got;
        bn_out_new(&want, &d), bn_out_new(&got, &d);
        fails += bn_run(ref, &d, &want, NULL, NULL, "ref batchnorm");
        double *lw = calloc(C, sizeof *lw), *lb = calloc(C, sizeof *lb), *lx = calloc(n, sizeof *lx);
        double *tf[6];
        SB_ASSERT(lw && lb && lx);
        for (size_t c = 0; c < C; c++) {
            double sg = 0, sgx = 0, G = 0, X = 0;
            const double m = want.mean[c], rs = want.rstd[c];
            for (int i = 0; i < d.N; i++)
                for (int j = 0; j < d.S; j++) {
                    size_t e = at(&d, i, (int)c, j);
                    double xhat = (double)((d.x[e] - want.mean[c]) * want.rstd[c]);
                    sg += fabs((double)d.g[e]), sgx += fabs(d.g[e] * xhat);
                    G += d.g[e], X += d.g[e] * xhat;
                }
            lb[c] = 2 * gamma_n(M + 2) * (fabs((double)d.db0[c]) + sg);
            lw[c] = 2 * gamma_n(M + 2) * (fabs((double)d.dw0[c]) + sgx);
            const double a = G / M, b = X / M, k = fabs((double)d.w[c] * rs);
            const double da = 2 * gamma_n(M + 1) * sg / M + 2 * u * fabs(a);
            const double db = 2 * gamma_n(M + 1) * sgx / M + 2 * u * fabs(b);
            for (int i = 0; i < d.N; i++)
                for (int j = 0; j < d.S; j++) {
                    size_t e = at(&d, i, (int)c, j);
                    double xhat = fabs(((double)d.x[e] - m) * rs);
                    double terms = fabs((double)d.g[e]) + fabs(a) + xhat * fabs(b);
                    lx[e] = 2 * (k * (da + xhat * db + 6 * u * terms) +
                                 2 * u * (fabs((double)d.dx0[e]) + k * terms)) + 1e-30;
                }
        }
        /* forward: twice the double limits (both sides are within them) */
        double *lims[] = {W.tmean, W.trstd, W.tout, W.trm, W.trv, W.teval};
        const size_t lens[] = {C, C, n, C, C, n};
        for (int k = 0; k < 6; k++) {
            tf[k] = calloc(lens[k], sizeof(double));
            SB_ASSERT(tf[k]);
            for (size_t i = 0; i < lens[k]; i++) tf[k][i] = 2 * lims[k][i];
        }
        for (int mi = 0; mi < 2; mi++)
            for (int ti = 0; ti < 2; ti++) {
                sb_backend *be = make("blas", modes[mi], thread_counts[ti], 0);
                CHECK(be, "blas backend");
                char what[128];
                snprintf(what, sizeof what, "blas %s/%d vs ref batchnorm N=%d C=%d S=%d",
                         sb_mode_name(modes[mi]), thread_counts[ti], d.N, d.C, d.S);
                fails += bn_run(be, &d, &got, want.mean, want.rstd, what);
                if (modes[mi] == SB_MODE_DETERMINISTIC) {
                    fails += bn_same(what, &d, &got, &want);
                } else {
                    fails += within(what, got.mean, want.mean, tf[0], 0, C);
                    fails += within(what, got.rstd, want.rstd, tf[1], 0, C);
                    fails += within(what, got.out, want.out, tf[2], 0, n);
                    fails += within(what, got.rm, want.rm, tf[3], 0, C);
                    fails += within(what, got.rv, want.rv, tf[4], 0, C);
                    fails += same_bits(what, got.eval, want.eval, n); /* no reduction */
                    fails += within(what, got.dw, want.dw, lw, 0, C);
                    fails += within(what, got.db, want.db, lb, 0, C);
                    fails += within(what, got.dx, want.dx, lx, 0, n);
                }
                sb_backend_free(be);
            }
        for (int k = 0; k < 6; k++) free(tf[k]);
        free(lw), free(lb), free(lx);
        bn_out_free(&want), bn_out_free(&got);
        bn_want_free(&W);
        bn_data_free(&d);
    }
    sb_backend_free(ref);
    return fails;
}

/* ====================================================================== */
/* 4. determinism and fast-mode variation                                 */
/* ====================================================================== */

/* Same inputs → same bits, three repeats, wide-range x and dout (any change
 * of order would show), 1 and 2 threads, perturb asked for (deterministic
 * mode must ignore it). */
static int blas_deterministic_batchnorm_should_repeat_bitwise(void) {
    int fails = 0;
    bn_data d;
    bn_data_new(&d, 16, 6, 200, 1, 1, 60);
    for (int ti = 0; ti < 2; ti++) {
        sb_backend *be = make("blas", SB_MODE_DETERMINISTIC, thread_counts[ti], 1);
        CHECK(be, "blas backend");
        bn_out a, b;
        bn_out_new(&a, &d), bn_out_new(&b, &d);
        fails += bn_run(be, &d, &a, NULL, NULL, "blas deterministic batchnorm");
        for (int rep = 0; rep < 3; rep++) {
            fails += bn_run(be, &d, &b, NULL, NULL, "blas deterministic batchnorm");
            fails += bn_same("blas deterministic batchnorm repeat", &d, &a, &b);
        }
        bn_out_free(&a), bn_out_free(&b);
        sb_backend_free(be);
    }
    bn_data_free(&d);
    return fails;
}

/* Fast + perturb: the chunk order of the unordered sums is permuted per call,
 * so with 16 chunks of 2 images and x, dout over 6 and 9 decades, the bits
 * of the batch mean, dweight and dbias change within a few calls, on 1
 * thread as on 2. 50 identical results mean the perturbation does not reach
 * the sum. */
static int blas_fast_perturbed_batchnorm_statistics_and_gradients_should_vary_between_calls(void) {
    int fails = 0;
    bn_data d;
    bn_data_new(&d, 32, 4, 3, 1, 1, 70);
    for (int ti = 0; ti < 2; ti++) {
        sb_backend *be = make("blas", SB_MODE_FAST, thread_counts[ti], 1);
        CHECK(be, "blas backend");
        CHECK(be->perturb == 1, "perturb not in effect");
        bn_out first, again;
        bn_out_new(&first, &d), bn_out_new(&again, &d);
        fails += bn_run(be, &d, &first, NULL, NULL, "fast+perturb batchnorm");
        int m_at = 0, dw_at = 0, db_at = 0;
        const size_t C = (size_t)d.C;
        for (int rep = 2; rep <= 50 && !(m_at && dw_at && db_at) && !fails; rep++) {
            /* the backward on the first call's statistics: only its own sums vary */
            fails += bn_run(be, &d, &again, first.mean, first.rstd, "fast+perturb batchnorm");
            if (!m_at && memcmp(again.mean, first.mean, C * sizeof(float))) m_at = rep;
            if (!dw_at && memcmp(again.dw, first.dw, C * sizeof(float))) dw_at = rep;
            if (!db_at && memcmp(again.db, first.db, C * sizeof(float))) db_at = rep;
        }
        const char *names[] = {"batch mean", "dweight", "dbias"};
        int at_[] = {m_at, dw_at, db_at};
        for (int k = 0; k < 3; k++) {
            if (!at_[k]) {
                fprintf(stderr, "blas fast+perturb/%d batchnorm %s: 50 calls gave identical bits\n",
                        thread_counts[ti], names[k]);
                fails++;
            } else {
                printf("  blas fast+perturb/%d batchnorm %s: bits changed at call %d\n",
                       thread_counts[ti], names[k], at_[k]);
            }
        }
        bn_out_free(&first), bn_out_free(&again);
        sb_backend_free(be);
    }
    bn_data_free(&d);
    return fails;
}

/* ====================================================================== */
/* 5. canonical: ref == blas bitwise on every SIMD path and thread count  */
/* ====================================================================== */

static const char *const ISAS[] = {"scalar", "avx2", "avx512"};

static sb_backend *make_canon_blas(int isa, int threads, int *skip) {
    *skip = !sb_canon_isa_supported((sb_canon_isa)isa);
    if (*skip) return NULL;
    setenv("SB_CANONICAL_ISA", ISAS[isa], 1);
    sb_backend *be = make("blas", SB_MODE_CANONICAL, threads, 0);
    unsetenv("SB_CANONICAL_ISA");
    return be;
}

/* Every output (training forward, running update, eval forward, backward),
 * wide-range dout, and one shape with M = 3200 > 64 so the block tree has
 * several blocks per channel. */
static int canonical_batchnorm_should_equal_ref_bitwise_on_every_path_and_thread_count(void) {
    sb_backend *ref = make("ref", SB_MODE_CANONICAL, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0, ran[3] = {0};
    const bn_shape shapes[] = {{4, 3, 5}, {7, 5, 1}, {8, 6, 400}, {9, 2100, 1}, {64, 3, 50}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        bn_data d;
        bn_data_new(&d, shapes[si].N, shapes[si].C, shapes[si].S, 0, 1, 80 + si);
        bn_out want, got;
        bn_out_new(&want, &d), bn_out_new(&got, &d);
        fails += bn_run(ref, &d, &want, NULL, NULL, "canonical ref");
        for (int isa = 0; isa < 3; isa++)
            for (int th = 1; th <= 4; th++) {
                int skip;
                sb_backend *be = make_canon_blas(isa, th, &skip);
                if (skip) continue;
                CHECK(be, "blas canonical %s/%d", ISAS[isa], th);
                ran[isa]++;
                char what[128];
                snprintf(what, sizeof what, "canonical blas/%s/%d vs ref batchnorm N=%d C=%d S=%d",
                         ISAS[isa], th, d.N, d.C, d.S);
                fails += bn_run(be, &d, &got, NULL, NULL, what);
                fails += bn_same(what, &d, &got, &want);
                sb_backend_free(be);
            }
        bn_out_free(&want), bn_out_free(&got);
        bn_data_free(&d);
    }
    printf("  SIMD paths run:");
    for (int isa = 0; isa < 3; isa++)
        printf(" %s%s", ISAS[isa], ran[isa] ? "" : " (not on this CPU: skipped)");
    printf("\n");
    CHECK(ran[0] > 0, "the scalar path always runs");
    sb_backend_free(ref);
    return fails;
}

/* The canonical order is not deterministic mode's (FMA, the block tree): on
 * wide-range data the two must differ, or canonical mode would not be the
 * code path under test. */
static int canonical_batchnorm_should_differ_from_deterministic_mode(void) {
    bn_data d;
    bn_data_new(&d, 64, 3, 50, 0, 1, 90);
    sb_backend *det = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    sb_backend *can = make("ref", SB_MODE_CANONICAL, 1, 0);
    CHECK(det && can, "ref backends");
    bn_out a, b;
    bn_out_new(&a, &d), bn_out_new(&b, &d);
    int fails = bn_run(det, &d, &a, NULL, NULL, "ref det") +
                bn_run(can, &d, &b, NULL, NULL, "ref canonical");
    const size_t n = bn_n(&d), C = (size_t)d.C;
    int differ = memcmp(a.out, b.out, n * sizeof(float)) && memcmp(a.dw, b.dw, C * sizeof(float)) &&
                 memcmp(a.dx, b.dx, n * sizeof(float)) && memcmp(a.eval, b.eval, n * sizeof(float));
    if (!differ) {
        fprintf(stderr, "canonical and deterministic batchnorm gave identical out, dweight, dinp or eval\n");
        fails++;
    }
    bn_out_free(&a), bn_out_free(&b);
    bn_data_free(&d);
    sb_backend_free(det), sb_backend_free(can);
    return fails;
}

static const sb_test_case cases[] = {
    SB_CASE(gradcheck_should_match_finite_differences_for_batchnorm_input_weight_and_bias),
    SB_CASE(batchnorm_forward_should_match_double_precision_stats_running_update_and_eval),
    SB_CASE(blas_batchnorm_should_equal_ref_deterministic_and_stay_within_bound_fast),
    SB_CASE(blas_deterministic_batchnorm_should_repeat_bitwise),
    SB_CASE(blas_fast_perturbed_batchnorm_statistics_and_gradients_should_vary_between_calls),
    SB_CASE(canonical_batchnorm_should_equal_ref_bitwise_on_every_path_and_thread_count),
    SB_CASE(canonical_batchnorm_should_differ_from_deterministic_mode),
};

SB_TEST_MAIN(cases)
