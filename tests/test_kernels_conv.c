/* test_kernels_conv.c — tests of the convolution and pooling ops of kernels/
 * (conv2d_forward, conv2d_backward, maxpool2d_*, avgpool2d_*): the "ref"
 * oracle against finite differences and against a direct double-precision
 * convolution, every "blas" path against "ref" (deterministic and fast, 1 and
 * 2 threads) with guard bytes around every buffer, blas determinism, the
 * variation of fast + perturb, and canonical ref == blas bitwise for thread
 * counts 1..4 and every SIMD path.
 *
 * What it is not: a benchmark, a PyTorch comparison (that comes with the CNN
 * model), or a test of the engine's layers. Data comes from the seeded
 * splitmix64 of kernels_test_util.h, so a failure reproduces.
 */
#include "canonical.h"
#include "kernels_test_util.h"

static const sb_mode modes[] = {SB_MODE_DETERMINISTIC, SB_MODE_FAST};
static const int thread_counts[] = {1, 2};

/* Odd shapes: non-square inputs and kernels, stride 2, padding 1, kernels 1
 * and 3, channel counts that are not multiples of 8, a 1x1 output, and one
 * shape large enough that every pass runs on the pool (more than blas's
 * serial threshold of 16384 elements). */
static const sb_conv2d_shape conv_shapes[] = {
    /* n cin h w   cout kh kw   sh sw ph pw */
    {2, 3, 7, 5, 5, 3, 3, 1, 1, 1, 1},
    {3, 1, 8, 9, 4, 3, 2, 2, 2, 1, 0},
    {5, 9, 6, 6, 10, 1, 1, 1, 1, 0, 0},
    {4, 5, 9, 7, 3, 3, 3, 2, 1, 1, 1},
    {2, 2, 3, 3, 2, 3, 3, 1, 1, 0, 0},
    {8, 4, 16, 16, 8, 3, 3, 1, 1, 1, 1},
};
#define N_CONV (sizeof conv_shapes / sizeof conv_shapes[0])

static const sb_pool2d_shape pool_shapes[] = {
    /* n c h w   kh kw sh sw ph pw */
    {2, 3, 7, 6, 2, 2, 2, 2, 0, 0},
    {3, 5, 9, 8, 3, 3, 2, 2, 1, 1},
    {2, 2, 5, 7, 3, 2, 1, 2, 1, 0}, /* overlapping windows: backward sums */
    {8, 16, 16, 16, 3, 3, 2, 2, 1, 1},
};
#define N_POOL (sizeof pool_shapes / sizeof pool_shapes[0])

/* ====================================================================== */
/* conv data, one run on a backend, and the double-precision reference    */
/* ====================================================================== */

typedef struct conv_data {
    sb_conv2d_shape s;
    size_t nx, nw, nb, no; /* floats in input, weight, bias, output */
    size_t ckk, np;        /* cin*kh*kw; n*OH*OW */
    float *x, *w, *b, *g;  /* input, weight, bias, dout */
    float *dx0, *dw0, *db0; /* gradients' values before backward (+= is tested) */
} conv_data;

/* values in [-1,1]; wide: dout = ±10^[-3,6], so that any change in the order
 * of a batch sum changes the rounded result */
static void conv_data_new(conv_data *d, const sb_conv2d_shape *s, int wide, uint64_t seed) {
    rng r = {seed};
    d->s = *s;
    int OH = sb_conv2d_out_h(s), OW = sb_conv2d_out_w(s);
    d->nx = (size_t)s->n * s->cin * s->h * s->w;
    d->ckk = (size_t)s->cin * s->kh * s->kw;
    d->nw = (size_t)s->cout * d->ckk;
    d->nb = (size_t)s->cout;
    d->np = (size_t)s->n * OH * OW;
    d->no = (size_t)s->cout * d->np;
    d->x = new_floats(d->nx), d->w = new_floats(d->nw), d->b = new_floats(d->nb);
    d->g = new_floats(d->no);
    d->dx0 = new_floats(d->nx), d->dw0 = new_floats(d->nw), d->db0 = new_floats(d->nb);
    fill(&r, d->x, d->nx, -1, 1), fill(&r, d->w, d->nw, -1, 1), fill(&r, d->b, d->nb, -1, 1);
    for (size_t i = 0; i < d->no; i++) {
        float v = rng_unif(&r, -1, 1);
        d->g[i] = wide ? (v < 0 ? -1.0f : 1.0f) * powf(10.0f, rng_unif(&r, -3, 6)) : v;
    }
    fill(&r, d->dx0, d->nx, -1, 1), fill(&r, d->dw0, d->nw, -1, 1), fill(&r, d->db0, d->nb, -1, 1);
}

static void conv_data_free(conv_data *d) {
    free(d->x), free(d->w), free(d->b), free(d->g), free(d->dx0), free(d->dw0), free(d->db0);
}

typedef struct conv_out {
    float *out, *dx, *dw, *db;
} conv_out;

static void conv_out_new(conv_out *o, const conv_data *d) {
    o->out = new_floats(d->no), o->dx = new_floats(d->nx);
    o->dw = new_floats(d->nw), o->db = new_floats(d->nb);
}

static void conv_out_free(conv_out *o) { free(o->out), free(o->dx), free(o->dw), free(o->db); }

/* Forward (output pre-filled with NaN canaries: the op must overwrite it)
 * and backward (gradients pre-filled with dx0, dw0, db0: the op adds) on
 * fresh guarded buffers. Returns the number of failures (broken guards). */
static int conv_run(sb_backend *be, const conv_data *d, conv_out *o, const char *what) {
    arena A = {.be = be};
    float *nan_out = new_floats(d->no);
    for (size_t i = 0; i < d->no; i++) nan_out[i] = canary();
    float *x = put(&A, d->x, d->nx), *w = put(&A, d->w, d->nw), *b = put(&A, d->b, d->nb);
    float *g = put(&A, d->g, d->no), *out = put(&A, nan_out, d->no);
    float *dx = put(&A, d->dx0, d->nx), *dw = put(&A, d->dw0, d->nw), *db = put(&A, d->db0, d->nb);
    be->i->conv2d_forward(be, out, x, w, b, &d->s);
    be->i->conv2d_backward(be, dx, dw, db, g, x, w, &d->s);
    get(&A, o->out, out, d->no), get(&A, o->dx, dx, d->nx);
    get(&A, o->dw, dw, d->nw), get(&A, o->db, db, d->nb);
    int fails = !guards_ok(&A, what);
    arena_free(&A);
    free(nan_out);
    return fails;
}

/* The exact results (in double, whose 53 bits hold every product and, for
 * these sizes, every sum to far below float's rounding) and, per element,
 * the sum of the absolute values of its terms — the scale of Higham's bound.
 * A padded position contributes nothing (its x is 0). */
typedef struct conv_exact {
    double *out, *out_abs, *dx, *dx_abs, *dw, *dw_abs, *db, *db_abs;
} conv_exact;

static double *new_doubles(size_t n) {
    double *p = calloc(n ? n : 1, sizeof *p);
    SB_ASSERT(p);
    return p;
}

static void conv_exact_new(conv_exact *e, const conv_data *d) {
    const sb_conv2d_shape *s = &d->s;
    const int OH = sb_conv2d_out_h(s), OW = sb_conv2d_out_w(s);
    e->out = new_doubles(d->no), e->out_abs = new_doubles(d->no);
    e->dx = new_doubles(d->nx), e->dx_abs = new_doubles(d->nx);
    e->dw = new_doubles(d->nw), e->dw_abs = new_doubles(d->nw);
    e->db = new_doubles(d->nb), e->db_abs = new_doubles(d->nb);
    for (int n = 0; n < s->n; n++)
        for (int co = 0; co < s->cout; co++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    size_t o = (((size_t)n * s->cout + co) * OH + oy) * OW + ox;
                    double g = d->g[o], acc = d->b[co], abs_acc = fabs((double)d->b[co]);
                    for (int ci = 0; ci < s->cin; ci++)
                        for (int ky = 0; ky < s->kh; ky++)
                            for (int kx = 0; kx < s->kw; kx++) {
                                int iy = oy * s->stride_h - s->pad_h + ky;
                                int ix = ox * s->stride_w - s->pad_w + kx;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                                size_t xi = (((size_t)n * s->cin + ci) * s->h + iy) * s->w + ix;
                                size_t wi = (((size_t)co * s->cin + ci) * s->kh + ky) * s->kw + kx;
                                double xv = d->x[xi], wv = d->w[wi];
                                acc += wv * xv, abs_acc += fabs(wv * xv);
                                e->dw[wi] += g * xv, e->dw_abs[wi] += fabs(g * xv);
                                e->dx[xi] += g * wv, e->dx_abs[xi] += fabs(g * wv);
                            }
                    e->out[o] = acc, e->out_abs[o] = abs_acc;
                    e->db[co] += g, e->db_abs[co] += fabs(g);
                }
    for (size_t i = 0; i < d->nx; i++) e->dx[i] += d->dx0[i], e->dx_abs[i] += fabs((double)d->dx0[i]);
    for (size_t i = 0; i < d->nw; i++) e->dw[i] += d->dw0[i], e->dw_abs[i] += fabs((double)d->dw0[i]);
    for (size_t i = 0; i < d->nb; i++) e->db[i] += d->db0[i], e->db_abs[i] += fabs((double)d->db0[i]);
}

static void conv_exact_free(conv_exact *e) {
    free(e->out), free(e->out_abs), free(e->dx), free(e->dx_abs);
    free(e->dw), free(e->dw_abs), free(e->db), free(e->db_abs);
}

/* Limits, per element, on |computed - exact| for ANY summation order, with
 * or without FMA (Higham: gamma_m * sum|terms| for a sum of m terms, products
 * counted as one more rounding): the forward sums cin*kh*kw products and the
 * bias (m = ckk + 1); dweight and dbias sum n*OH*OW terms and the initial
 * value (m = np + 1) — in fast mode as chunk partials, which nest inside the
 * same count; dinp sums at most kh*kw*cout products in two levels and the
 * initial value (m = kh*kw*cout + 1). `factor` is 1 against the exact value
 * and 2 between two float computations (each within the bound). */
static double *scaled(const double *abs_sum, size_t n, double m, double factor) {
    double *lim = new_doubles(n);
    for (size_t i = 0; i < n; i++) lim[i] = factor * gamma_n(m) * abs_sum[i];
    return lim;
}

/* got vs want (float or exact) under the limits above; returns failures */
static int conv_within(const char *tag, const conv_data *d, const conv_out *got,
                       const conv_out *want_f, const conv_exact *want_e, double factor) {
    const sb_conv2d_shape *s = &d->s;
    struct {
        const char *name;
        const float *g;
        const float *wf;
        const double *we, *abs;
        size_t n;
        double m;
    } parts[] = {
        {"forward", got->out, want_f ? want_f->out : NULL, want_e->out, want_e->out_abs, d->no,
         (double)d->ckk + 1},
        {"dinp", got->dx, want_f ? want_f->dx : NULL, want_e->dx, want_e->dx_abs, d->nx,
         (double)s->kh * s->kw * s->cout + 1},
        {"dweight", got->dw, want_f ? want_f->dw : NULL, want_e->dw, want_e->dw_abs, d->nw,
         (double)d->np + 1},
        {"dbias", got->db, want_f ? want_f->db : NULL, want_e->db, want_e->db_abs, d->nb,
         (double)d->np + 1},
    };
    int fails = 0;
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
        char what[200];
        snprintf(what, sizeof what, "%s %s (n=%d cin=%d %dx%d cout=%d k=%dx%d s=%d,%d p=%d,%d)",
                 tag, parts[k].name, s->n, s->cin, s->h, s->w, s->cout, s->kh, s->kw, s->stride_h,
                 s->stride_w, s->pad_h, s->pad_w);
        double *lim = scaled(parts[k].abs, parts[k].n, parts[k].m, factor);
        if (parts[k].wf) {
            fails += within(what, parts[k].g, parts[k].wf, lim, 0, parts[k].n);
        } else { /* against the exact double values */
            /* within() takes floats; the exact values are doubles */
            size_t bad = parts[k].n;
            double worst = 0;
            for (size_t i = 0; i < parts[k].n; i++) {
                double diff = fabs((double)parts[k].g[i] - parts[k].we[i]);
                if (!isfinite(parts[k].g[i]) || diff > lim[i]) {
                    if (bad == parts[k].n || diff / lim[i] > worst) worst = diff / lim[i], bad = i;
                }
            }
            if (bad != parts[k].n) {
                fprintf(stderr, "%s: at [%zu] got %.9g, exact %.17g, diff %.3g > limit %.3g\n",
                        what, bad, parts[k].g[bad], parts[k].we[bad],
                        fabs((double)parts[k].g[bad] - parts[k].we[bad]), lim[bad]);
                fails++;
            }
        }
        free(lim);
    }
    return fails;
}

/* ====================================================================== */
/* 1. finite differences on "ref"                                         */
/* ====================================================================== */

/* Dyadic data make the check exact: x, w, b and the loss weights G are
 * multiples of 1/8 in [-1,1] and the step is h = 1/2, so every product is a
 * multiple of 1/64 and every sum stays far
 * below 2^17 in magnitude: every float operation of the forward and of the
 * analytic gradients is exact, and L, being linear in each parameter (max-pool
 * piecewise, and we stay inside one piece), has an exact central difference.
 * So the limit is 1e-9 (double rounding of L only); any wrong term, index or
 * order-independent mistake is off by at least 1/64. */
static void fill_dyadic(rng *r, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((int)(rng_next(r) % 17) - 8) / 8.0f;
}

/* L = sum over outputs of G * conv(x, w, b), summed in double. */
static double conv_loss(sb_backend *be, arena *A, float *out, float *dx_, float *dw_, float *db_,
                        const conv_data *d, const float *G) {
    set(A, dx_, d->x, d->nx), set(A, dw_, d->w, d->nw), set(A, db_, d->b, d->nb);
    be->i->conv2d_forward(be, out, dx_, dw_, db_, &d->s);
    float *y = new_floats(d->no);
    get(A, y, out, d->no);
    double L = 0;
    for (size_t i = 0; i < d->no; i++) L += (double)y[i] * (double)G[i];
    free(y);
    return L;
}

static int conv_gradcheck(sb_backend *be, const sb_conv2d_shape *s) {
    conv_data d;
    conv_data_new(&d, s, 0, 71);
    rng r = {72};
    fill_dyadic(&r, d.x, d.nx), fill_dyadic(&r, d.w, d.nw), fill_dyadic(&r, d.b, d.nb);
    fill_dyadic(&r, d.g, d.no);
    arena A = {.be = be};
    float *x = put(&A, d.x, d.nx), *w = put(&A, d.w, d.nw), *b = put(&A, d.b, d.nb);
    float *out = put(&A, NULL, d.no), *g = put(&A, d.g, d.no);
    float *dx = put(&A, NULL, d.nx), *dw = put(&A, NULL, d.nw), *db = put(&A, NULL, d.nb);
    be->i->conv2d_backward(be, dx, dw, db, g, x, w, &d.s);
    conv_out an;
    conv_out_new(&an, &d);
    get(&A, an.dx, dx, d.nx), get(&A, an.dw, dw, d.nw), get(&A, an.db, db, d.nb);
    struct {
        const char *name;
        float *param, *analytic;
        size_t n;
    } ps[] = {{"dinp", d.x, an.dx, d.nx}, {"dweight", d.w, an.dw, d.nw}, {"dbias", d.b, an.db, d.nb}};
    const float h = 0.5f;
    const double atol = 1e-9; /* exact arithmetic, see above */
    int fails = 0;
    for (size_t k = 0; k < 3; k++) {
        double *num = new_doubles(ps[k].n);
        for (size_t i = 0; i < ps[k].n; i++) {
            float keep = ps[k].param[i];
            ps[k].param[i] = keep + h;
            double Lp = conv_loss(be, &A, out, x, w, b, &d, d.g);
            ps[k].param[i] = keep - h;
            double Lm = conv_loss(be, &A, out, x, w, b, &d, d.g);
            ps[k].param[i] = keep;
            num[i] = (Lp - Lm) / (2.0 * h);
        }
        char what[160];
        snprintf(what, sizeof what, "%s conv2d %s vs finite differences (k=%dx%d s=%d p=%d)",
                 be->name, ps[k].name, s->kh, s->kw, s->stride_h, s->pad_h);
        fails += check_grad(what, ps[k].analytic, num, ps[k].n, atol, 0);
        free(num);
    }
    fails += !guards_ok(&A, "conv gradcheck");
    arena_free(&A);
    conv_out_free(&an);
    conv_data_free(&d);
    return fails;
}

static int gradcheck_should_match_finite_differences_for_conv2d_input_weight_and_bias(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    for (size_t i = 0; i < 5; i++) fails += conv_gradcheck(ref, &conv_shapes[i]);
    sb_backend_free(ref);
    return fails;
}

/* L = sum G * pool(x), G multiples of 1/8 in [-1,1]. x is a permutation of
 * the distinct values i/2048 (all below 1 for these shapes).
 * Max-pool: h = 1/4096 is below the gap between values, so no perturbation
 * changes a window's winner (away from ties), and every value is a multiple
 * of 2^-15: all exact, limit 1e-9.
 * Avg-pool (linear): h = 1/2. The division by kh*kw rounds for 3x3 (by 9):
 * each output (|out| <= 1.1) is within u*1.1 = 7e-8 of exact, a perturbed
 * element moves at most kh*kw = 9 outputs, so the central difference is off
 * by at most 9 * 2 * 7e-8 * max|G| / (2h) = 1.3e-6; the analytic sums of
 * <= 9 rounded quotients G/9 add < 1e-6. 1e-5 covers both; a missed or
 * doubled window term is off by >= 1/72 = 0.014. */
static int pool_gradcheck(sb_backend *be, const sb_pool2d_shape *s, int is_max) {
    const size_t nx = (size_t)s->n * s->c * s->h * s->w;
    const size_t no = (size_t)s->n * s->c * sb_pool2d_out_h(s) * sb_pool2d_out_w(s);
    rng r = {81};
    float *x = new_floats(nx), *G = new_floats(no), *y = new_floats(no), *an = new_floats(nx);
    for (size_t i = 0; i < nx; i++) x[i] = (float)i / 2048.0f; /* distinct */
    SB_ASSERT(nx <= 2048);
    for (size_t i = nx; i > 1; i--) { /* Fisher-Yates */
        size_t j = (size_t)(rng_next(&r) % i);
        float t = x[i - 1];
        x[i - 1] = x[j], x[j] = t;
    }
    fill_dyadic(&r, G, no);
    arena A = {.be = be};
    float *dxp = put(&A, x, nx), *dy = put(&A, NULL, no), *dG = put(&A, G, no);
    float *dgrad = put(&A, NULL, nx);
    if (is_max)
        be->i->maxpool2d_backward(be, dgrad, dG, dxp, s);
    else
        be->i->avgpool2d_backward(be, dgrad, dG, s);
    get(&A, an, dgrad, nx);
    const float h = is_max ? 1.0f / 4096.0f : 0.5f;
    double *num = new_doubles(nx);
    for (size_t i = 0; i < nx; i++) {
        double L[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            float keep = x[i];
            x[i] = sgn ? keep - h : keep + h;
            set(&A, dxp, x, nx);
            if (is_max)
                be->i->maxpool2d_forward(be, dy, dxp, s);
            else
                be->i->avgpool2d_forward(be, dy, dxp, s);
            x[i] = keep;
            get(&A, y, dy, no);
            L[sgn] = 0;
            for (size_t k = 0; k < no; k++) L[sgn] += (double)y[k] * (double)G[k];
        }
        num[i] = (L[0] - L[1]) / (2.0 * h);
    }
    char what[128];
    snprintf(what, sizeof what, "%s %s vs finite differences (k=%dx%d s=%d,%d p=%d,%d)", be->name,
             is_max ? "maxpool2d" : "avgpool2d", s->kh, s->kw, s->stride_h, s->stride_w, s->pad_h,
             s->pad_w);
    /* max: exact (see above); avg: 1e-5 (see above) */
    int fails = check_grad(what, an, num, nx, is_max ? 1e-9 : 1e-5, 0);
    fails += !guards_ok(&A, what);
    arena_free(&A);
    free(x), free(G), free(y), free(an), free(num);
    return fails;
}

static int gradcheck_should_match_finite_differences_for_max_and_avg_pool(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    for (size_t i = 0; i < 3; i++) {
        fails += pool_gradcheck(ref, &pool_shapes[i], 1);
        fails += pool_gradcheck(ref, &pool_shapes[i], 0);
    }
    sb_backend_free(ref);
    return fails;
}

/* ====================================================================== */
/* 2. against double precision, and blas against ref                      */
/* ====================================================================== */

/* ref (deterministic and canonical) and blas (deterministic, fast,
 * canonical), forward and backward with the gradients' += checked, against
 * the direct double-precision convolution, within Higham's bound (factor 1). */
static int conv2d_should_match_a_direct_double_precision_convolution(void) {
    static const struct {
        const char *name;
        sb_mode mode;
    } bes[] = {{"ref", SB_MODE_DETERMINISTIC}, {"ref", SB_MODE_CANONICAL},
               {"blas", SB_MODE_DETERMINISTIC}, {"blas", SB_MODE_FAST},
               {"blas", SB_MODE_CANONICAL}};
    int fails = 0;
    for (size_t si = 0; si < N_CONV; si++) {
        conv_data d;
        conv_data_new(&d, &conv_shapes[si], 0, 100 + si);
        conv_exact e;
        conv_exact_new(&e, &d);
        for (size_t b = 0; b < sizeof bes / sizeof bes[0]; b++) {
            sb_backend *be = make(bes[b].name, bes[b].mode, 2, 0);
            CHECK(be, "backend");
            char tag[64];
            snprintf(tag, sizeof tag, "%s %s/2 vs double", bes[b].name, sb_mode_name(bes[b].mode));
            conv_out o;
            conv_out_new(&o, &d);
            fails += conv_run(be, &d, &o, tag);
            fails += conv_within(tag, &d, &o, NULL, &e, 1.0);
            conv_out_free(&o);
            sb_backend_free(be);
        }
        conv_exact_free(&e);
        conv_data_free(&d);
    }
    return fails;
}

/* every blas conv path against ref: two float computations, each within
 * Higham's bound of exact, so within twice it of each other (factor 2) */
static int blas_conv2d_should_match_ref_within_summation_bound(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    for (size_t si = 0; si < N_CONV; si++) {
        conv_data d;
        conv_data_new(&d, &conv_shapes[si], 0, 200 + si);
        conv_exact e;
        conv_exact_new(&e, &d);
        conv_out want;
        conv_out_new(&want, &d);
        fails += conv_run(ref, &d, &want, "ref");
        for (int mi = 0; mi < 2; mi++)
            for (int ti = 0; ti < 2; ti++) {
                sb_backend *be = make("blas", modes[mi], thread_counts[ti], 0);
                CHECK(be, "blas backend");
                char tag[64];
                snprintf(tag, sizeof tag, "blas %s/%d vs ref", sb_mode_name(modes[mi]),
                         thread_counts[ti]);
                conv_out got;
                conv_out_new(&got, &d);
                fails += conv_run(be, &d, &got, tag);
                fails += conv_within(tag, &d, &got, &want, &e, 2.0);
                /* deterministic dbias follows ref's order: bit for bit */
                if (modes[mi] == SB_MODE_DETERMINISTIC)
                    fails += same_bits("blas deterministic dbias vs ref", got.db, want.db, d.nb);
                conv_out_free(&got);
                sb_backend_free(be);
            }
        conv_out_free(&want);
        conv_exact_free(&e);
        conv_data_free(&d);
    }
    sb_backend_free(ref);
    return fails;
}

/* ====================================================================== */
/* 3. pooling: one order everywhere                                       */
/* ====================================================================== */

typedef struct pool_out {
    float *mf, *mb, *af, *ab;
} pool_out;

/* max and avg, forward (outputs NaN-prefilled) and backward (gradients
 * prefilled with dx0: they add), on guarded buffers */
static int pool_run(sb_backend *be, const sb_pool2d_shape *s, const float *x, const float *g,
                    const float *dx0, pool_out *o, const char *what) {
    const size_t nx = (size_t)s->n * s->c * s->h * s->w;
    const size_t no = (size_t)s->n * s->c * sb_pool2d_out_h(s) * sb_pool2d_out_w(s);
    float *nan_out = new_floats(no);
    for (size_t i = 0; i < no; i++) nan_out[i] = canary();
    arena A = {.be = be};
    float *dxp = put(&A, x, nx), *dg = put(&A, g, no);
    float *mf = put(&A, nan_out, no), *af = put(&A, nan_out, no);
    float *mb = put(&A, dx0, nx), *ab = put(&A, dx0, nx);
    be->i->maxpool2d_forward(be, mf, dxp, s);
    be->i->maxpool2d_backward(be, mb, dg, dxp, s);
    be->i->avgpool2d_forward(be, af, dxp, s);
    be->i->avgpool2d_backward(be, ab, dg, s);
    get(&A, o->mf, mf, no), get(&A, o->af, af, no), get(&A, o->mb, mb, nx), get(&A, o->ab, ab, nx);
    int fails = !guards_ok(&A, what);
    arena_free(&A);
    free(nan_out);
    return fails;
}

/* Element (ky, kx) of output (oy, ox)'s window in plane pl: its index in
 * the input (*i), or 0 when it falls in the padding. */
static int window_elem(const sb_pool2d_shape *s, size_t pl, int oy, int ox, int ky, int kx,
                       size_t *i) {
    int iy = oy * s->stride_h - s->pad_h + ky, ix = ox * s->stride_w - s->pad_w + kx;
    if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) return 0;
    *i = (pl * (size_t)s->h + (size_t)iy) * (size_t)s->w + (size_t)ix;
    return 1;
}

/* Both pools on ref against a direct double-precision pooling, forward and
 * backward (gradients prefilled: they add). Max: no rounding anywhere except
 * the backward's additions of at most kh*kw = 9 window terms (overlapping
 * windows) and the initial value: gamma_10 * sum|terms|; the forward is exact
 * (limit 0). Avg: a sum of <= 9 terms and one division (gamma_10 * sum|x| /
 * (kh*kw)); backward: <= 9 quotients dout/(kh*kw) (one rounding each) and the
 * initial value in a chain of <= 10 additions (gamma_11 * sum|terms|). */
static int pools_should_match_a_direct_double_precision_pooling(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    for (size_t si = 0; si < N_POOL; si++) {
        const sb_pool2d_shape *s = &pool_shapes[si];
        const int OH = sb_pool2d_out_h(s), OW = sb_pool2d_out_w(s);
        const size_t nx = (size_t)s->n * s->c * s->h * s->w, no = (size_t)s->n * s->c * OH * OW;
        rng r = {900 + si};
        float *x = new_floats(nx), *g = new_floats(no), *dx0 = new_floats(nx);
        fill(&r, x, nx, -1, 1), fill(&r, g, no, -1, 1), fill(&r, dx0, nx, -1, 1);
        pool_out got = {new_floats(no), new_floats(nx), new_floats(no), new_floats(nx)};
        fails += pool_run(ref, s, x, g, dx0, &got, "ref pools");
        double *mf = new_doubles(no), *af = new_doubles(no), *af_abs = new_doubles(no);
        double *mb = new_doubles(nx), *ab = new_doubles(nx), *mb_abs = new_doubles(nx);
        double *ab_abs = new_doubles(nx);
        const double kk = (double)s->kh * s->kw;
        for (size_t i = 0; i < nx; i++) {
            mb[i] = ab[i] = dx0[i];
            mb_abs[i] = ab_abs[i] = fabs((double)dx0[i]);
        }
        for (size_t pl = 0; pl < (size_t)s->n * s->c; pl++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    size_t o = (pl * OH + oy) * OW + ox, best = (size_t)-1;
                    double sum = 0, sum_abs = 0;
                    for (int ky = 0; ky < s->kh; ky++)
                        for (int kx = 0; kx < s->kw; kx++) {
                            size_t i;
                            if (!window_elem(s, pl, oy, ox, ky, kx, &i)) continue;
                            if (best == (size_t)-1 || x[i] > x[best]) best = i;
                            sum += x[i], sum_abs += fabs((double)x[i]);
                            ab[i] += g[o] / kk, ab_abs[i] += fabs(g[o] / kk);
                        }
                    mf[o] = x[best];
                    mb[best] += g[o], mb_abs[best] += fabs((double)g[o]);
                    af[o] = sum / kk, af_abs[o] = sum_abs / kk;
                }
        struct {
            const char *name;
            const float *got;
            const double *want, *abs;
            size_t n;
            double m;
        } parts[] = {{"maxpool forward", got.mf, mf, NULL, no, 0},
                     {"maxpool backward", got.mb, mb, mb_abs, nx, kk + 1},
                     {"avgpool forward", got.af, af, af_abs, no, kk + 1},
                     {"avgpool backward", got.ab, ab, ab_abs, nx, kk + 2}};
        for (size_t k = 0; k < 4; k++) {
            for (size_t i = 0; i < parts[k].n; i++) {
                double lim = parts[k].abs ? gamma_n(parts[k].m) * parts[k].abs[i] : 0;
                double diff = fabs((double)parts[k].got[i] - parts[k].want[i]);
                if (!isfinite(parts[k].got[i]) || diff > lim) {
                    fprintf(stderr, "ref %s shape %zu at [%zu]: got %.9g, exact %.17g, limit %.3g\n",
                            parts[k].name, si, i, parts[k].got[i], parts[k].want[i], lim);
                    fails++;
                    break;
                }
            }
        }
        free(x), free(g), free(dx0), free(got.mf), free(got.mb), free(got.af), free(got.ab);
        free(mf), free(af), free(af_abs), free(mb), free(ab), free(mb_abs), free(ab_abs);
    }
    sb_backend_free(ref);
    return fails;
}

/* 1 (and one line) when a and b differ in any bit; NaNs and infinities are
 * compared by their bits like every other value (same_bits refuses them). */
static int bits_differ(const char *what, const char *part, const float *got, const float *want,
                       size_t n) {
    for (size_t i = 0; i < n; i++)
        if (bits_of(got[i]) != bits_of(want[i])) {
            fprintf(stderr, "%s %s at [%zu]: got 0x%08x, want 0x%08x\n", what, part, i,
                    (unsigned)bits_of(got[i]), (unsigned)bits_of(want[i]));
            return 1;
        }
    return 0;
}

/* Max pooling's order on values where it shows (kernels.h: the window's
 * first element, replaced by each later one in (ky, kx) order that is greater
 * or NaN; the winner's gradient element gets one addition, the others are not
 * touched): ties, +0 and -0, NaNs of both signs with payloads, infinities,
 * and gradients prefilled with -0.0f (an added +0.0f would show). Against
 * that rule written out here, bitwise, for the 2 x 2 stride-2 windows the
 * CNN uses (ref_conv.c has rows of its own for them: AVX-512, and portable
 * ones that SB_CANONICAL_ISA=scalar selects) with odd and even sizes, and for
 * a padded, overlapping one (the general loops); on ref and on blas in every
 * mode with 1 and 2 threads. */
static int maxpool_should_follow_the_window_order_on_ties_nans_and_signed_zeros(void) {
    static const sb_pool2d_shape shapes[] = {
        {2, 3, 7, 9, 2, 2, 2, 2, 0, 0}, {1, 1, 2, 2, 2, 2, 2, 2, 0, 0},
        {2, 2, 8, 70, 2, 2, 2, 2, 0, 0}, {1, 2, 7, 8, 3, 3, 2, 2, 1, 1}};
    const uint32_t nans[2] = {0x7fc00001u, 0xffc00002u}; /* both signs, with payloads */
    float vals[9] = {1.0f, -1.0f, 0.0f, -0.0f, 2.0f, INFINITY, -INFINITY};
    memcpy(&vals[7], &nans[0], sizeof(float));
    memcpy(&vals[8], &nans[1], sizeof(float));
    const sb_mode all[] = {SB_MODE_DETERMINISTIC, SB_MODE_FAST, SB_MODE_CANONICAL};
    int fails = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const sb_pool2d_shape *s = &shapes[si];
        const int OH = sb_pool2d_out_h(s), OW = sb_pool2d_out_w(s);
        const size_t nx = (size_t)s->n * s->c * s->h * s->w, no = (size_t)s->n * s->c * OH * OW;
        rng r = {4242 + si};
        float *x = new_floats(nx), *g = new_floats(no), *dx0 = new_floats(nx);
        float *mf = new_floats(no), *mb = new_floats(nx);
        for (size_t i = 0; i < nx; i++) {
            x[i] = vals[rng_next(&r) % (sizeof vals / sizeof vals[0])];
            dx0[i] = rng_next(&r) % 4 ? -0.0f : 0.5f;
        }
        for (size_t i = 0; i < no; i++) g[i] = rng_next(&r) % 3 ? 0.25f : 0.0f;
        memcpy(mb, dx0, nx * sizeof *mb);
        for (size_t pl = 0; pl < (size_t)s->n * s->c; pl++)
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    size_t o = (pl * OH + oy) * OW + ox, best = (size_t)-1;
                    for (int ky = 0; ky < s->kh; ky++)
                        for (int kx = 0; kx < s->kw; kx++) {
                            size_t i;
                            if (!window_elem(s, pl, oy, ox, ky, kx, &i)) continue;
                            if (best == (size_t)-1 || x[i] > x[best] || x[i] != x[i]) best = i;
                        }
                    mf[o] = x[best];
                    mb[best] = mb[best] + g[o];
                }
        pool_out got = {new_floats(no), new_floats(nx), new_floats(no), new_floats(nx)};
        for (int k = 0; k < 14; k++) { /* each backend: the widest rows, then the portable ones */
            int b = k / 2;
            sb_backend *be = b == 0 ? make("ref", SB_MODE_DETERMINISTIC, 1, 0)
                                    : make("blas", all[(b - 1) / 2], 1 + (b - 1) % 2, 0);
            CHECK(be, "backend %d", b);
            char what[96];
            snprintf(what, sizeof what, "maxpool shape %zu on %s%s", si,
                     b == 0 ? "ref" : sb_mode_name(all[(b - 1) / 2]), k % 2 ? " (scalar)" : "");
            if (k % 2) setenv("SB_CANONICAL_ISA", "scalar", 1);
            fails += pool_run(be, s, x, g, dx0, &got, what);
            unsetenv("SB_CANONICAL_ISA");
            fails += bits_differ(what, "forward", got.mf, mf, no) +
                     bits_differ(what, "backward", got.mb, mb, nx);
            sb_backend_free(be);
        }
        free(got.mf), free(got.mb), free(got.af), free(got.ab);
        free(x), free(g), free(dx0), free(mf), free(mb);
    }
    return fails;
}

/* Pooling's order (kernels.h) does not depend on the mode, the backend or the
 * thread count: blas runs ref's loops on disjoint planes. So: bitwise. */
static int blas_pools_should_equal_ref_bitwise_in_every_mode_and_thread_count(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    const sb_mode all_modes[] = {SB_MODE_DETERMINISTIC, SB_MODE_FAST, SB_MODE_CANONICAL};
    for (size_t si = 0; si < N_POOL; si++) {
        const sb_pool2d_shape *s = &pool_shapes[si];
        const size_t nx = (size_t)s->n * s->c * s->h * s->w;
        const size_t no = (size_t)s->n * s->c * sb_pool2d_out_h(s) * sb_pool2d_out_w(s);
        rng r = {300 + si};
        float *x = new_floats(nx), *g = new_floats(no), *dx0 = new_floats(nx);
        fill(&r, x, nx, -1, 1), fill(&r, g, no, -1, 1), fill(&r, dx0, nx, -1, 1);
        pool_out want = {new_floats(no), new_floats(nx), new_floats(no), new_floats(nx)};
        pool_out got = {new_floats(no), new_floats(nx), new_floats(no), new_floats(nx)};
        fails += pool_run(ref, s, x, g, dx0, &want, "ref pools");
        for (int mi = 0; mi < 3; mi++)
            for (int th = 1; th <= 2; th++) {
                sb_backend *be = make("blas", all_modes[mi], th, 0);
                CHECK(be, "blas backend");
                char what[128];
                snprintf(what, sizeof what, "blas %s/%d pools shape %zu", sb_mode_name(all_modes[mi]),
                         th, si);
                fails += pool_run(be, s, x, g, dx0, &got, what);
                fails += same_bits(what, got.mf, want.mf, no) + same_bits(what, got.af, want.af, no);
                fails += same_bits(what, got.mb, want.mb, nx) + same_bits(what, got.ab, want.ab, nx);
                sb_backend_free(be);
            }
        free(x), free(g), free(dx0);
        free(want.mf), free(want.mb), free(want.af), free(want.ab);
        free(got.mf), free(got.mb), free(got.af), free(got.ab);
    }
    sb_backend_free(ref);
    return fails;
}

/* ====================================================================== */
/* 4. determinism and fast-mode variation                                 */
/* ====================================================================== */

static int conv_same(const char *what, const conv_data *d, const conv_out *a, const conv_out *b) {
    return same_bits(what, a->out, b->out, d->no) + same_bits(what, a->dx, b->dx, d->nx) +
           same_bits(what, a->dw, b->dw, d->nw) + same_bits(what, a->db, b->db, d->nb);
}

/* Same inputs, same thread count → same bits, with wide-range dout so that
 * any change of order would show. */
static int blas_deterministic_conv2d_should_repeat_bitwise(void) {
    int fails = 0;
    for (size_t si = 0; si < N_CONV; si++) {
        conv_data d;
        conv_data_new(&d, &conv_shapes[si], 1, 400 + si);
        for (int ti = 0; ti < 2; ti++) {
            sb_backend *be = make("blas", SB_MODE_DETERMINISTIC, thread_counts[ti], 1);
            CHECK(be, "blas backend");
            conv_out a, b;
            conv_out_new(&a, &d), conv_out_new(&b, &d);
            fails += conv_run(be, &d, &a, "blas deterministic");
            for (int rep = 0; rep < 3; rep++) {
                fails += conv_run(be, &d, &b, "blas deterministic");
                fails += conv_same("blas deterministic conv2d repeat", &d, &a, &b);
            }
            conv_out_free(&a), conv_out_free(&b);
            sb_backend_free(be);
        }
        conv_data_free(&d);
    }
    return fails;
}

/* Fast + perturb: the chunk order of the weight gradient's unordered sum is
 * permuted per call, so with 8 chunks (16 images, 2 per chunk) and dout over
 * 9 decades the bits change within a few calls, on 1 thread as on 2; every
 * result stays within the summation bound of ref's. 50 identical results
 * mean the perturbation does not reach the sum. */
static int blas_fast_perturbed_conv2d_weight_grad_should_vary_between_calls(void) {
    const sb_conv2d_shape s = {16, 3, 6, 5, 4, 3, 3, 1, 1, 1, 1};
    conv_data d;
    conv_data_new(&d, &s, 1, 500);
    conv_exact e;
    conv_exact_new(&e, &d);
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    conv_out want;
    conv_out_new(&want, &d);
    int fails = conv_run(ref, &d, &want, "ref");
    for (int ti = 0; ti < 2; ti++) {
        sb_backend *be = make("blas", SB_MODE_FAST, thread_counts[ti], 1);
        CHECK(be, "blas backend");
        CHECK(be->perturb == 1, "perturb not in effect");
        conv_out first, again;
        conv_out_new(&first, &d), conv_out_new(&again, &d);
        fails += conv_run(be, &d, &first, "fast+perturb");
        fails += conv_within("blas fast+perturb", &d, &first, &want, &e, 2.0);
        int differed_at = 0;
        for (int rep = 2; rep <= 50 && !differed_at && !fails; rep++) {
            fails += conv_run(be, &d, &again, "fast+perturb");
            fails += conv_within("blas fast+perturb", &d, &again, &want, &e, 2.0);
            if (memcmp(again.dw, first.dw, d.nw * sizeof(float)) != 0) differed_at = rep;
        }
        if (!differed_at) {
            fprintf(stderr, "blas fast+perturb/%d conv2d dweight: 50 calls gave identical bits\n",
                    thread_counts[ti]);
            fails++;
        } else {
            printf("  blas fast+perturb/%d conv2d dweight: bits changed at call %d\n",
                   thread_counts[ti], differed_at);
        }
        conv_out_free(&first), conv_out_free(&again);
        sb_backend_free(be);
    }
    conv_out_free(&want);
    conv_exact_free(&e);
    conv_data_free(&d);
    sb_backend_free(ref);
    return fails;
}

/* ====================================================================== */
/* 5. canonical: ref == blas bitwise on every SIMD path and thread count  */
/* ====================================================================== */

static const char *const ISAS[] = {"scalar", "avx2", "avx512"};

/* blas in canonical mode on SIMD path `isa`; NULL and *skip = 1 when this
 * CPU cannot run it. SB_CANONICAL_ISA is set only for the construction. */
static sb_backend *make_canon_blas(int isa, int threads, int *skip) {
    *skip = !sb_canon_isa_supported((sb_canon_isa)isa);
    if (*skip) return NULL;
    setenv("SB_CANONICAL_ISA", ISAS[isa], 1);
    sb_backend *be = make("blas", SB_MODE_CANONICAL, threads, 0);
    unsetenv("SB_CANONICAL_ISA");
    return be;
}

static int canonical_conv2d_and_pools_should_equal_ref_bitwise_on_every_path_and_thread_count(void) {
    sb_backend *ref = make("ref", SB_MODE_CANONICAL, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0, ran[3] = {0};
    for (size_t si = 0; si < N_CONV; si++) {
        conv_data d;
        conv_data_new(&d, &conv_shapes[si], 1, 600 + si);
        conv_out want, got;
        conv_out_new(&want, &d), conv_out_new(&got, &d);
        fails += conv_run(ref, &d, &want, "canonical ref");
        for (int isa = 0; isa < 3; isa++)
            for (int th = 1; th <= 4; th++) {
                int skip;
                sb_backend *be = make_canon_blas(isa, th, &skip);
                if (skip) continue;
                CHECK(be, "blas canonical %s/%d", ISAS[isa], th);
                ran[isa]++;
                char what[128];
                snprintf(what, sizeof what, "canonical blas/%s/%d vs ref conv2d shape %zu",
                         ISAS[isa], th, si);
                fails += conv_run(be, &d, &got, what);
                fails += conv_same(what, &d, &got, &want);
                sb_backend_free(be);
            }
        conv_out_free(&want), conv_out_free(&got);
        conv_data_free(&d);
    }
    for (size_t si = 0; si < N_POOL; si++) {
        const sb_pool2d_shape *s = &pool_shapes[si];
        const size_t nx = (size_t)s->n * s->c * s->h * s->w;
        const size_t no = (size_t)s->n * s->c * sb_pool2d_out_h(s) * sb_pool2d_out_w(s);
        rng r = {700 + si};
        float *x = new_floats(nx), *g = new_floats(no), *dx0 = new_floats(nx);
        fill(&r, x, nx, -1, 1), fill(&r, g, no, -1, 1), fill(&r, dx0, nx, -1, 1);
        pool_out want = {new_floats(no), new_floats(nx), new_floats(no), new_floats(nx)};
        pool_out got = {new_floats(no), new_floats(nx), new_floats(no), new_floats(nx)};
        fails += pool_run(ref, s, x, g, dx0, &want, "canonical ref pools");
        for (int isa = 0; isa < 3; isa++)
            for (int th = 1; th <= 4; th++) {
                int skip;
                sb_backend *be = make_canon_blas(isa, th, &skip);
                if (skip) continue;
                CHECK(be, "blas canonical");
                char what[128];
                snprintf(what, sizeof what, "canonical blas/%s/%d pools shape %zu", ISAS[isa], th, si);
                fails += pool_run(be, s, x, g, dx0, &got, what);
                fails += same_bits(what, got.mf, want.mf, no) + same_bits(what, got.af, want.af, no);
                fails += same_bits(what, got.mb, want.mb, nx) + same_bits(what, got.ab, want.ab, nx);
                sb_backend_free(be);
            }
        free(x), free(g), free(dx0);
        free(want.mf), free(want.mb), free(want.af), free(want.ab);
        free(got.mf), free(got.mb), free(got.af), free(got.ab);
    }
    printf("  SIMD paths run:");
    for (int isa = 0; isa < 3; isa++)
        printf(" %s%s", ISAS[isa], ran[isa] ? "" : " (not on this CPU: skipped)");
    printf("\n");
    CHECK(ran[0] > 0, "the scalar path always runs");
    sb_backend_free(ref);
    return fails;
}

/* The canonical order is not deterministic mode's (FMA, another tree): on
 * wide-range data the two must differ somewhere, or canonical mode would not
 * be the code path under test. */
static int canonical_conv2d_should_differ_from_deterministic_mode(void) {
    conv_data d;
    conv_data_new(&d, &conv_shapes[5], 1, 800);
    sb_backend *det = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    sb_backend *can = make("ref", SB_MODE_CANONICAL, 1, 0);
    CHECK(det && can, "ref backends");
    conv_out a, b;
    conv_out_new(&a, &d), conv_out_new(&b, &d);
    int fails = conv_run(det, &d, &a, "ref det") + conv_run(can, &d, &b, "ref canonical");
    int differ = memcmp(a.dw, b.dw, d.nw * sizeof(float)) != 0 &&
                 memcmp(a.out, b.out, d.no * sizeof(float)) != 0;
    if (!differ) {
        fprintf(stderr, "canonical and deterministic conv2d gave identical bits\n");
        fails++;
    }
    conv_out_free(&a), conv_out_free(&b);
    conv_data_free(&d);
    sb_backend_free(det), sb_backend_free(can);
    return fails;
}

static const sb_test_case cases[] = {
    SB_CASE(gradcheck_should_match_finite_differences_for_conv2d_input_weight_and_bias),
    SB_CASE(gradcheck_should_match_finite_differences_for_max_and_avg_pool),
    SB_CASE(conv2d_should_match_a_direct_double_precision_convolution),
    SB_CASE(blas_conv2d_should_match_ref_within_summation_bound),
    SB_CASE(pools_should_match_a_direct_double_precision_pooling),
    SB_CASE(maxpool_should_follow_the_window_order_on_ties_nans_and_signed_zeros),
    SB_CASE(blas_pools_should_equal_ref_bitwise_in_every_mode_and_thread_count),
    SB_CASE(blas_deterministic_conv2d_should_repeat_bitwise),
    SB_CASE(blas_fast_perturbed_conv2d_weight_grad_should_vary_between_calls),
    SB_CASE(canonical_conv2d_and_pools_should_equal_ref_bitwise_on_every_path_and_thread_count),
    SB_CASE(canonical_conv2d_should_differ_from_deterministic_mode),
};

SB_TEST_MAIN(cases)
