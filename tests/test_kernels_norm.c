/* test_kernels_norm.c — tests of the layer-norm and embedding ops of kernels/
 * (layernorm_forward/backward, embedding_forward/backward): the "ref" oracle
 * against finite differences and double precision, every "blas" path against
 * "ref" (deterministic and fast, 1 and 2 threads) with guard bytes around
 * every buffer, the scatter-add of repeated token ids, blas determinism, the
 * variation of fast + perturb, and canonical ref == blas bitwise for thread
 * counts 1..4 and every SIMD path.
 *
 * What it is not: a benchmark or a PyTorch comparison (that comes with the
 * transformer model). Data comes from the seeded splitmix64 of
 * kernels_test_util.h, so a failure reproduces.
 */
#include "canonical.h"
#include "kernels_test_util.h"

static const sb_mode modes[] = {SB_MODE_DETERMINISTIC, SB_MODE_FAST};
static const int thread_counts[] = {1, 2};
static const float EPS = 1e-5f;

/* rows x columns: tiny and odd, one row, C not a multiple of 8, one large
 * enough that every pass runs on the pool (> blas's serial threshold of 16384
 * elements), and C > SB_BLAS_TILE (2048) so fast mode's locked add crosses
 * lock tiles. */
typedef struct ln_shape {
    int R, C;
} ln_shape;
static const ln_shape ln_shapes[] = {{5, 3}, {1, 17}, {7, 64}, {64, 300}, {9, 2100}};
#define N_LN (sizeof ln_shapes / sizeof ln_shapes[0])

/* ====================================================================== */
/* layer-norm data and one run on a backend                               */
/* ====================================================================== */

typedef struct ln_data {
    int R, C;
    float *x, *w, *b, *g, *dx0, *dw0, *db0;
} ln_data;

/* x in [-1,1] plus a per-row offset in [-2,2] (the mean must not be ~0 for
 * the statistics to be tested); wide: dout = ±10^[-3,6] so any change in the
 * order of a column sum changes the rounded result */
static void ln_data_new(ln_data *d, int R, int C, int wide, uint64_t seed) {
    rng r = {seed};
    size_t n = (size_t)R * C;
    d->R = R, d->C = C;
    d->x = new_floats(n), d->g = new_floats(n), d->dx0 = new_floats(n);
    d->w = new_floats(C), d->b = new_floats(C), d->dw0 = new_floats(C), d->db0 = new_floats(C);
    for (int i = 0; i < R; i++) {
        float off = rng_unif(&r, -2, 2);
        for (int j = 0; j < C; j++) d->x[(size_t)i * C + j] = off + rng_unif(&r, -1, 1);
    }
    fill(&r, d->w, C, 0.5f, 1.5f), fill(&r, d->b, C, -1, 1);
    for (size_t i = 0; i < n; i++) {
        float v = rng_unif(&r, -1, 1);
        d->g[i] = wide ? (v < 0 ? -1.0f : 1.0f) * powf(10.0f, rng_unif(&r, -3, 6)) : v;
    }
    fill(&r, d->dx0, n, -1, 1), fill(&r, d->dw0, C, -1, 1), fill(&r, d->db0, C, -1, 1);
}

static void ln_data_free(ln_data *d) {
    free(d->x), free(d->w), free(d->b), free(d->g), free(d->dx0), free(d->dw0), free(d->db0);
}

typedef struct ln_out {
    float *out, *mean, *rstd, *dx, *dw, *db;
} ln_out;

static void ln_out_new(ln_out *o, const ln_data *d) {
    size_t n = (size_t)d->R * d->C;
    o->out = new_floats(n), o->mean = new_floats(d->R), o->rstd = new_floats(d->R);
    o->dx = new_floats(n), o->dw = new_floats(d->C), o->db = new_floats(d->C);
}

static void ln_out_free(ln_out *o) {
    free(o->out), free(o->mean), free(o->rstd), free(o->dx), free(o->dw), free(o->db);
}

/* Forward (out, mean, rstd pre-filled with NaN canaries: the op must
 * overwrite them) and backward (gradients pre-filled with dx0, dw0, db0: the
 * op adds) on fresh guarded buffers. Returns failures (broken guards). */
static int ln_run(sb_backend *be, const ln_data *d, ln_out *o, const char *what) {
    arena A = {.be = be};
    size_t n = (size_t)d->R * d->C;
    float *nan_buf = new_floats(n);
    for (size_t i = 0; i < n; i++) nan_buf[i] = canary();
    float *x = put(&A, d->x, n), *w = put(&A, d->w, d->C), *b = put(&A, d->b, d->C);
    float *g = put(&A, d->g, n), *out = put(&A, nan_buf, n);
    float *mean = put(&A, nan_buf, d->R), *rstd = put(&A, nan_buf, d->R);
    float *dx = put(&A, d->dx0, n), *dw = put(&A, d->dw0, d->C), *db = put(&A, d->db0, d->C);
    be->i->layernorm_forward(be, out, mean, rstd, x, w, b, d->R, d->C, EPS);
    be->i->layernorm_backward(be, dx, dw, db, g, x, w, mean, rstd, d->R, d->C);
    get(&A, o->out, out, n), get(&A, o->mean, mean, d->R), get(&A, o->rstd, rstd, d->R);
    get(&A, o->dx, dx, n), get(&A, o->dw, dw, d->C), get(&A, o->db, db, d->C);
    int fails = !guards_ok(&A, what);
    arena_free(&A);
    free(nan_buf);
    return fails;
}

static int ln_same(const char *what, const ln_data *d, const ln_out *a, const ln_out *b) {
    size_t n = (size_t)d->R * d->C;
    return same_bits(what, a->out, b->out, n) + same_bits(what, a->mean, b->mean, d->R) +
           same_bits(what, a->rstd, b->rstd, d->R) + same_bits(what, a->dx, b->dx, n) +
           same_bits(what, a->dw, b->dw, d->C) + same_bits(what, a->db, b->db, d->C);
}

/* ====================================================================== */
/* embedding data and one run                                             */
/* ====================================================================== */

typedef struct emb_data {
    int n, V, D;
    int32_t *ids;
    float *table, *g, *dt0;
} emb_data;

/* ids drawn from V values: with n > V every id repeats (the scatter-add must
 * add every occurrence); wide as for layer norm */
static void emb_data_new(emb_data *e, int n, int V, int D, int wide, uint64_t seed) {
    rng r = {seed};
    e->n = n, e->V = V, e->D = D;
    e->ids = calloc((size_t)n + 1, sizeof *e->ids);
    SB_ASSERT(e->ids);
    fill_labels(&r, e->ids, n, V);
    e->table = new_floats((size_t)V * D), e->dt0 = new_floats((size_t)V * D);
    e->g = new_floats((size_t)n * D);
    fill(&r, e->table, (size_t)V * D, -1, 1), fill(&r, e->dt0, (size_t)V * D, -1, 1);
    for (size_t i = 0; i < (size_t)n * D; i++) {
        float v = rng_unif(&r, -1, 1);
        e->g[i] = wide ? (v < 0 ? -1.0f : 1.0f) * powf(10.0f, rng_unif(&r, -3, 6)) : v;
    }
}

static void emb_data_free(emb_data *e) { free(e->ids), free(e->table), free(e->g), free(e->dt0); }

/* out (canary-filled, must be overwritten) and dtable (pre-filled with dt0,
 * the op adds) on guarded buffers */
static int emb_run(sb_backend *be, const emb_data *e, float *out, float *dtable, const char *what) {
    arena A = {.be = be};
    size_t no = (size_t)e->n * e->D, nt = (size_t)e->V * e->D;
    float *nan_buf = new_floats(no);
    for (size_t i = 0; i < no; i++) nan_buf[i] = canary();
    const int32_t *ids = (const int32_t *)put(&A, e->ids, (size_t)e->n);
    float *table = put(&A, e->table, nt), *g = put(&A, e->g, no);
    float *o = put(&A, nan_buf, no), *dt = put(&A, e->dt0, nt);
    be->i->embedding_forward(be, o, table, ids, e->n, e->V, e->D);
    be->i->embedding_backward(be, dt, g, ids, e->n, e->V, e->D);
    get(&A, out, o, no), get(&A, dtable, dt, nt);
    int fails = !guards_ok(&A, what);
    arena_free(&A);
    free(nan_buf);
    return fails;
}

/* ====================================================================== */
/* 1. finite differences on "ref"                                         */
/* ====================================================================== */

/* L = sum over (r,i) of G[r,i] * out[r,i], out from ref's float forward. */
static double ln_loss(sb_backend *be, const float *x, const float *w, const float *b,
                      const float *G, int R, int C) {
    float *out = new_floats((size_t)R * C), *m = new_floats(R), *rs = new_floats(R);
    be->i->layernorm_forward(be, out, m, rs, x, w, b, R, C, EPS);
    double L = 0;
    for (size_t i = 0; i < (size_t)R * C; i++) L += (double)G[i] * out[i];
    free(out), free(m), free(rs);
    return L;
}

/* central difference of ln_loss in p[k], step h */
static double ln_fd(sb_backend *be, float *p, size_t k, float h, const ln_data *d) {
    float keep = p[k];
    p[k] = keep + h;
    double lp = ln_loss(be, d->x, d->w, d->b, d->g, d->R, d->C);
    p[k] = keep - h;
    double lm = ln_loss(be, d->x, d->w, d->b, d->g, d->R, d->C);
    p[k] = keep;
    return (lp - lm) / (2.0 * (double)h);
}

/* The analytic gradients (backward into zeroed buffers) against central
 * differences of the float forward. Step h = 2^-7: the truncation error is
 * h^2/6 * |L'''| (L''' of layer norm is O(rstd^3 * |G|*C) ~ a few units here,
 * so ~1e-4), and the float forward's rounding noise, ~C*u*sum|G*out| ~ 1e-5,
 * is divided by 2h: ~1e-3. The limit 5e-3 is above both; a wrong formula
 * (a missing term, a wrong sign, a missing rstd) is off by O(0.1..1). */
static int gradcheck_should_match_finite_differences_for_layernorm_input_weight_and_bias(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    const ln_shape shapes[] = {{3, 5}, {2, 16}, {1, 2}};
    int fails = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        ln_data d;
        ln_data_new(&d, shapes[si].R, shapes[si].C, 0, 10 + si);
        const int R = d.R, C = d.C;
        size_t n = (size_t)R * C;
        float *out = new_floats(n), *m = new_floats(R), *rs = new_floats(R);
        float *dx = new_floats(n), *dw = new_floats(C), *db = new_floats(C);
        ref->i->layernorm_forward(ref, out, m, rs, d.x, d.w, d.b, R, C, EPS);
        ref->i->layernorm_backward(ref, dx, dw, db, d.g, d.x, d.w, m, rs, R, C);
        double *nx = calloc(n, sizeof *nx), *nw = calloc(C, sizeof *nw), *nb = calloc(C, sizeof *nb);
        SB_ASSERT(nx && nw && nb);
        const float h = 0x1p-7f;
        for (size_t k = 0; k < n; k++) nx[k] = ln_fd(ref, d.x, k, h, &d);
        for (int k = 0; k < C; k++) nw[k] = ln_fd(ref, d.w, k, h, &d), nb[k] = ln_fd(ref, d.b, k, h, &d);
        char what[96];
        snprintf(what, sizeof what, "layernorm R=%d C=%d dinp", R, C);
        fails += check_grad(what, dx, nx, n, 5e-3, 0);
        snprintf(what, sizeof what, "layernorm R=%d C=%d dweight", R, C);
        fails += check_grad(what, dw, nw, C, 5e-3, 0);
        snprintf(what, sizeof what, "layernorm R=%d C=%d dbias", R, C);
        fails += check_grad(what, db, nb, C, 5e-3, 0);
        free(out), free(m), free(rs), free(dx), free(dw), free(db), free(nx), free(nw), free(nb);
        ln_data_free(&d);
    }
    sb_backend_free(ref);
    return fails;
}

/* L = sum G*out is linear in the table, so the central difference with a
 * dyadic step on dyadic data is exact: table entries and G are multiples of
 * 1/8 in [-1,1], h = 1/2, so every sum is exact in float and double. The limit
 * is 0 up to the double sum's own exactness (1e-12). Ids repeat (n = 12 over
 * V = 4), so the gradient row of an id must collect all its occurrences. */
static int gradcheck_should_match_finite_differences_for_embedding_table(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    emb_data e;
    emb_data_new(&e, 12, 4, 5, 0, 20);
    const size_t nt = (size_t)e.V * e.D, no = (size_t)e.n * e.D;
    for (size_t i = 0; i < nt; i++) e.table[i] = roundf(e.table[i] * 8) / 8;
    for (size_t i = 0; i < no; i++) e.g[i] = roundf(e.g[i] * 8) / 8;
    float *dt = new_floats(nt), *out = new_floats(no);
    ref->i->embedding_backward(ref, dt, e.g, e.ids, e.n, e.V, e.D);
    double *num = calloc(nt, sizeof *num);
    SB_ASSERT(num);
    for (size_t k = 0; k < nt; k++) {
        double L[2];
        float keep = e.table[k];
        for (int s = 0; s < 2; s++) {
            e.table[k] = keep + (s ? -0.5f : 0.5f);
            ref->i->embedding_forward(ref, out, e.table, e.ids, e.n, e.V, e.D);
            L[s] = 0;
            for (size_t i = 0; i < no; i++) L[s] += (double)e.g[i] * out[i];
        }
        e.table[k] = keep;
        num[k] = (L[0] - L[1]) / 1.0;
    }
    int fails = check_grad("embedding dtable", dt, num, nt, 1e-12, 0);
    free(dt), free(out), free(num);
    emb_data_free(&e);
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

/* The forward in double (PyTorch's formula: biased variance, two passes) and
 * the limits of a float computation in any order. Per row, with m the number
 * of float operations in a chain: the mean is a sum of C terms (limit
 * gamma(C+1) * sum|x| / C); d_i = x_i - m carries the mean's error plus one
 * rounding; the variance sums C squares of those (relative error gamma(C+1)
 * plus twice the relative error of d); rstd adds three roundings (add, sqrt,
 * divide) and halves the variance's relative error. So with
 * e = gamma(2C + 8) * (1 + sum|x| / (C * min|d|))... which min|d| makes
 * useless; instead we bound through the scale: |err d_i| <= E_m + u|d_i|
 * where E_m = gamma(C+1) * mean|x|, and the variance's relative error is at
 * most gamma(C+4) + 2 E_m sum|d| / sum d² — the last term is what the test
 * data keep small (spread ~0.6, offsets <= 2). rel_rstd = that / 2 + 3u, and
 * out_i = xhat_i * w_i + b_i has |err| <= |w_i| (|xhat_i| rel_rstd + rstd
 * E_m + 2u|xhat_i|) + u|out_i|. The factor 2 on every limit is slack for the
 * first-order analysis. */
static int layernorm_forward_should_match_double_precision_statistics_and_outputs(void) {
    int fails = 0;
    const sb_backend_config cfgs[] = {{SB_MODE_DETERMINISTIC, 1, 0}, {SB_MODE_DETERMINISTIC, 2, 0},
                                      {SB_MODE_FAST, 2, 1}, {SB_MODE_CANONICAL, 1, 0},
                                      {SB_MODE_CANONICAL, 2, 0}};
    const char *names[] = {"ref", "blas"};
    for (size_t si = 0; si < N_LN; si++) {
        ln_data d;
        ln_data_new(&d, ln_shapes[si].R, ln_shapes[si].C, 0, 30 + si);
        const int R = d.R, C = d.C;
        const size_t n = (size_t)R * C;
        double *wm = calloc(R, sizeof(double)), *wr = calloc(R, sizeof(double));
        double *wo = calloc(n, sizeof(double)), *tm = calloc(R, sizeof(double));
        double *tr = calloc(R, sizeof(double)), *to = calloc(n, sizeof(double));
        SB_ASSERT(wm && wr && wo && tm && tr && to);
        const double u = UNIT_ROUNDOFF;
        for (int r = 0; r < R; r++) {
            const float *x = d.x + (size_t)r * C;
            double s = 0, sa = 0, q = 0, sd = 0;
            for (int i = 0; i < C; i++) s += x[i], sa += fabs((double)x[i]);
            double m = s / C;
            for (int i = 0; i < C; i++) q += (x[i] - m) * (x[i] - m), sd += fabs(x[i] - m);
            double var = q / C, rstd = 1.0 / sqrt(var + (double)EPS);
            double Em = gamma_n(C + 1) * sa / C;
            double rel_var = gamma_n(C + 4) + 2 * Em * sd / q;
            double rel_rstd = rel_var / 2 + 3 * u;
            wm[r] = m, wr[r] = rstd;
            tm[r] = 2 * (Em + u * fabs(m));
            tr[r] = 2 * rel_rstd * rstd;
            for (int i = 0; i < C; i++) {
                double xhat = (x[i] - m) * rstd, o = xhat * d.w[i] + d.b[i];
                wo[(size_t)r * C + i] = o;
                to[(size_t)r * C + i] =
                    2 * (fabs((double)d.w[i]) * (fabs(xhat) * (rel_rstd + 2 * u) + rstd * Em) +
                         u * fabs(o)) + 1e-30;
            }
        }
        for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++)
            for (int bi = 0; bi < 2; bi++) {
                sb_backend_config cfg = cfgs[ci];
                sb_error err = {0};
                sb_backend *be = sb_backend_new(names[bi], &cfg, &err);
                CHECK(be, "%s: %s", names[bi], err.msg);
                ln_out o;
                ln_out_new(&o, &d);
                char what[128];
                snprintf(what, sizeof what, "%s %s/%d layernorm R=%d C=%d", names[bi],
                         sb_mode_name(cfg.mode), be->threads, R, C);
                fails += ln_run(be, &d, &o, what);
                char w2[160];
                snprintf(w2, sizeof w2, "%s mean", what);
                fails += within_d(w2, o.mean, wm, tm, R);
                snprintf(w2, sizeof w2, "%s rstd", what);
                fails += within_d(w2, o.rstd, wr, tr, R);
                snprintf(w2, sizeof w2, "%s out", what);
                fails += within_d(w2, o.out, wo, to, n);
                ln_out_free(&o);
                sb_backend_free(be);
            }
        free(wm), free(wr), free(wo), free(tm), free(tr), free(to);
        ln_data_free(&d);
    }
    return fails;
}

/* The scatter-add in double: dtable0 + every occurrence's row, exact in double
 * for these sizes. Limit per element: gamma(k+1) * (|dtable0| + sum|dout|)
 * for an id that occurs k times — any order of k+1 terms. The forward is a
 * copy: the table rows bit for bit. Every backend, mode and thread count. */
static int embedding_should_copy_rows_and_add_every_occurrence_of_repeated_ids(void) {
    const int shapes[][3] = {{12, 4, 5}, {300, 7, 64}, {1, 3, 2}, {40, 1, 3}}; /* n, V, D */
    const sb_backend_config cfgs[] = {{SB_MODE_DETERMINISTIC, 1, 0}, {SB_MODE_DETERMINISTIC, 2, 0},
                                      {SB_MODE_FAST, 1, 0}, {SB_MODE_FAST, 2, 1},
                                      {SB_MODE_CANONICAL, 2, 0}};
    const char *names[] = {"ref", "blas"};
    int fails = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        emb_data e;
        emb_data_new(&e, shapes[si][0], shapes[si][1], shapes[si][2], 0, 40 + si);
        const size_t nt = (size_t)e.V * e.D, no = (size_t)e.n * e.D;
        double *want = calloc(nt, sizeof *want), *lim = calloc(nt, sizeof *lim);
        int *count = calloc((size_t)e.V, sizeof *count);
        SB_ASSERT(want && lim && count);
        for (size_t i = 0; i < nt; i++) want[i] = e.dt0[i], lim[i] = fabs((double)e.dt0[i]);
        for (int t = 0; t < e.n; t++) {
            count[e.ids[t]]++;
            for (int j = 0; j < e.D; j++) {
                want[(size_t)e.ids[t] * e.D + j] += e.g[(size_t)t * e.D + j];
                lim[(size_t)e.ids[t] * e.D + j] += fabs((double)e.g[(size_t)t * e.D + j]);
            }
        }
        for (size_t i = 0; i < nt; i++) lim[i] = gamma_n(count[i / e.D] + 1) * lim[i] + 1e-30;
        float *rows = new_floats(no);
        for (int t = 0; t < e.n; t++)
            memcpy(rows + (size_t)t * e.D, e.table + (size_t)e.ids[t] * e.D, e.D * sizeof(float));
        float *out = new_floats(no), *dt = new_floats(nt);
        for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++)
            for (int bi = 0; bi < 2; bi++) {
                sb_backend_config cfg = cfgs[ci];
                sb_error err = {0};
                sb_backend *be = sb_backend_new(names[bi], &cfg, &err);
                CHECK(be, "%s: %s", names[bi], err.msg);
                char what[128];
                snprintf(what, sizeof what, "%s %s/%d embedding n=%d V=%d D=%d", names[bi],
                         sb_mode_name(cfg.mode), be->threads, e.n, e.V, e.D);
                fails += emb_run(be, &e, out, dt, what);
                fails += same_bits(what, out, rows, no);
                fails += within_d(what, dt, want, lim, nt);
                sb_backend_free(be);
            }
        free(want), free(lim), free(count), free(rows), free(out), free(dt);
        emb_data_free(&e);
    }
    return fails;
}

/* ====================================================================== */
/* 3. blas against ref                                                    */
/* ====================================================================== */

/* Deterministic blas runs ref's row loops on row ranges and sums each
 * parameter-gradient column in ref's row order, so it must equal ref bit for
 * bit (limit 0), on 1 and 2 threads. Fast mode changes only the column sums
 * of dweight and dbias (chunk partials added in completion order): those are
 * within 2 * gamma(R+1) * (|d0| + sum_r |term|) of ref's (each of the two
 * float results is within gamma(R+1) * that of the exact sum, any order);
 * everything else is still ref's bits. Guard bytes around every buffer. */
static int blas_layernorm_should_equal_ref_deterministic_and_stay_within_bound_fast(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    for (size_t si = 0; si < N_LN; si++) {
        ln_data d;
        ln_data_new(&d, ln_shapes[si].R, ln_shapes[si].C, 1, 50 + si);
        const int R = d.R, C = d.C;
        const size_t n = (size_t)R * C;
        ln_out want, got;
        ln_out_new(&want, &d), ln_out_new(&got, &d);
        fails += ln_run(ref, &d, &want, "ref layernorm");
        double *lw = calloc(C, sizeof *lw), *lb = calloc(C, sizeof *lb);
        SB_ASSERT(lw && lb);
        for (int j = 0; j < C; j++) lw[j] = fabs((double)d.dw0[j]), lb[j] = fabs((double)d.db0[j]);
        for (int r = 0; r < R; r++)
            for (int j = 0; j < C; j++) {
                size_t e = (size_t)r * C + j;
                double xhat = ((double)d.x[e] - want.mean[r]) * want.rstd[r];
                lw[j] += fabs(d.g[e] * xhat), lb[j] += fabs((double)d.g[e]);
            }
        for (int j = 0; j < C; j++) lw[j] *= 2 * gamma_n(R + 2), lb[j] *= 2 * gamma_n(R + 1);
        for (int mi = 0; mi < 2; mi++)
            for (int ti = 0; ti < 2; ti++) {
                sb_backend *be = make("blas", modes[mi], thread_counts[ti], 0);
                CHECK(be, "blas backend");
                char what[128];
                snprintf(what, sizeof what, "blas %s/%d vs ref layernorm R=%d C=%d",
                         sb_mode_name(modes[mi]), thread_counts[ti], R, C);
                fails += ln_run(be, &d, &got, what);
                if (modes[mi] == SB_MODE_DETERMINISTIC) {
                    fails += ln_same(what, &d, &got, &want);
                } else {
                    fails += same_bits(what, got.out, want.out, n) +
                             same_bits(what, got.mean, want.mean, R) +
                             same_bits(what, got.rstd, want.rstd, R) +
                             same_bits(what, got.dx, want.dx, n);
                    fails += within(what, got.dw, want.dw, lw, 0, C);
                    fails += within(what, got.db, want.db, lb, 0, C);
                }
                sb_backend_free(be);
            }
        free(lw), free(lb);
        ln_out_free(&want), ln_out_free(&got);
        ln_data_free(&d);
    }
    sb_backend_free(ref);
    return fails;
}

/* ====================================================================== */
/* 4. determinism and fast-mode variation                                 */
/* ====================================================================== */

/* Same inputs → same bits, three repeats, wide-range dout (any change of
 * order would show), 1 and 2 threads, perturb asked for (deterministic mode
 * must ignore it). */
static int blas_deterministic_layernorm_and_embedding_should_repeat_bitwise(void) {
    int fails = 0;
    ln_data d;
    ln_data_new(&d, 64, 300, 1, 60);
    emb_data e;
    emb_data_new(&e, 300, 5, 64, 1, 61);
    const size_t no = (size_t)e.n * e.D, nt = (size_t)e.V * e.D;
    float *o1 = new_floats(no), *t1 = new_floats(nt), *o2 = new_floats(no), *t2 = new_floats(nt);
    for (int ti = 0; ti < 2; ti++) {
        sb_backend *be = make("blas", SB_MODE_DETERMINISTIC, thread_counts[ti], 1);
        CHECK(be, "blas backend");
        ln_out a, b;
        ln_out_new(&a, &d), ln_out_new(&b, &d);
        fails += ln_run(be, &d, &a, "blas deterministic layernorm");
        fails += emb_run(be, &e, o1, t1, "blas deterministic embedding");
        for (int rep = 0; rep < 3; rep++) {
            fails += ln_run(be, &d, &b, "blas deterministic layernorm");
            fails += ln_same("blas deterministic layernorm repeat", &d, &a, &b);
            fails += emb_run(be, &e, o2, t2, "blas deterministic embedding");
            fails += same_bits("blas deterministic embedding repeat", t2, t1, nt);
        }
        ln_out_free(&a), ln_out_free(&b);
        sb_backend_free(be);
    }
    free(o1), free(t1), free(o2), free(t2);
    emb_data_free(&e);
    ln_data_free(&d);
    return fails;
}

/* Fast + perturb: the chunk order of the unordered sums is permuted per call,
 * so with 8 layer-norm row chunks (32 rows, 4 per chunk) and 16 embedding
 * token chunks over 3 ids, and dout over 9 decades, the bits of dweight,
 * dbias and dtable change within a few calls, on 1 thread as on 2. 50
 * identical results mean the perturbation does not reach the sum. */
static int blas_fast_perturbed_norm_and_embedding_gradients_should_vary_between_calls(void) {
    int fails = 0;
    ln_data d;
    ln_data_new(&d, 32, 40, 1, 70);
    emb_data e;
    emb_data_new(&e, 64, 3, 8, 1, 71);
    const size_t no = (size_t)e.n * e.D, nt = (size_t)e.V * e.D;
    float *o = new_floats(no), *t1 = new_floats(nt), *t2 = new_floats(nt);
    for (int ti = 0; ti < 2; ti++) {
        sb_backend *be = make("blas", SB_MODE_FAST, thread_counts[ti], 1);
        CHECK(be, "blas backend");
        CHECK(be->perturb == 1, "perturb not in effect");
        ln_out first, again;
        ln_out_new(&first, &d), ln_out_new(&again, &d);
        fails += ln_run(be, &d, &first, "fast+perturb layernorm");
        fails += emb_run(be, &e, o, t1, "fast+perturb embedding");
        int dw_at = 0, db_at = 0, dt_at = 0;
        for (int rep = 2; rep <= 50 && !(dw_at && db_at && dt_at) && !fails; rep++) {
            fails += ln_run(be, &d, &again, "fast+perturb layernorm");
            fails += emb_run(be, &e, o, t2, "fast+perturb embedding");
            if (!dw_at && memcmp(again.dw, first.dw, d.C * sizeof(float))) dw_at = rep;
            if (!db_at && memcmp(again.db, first.db, d.C * sizeof(float))) db_at = rep;
            if (!dt_at && memcmp(t2, t1, nt * sizeof(float))) dt_at = rep;
        }
        const char *names[] = {"layernorm dweight", "layernorm dbias", "embedding dtable"};
        int at[] = {dw_at, db_at, dt_at};
        for (int k = 0; k < 3; k++) {
            if (!at[k]) {
                fprintf(stderr, "blas fast+perturb/%d %s: 50 calls gave identical bits\n",
                        thread_counts[ti], names[k]);
                fails++;
            } else {
                printf("  blas fast+perturb/%d %s: bits changed at call %d\n", thread_counts[ti],
                       names[k], at[k]);
            }
        }
        ln_out_free(&first), ln_out_free(&again);
        sb_backend_free(be);
    }
    free(o), free(t1), free(t2);
    emb_data_free(&e);
    ln_data_free(&d);
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

static int canonical_layernorm_and_embedding_should_equal_ref_bitwise_on_every_path_and_thread_count(void) {
    sb_backend *ref = make("ref", SB_MODE_CANONICAL, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0, ran[3] = {0};
    emb_data e;
    emb_data_new(&e, 300, 5, 64, 1, 81);
    const size_t no = (size_t)e.n * e.D, nt = (size_t)e.V * e.D;
    float *wo = new_floats(no), *wt = new_floats(nt), *go = new_floats(no), *gt = new_floats(nt);
    fails += emb_run(ref, &e, wo, wt, "canonical ref embedding");
    for (size_t si = 0; si < N_LN; si++) {
        ln_data d;
        ln_data_new(&d, ln_shapes[si].R, ln_shapes[si].C, 1, 80 + si);
        ln_out want, got;
        ln_out_new(&want, &d), ln_out_new(&got, &d);
        fails += ln_run(ref, &d, &want, "canonical ref");
        for (int isa = 0; isa < 3; isa++)
            for (int th = 1; th <= 4; th++) {
                int skip;
                sb_backend *be = make_canon_blas(isa, th, &skip);
                if (skip) continue;
                CHECK(be, "blas canonical %s/%d", ISAS[isa], th);
                ran[isa]++;
                char what[128];
                snprintf(what, sizeof what, "canonical blas/%s/%d vs ref layernorm R=%d C=%d",
                         ISAS[isa], th, d.R, d.C);
                fails += ln_run(be, &d, &got, what);
                fails += ln_same(what, &d, &got, &want);
                if (si == 0) {
                    snprintf(what, sizeof what, "canonical blas/%s/%d vs ref embedding", ISAS[isa], th);
                    fails += emb_run(be, &e, go, gt, what);
                    fails += same_bits(what, go, wo, no) + same_bits(what, gt, wt, nt);
                }
                sb_backend_free(be);
            }
        ln_out_free(&want), ln_out_free(&got);
        ln_data_free(&d);
    }
    printf("  SIMD paths run:");
    for (int isa = 0; isa < 3; isa++)
        printf(" %s%s", ISAS[isa], ran[isa] ? "" : " (not on this CPU: skipped)");
    printf("\n");
    CHECK(ran[0] > 0, "the scalar path always runs");
    free(wo), free(wt), free(go), free(gt);
    emb_data_free(&e);
    sb_backend_free(ref);
    return fails;
}

/* The canonical order is not deterministic mode's (FMA, the block tree): on
 * wide-range data the two must differ, or canonical mode would not be the
 * code path under test. */
static int canonical_layernorm_should_differ_from_deterministic_mode(void) {
    ln_data d;
    ln_data_new(&d, 300, 130, 1, 90);
    sb_backend *det = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    sb_backend *can = make("ref", SB_MODE_CANONICAL, 1, 0);
    CHECK(det && can, "ref backends");
    ln_out a, b;
    ln_out_new(&a, &d), ln_out_new(&b, &d);
    int fails = ln_run(det, &d, &a, "ref det") + ln_run(can, &d, &b, "ref canonical");
    size_t n = (size_t)d.R * d.C;
    int differ = memcmp(a.out, b.out, n * sizeof(float)) && memcmp(a.dw, b.dw, d.C * sizeof(float)) &&
                 memcmp(a.dx, b.dx, n * sizeof(float));
    if (!differ) {
        fprintf(stderr, "canonical and deterministic layernorm gave identical out, dweight or dinp\n");
        fails++;
    }
    ln_out_free(&a), ln_out_free(&b);
    ln_data_free(&d);
    sb_backend_free(det), sb_backend_free(can);
    return fails;
}

static const sb_test_case cases[] = {
    SB_CASE(gradcheck_should_match_finite_differences_for_layernorm_input_weight_and_bias),
    SB_CASE(gradcheck_should_match_finite_differences_for_embedding_table),
    SB_CASE(layernorm_forward_should_match_double_precision_statistics_and_outputs),
    SB_CASE(embedding_should_copy_rows_and_add_every_occurrence_of_repeated_ids),
    SB_CASE(blas_layernorm_should_equal_ref_deterministic_and_stay_within_bound_fast),
    SB_CASE(blas_deterministic_layernorm_and_embedding_should_repeat_bitwise),
    SB_CASE(blas_fast_perturbed_norm_and_embedding_gradients_should_vary_between_calls),
    SB_CASE(canonical_layernorm_and_embedding_should_equal_ref_bitwise_on_every_path_and_thread_count),
    SB_CASE(canonical_layernorm_should_differ_from_deterministic_mode),
};

SB_TEST_MAIN(cases)
