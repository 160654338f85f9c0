/* test_kernels_attn.c — tests of the softmax, residual-add and causal
 * attention ops of kernels/: the "ref" oracle against finite differences and
 * double precision (including the causal mask), every "blas" path against
 * "ref" (deterministic and fast, 1 and 2 threads) within stated summation
 * bounds and with guard bytes around every buffer, blas determinism, the
 * variation of fast + perturb in dk/dv, and canonical ref == blas bitwise for
 * thread counts 1..4 and every SIMD path.
 *
 * What it is not: a benchmark or a PyTorch comparison. Data comes from the
 * seeded splitmix64 of kernels_test_util.h, so a failure reproduces.
 */
#include "canonical.h"
#include "kernels_test_util.h"

static const sb_mode modes[] = {SB_MODE_DETERMINISTIC, SB_MODE_FAST};
static const int thread_counts[] = {1, 2};

/* [B, H, T, D]: one query; odd sizes; T past the fast chunking (4 chunks of
 * 4 or more rows); and one with T*D > SB_BLAS_TILE (2048) so the fast
 * locked add crosses lock tiles. */
typedef struct at_shape {
    int B, H, T, D;
} at_shape;
static const at_shape shapes[] = {{1, 1, 1, 4}, {2, 3, 5, 8}, {2, 2, 16, 16}, {1, 2, 40, 64}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

/* ====================================================================== */
/* data and one run on a backend                                          */
/* ====================================================================== */

typedef struct at_data {
    int B, H, T, D;
    size_t nx, na; /* floats of q (k, v, out, ...) and of att */
    float *q, *k, *v, *g, *dq0, *dk0, *dv0;
} at_data;

/* q, k, v in [-1,1] (q and k scaled by qk so that the logits spread);
 * wide: dout = ±10^[-3,6], so any change of summation order shows */
static void at_data_new(at_data *d, at_shape s, float qk, int wide, uint64_t seed) {
    rng r = {seed};
    d->B = s.B, d->H = s.H, d->T = s.T, d->D = s.D;
    d->nx = (size_t)s.B * s.H * s.T * s.D, d->na = (size_t)s.B * s.H * s.T * s.T;
    d->q = new_floats(d->nx), d->k = new_floats(d->nx), d->v = new_floats(d->nx);
    d->g = new_floats(d->nx), d->dq0 = new_floats(d->nx), d->dk0 = new_floats(d->nx);
    d->dv0 = new_floats(d->nx);
    fill(&r, d->q, d->nx, -qk, qk), fill(&r, d->k, d->nx, -qk, qk), fill(&r, d->v, d->nx, -1, 1);
    for (size_t i = 0; i < d->nx; i++) {
        float u = rng_unif(&r, -1, 1);
        d->g[i] = wide ? (u < 0 ? -1.0f : 1.0f) * powf(10.0f, rng_unif(&r, -3, 6)) : u;
    }
    fill(&r, d->dq0, d->nx, -1, 1), fill(&r, d->dk0, d->nx, -1, 1), fill(&r, d->dv0, d->nx, -1, 1);
}

static void at_data_free(at_data *d) {
    free(d->q), free(d->k), free(d->v), free(d->g), free(d->dq0), free(d->dk0), free(d->dv0);
}

typedef struct at_out {
    float *out, *att, *dq, *dk, *dv;
} at_out;

static void at_out_new(at_out *o, const at_data *d) {
    o->out = new_floats(d->nx), o->att = new_floats(d->na);
    o->dq = new_floats(d->nx), o->dk = new_floats(d->nx), o->dv = new_floats(d->nx);
}

static void at_out_free(at_out *o) { free(o->out), free(o->att), free(o->dq), free(o->dk), free(o->dv); }

/* Forward (out, att and scratch NaN canaries: the op must overwrite them),
 * then backward with gradients pre-filled with dq0, dk0, dv0 (the op adds).
 * The backward reads att_in when given (so two backends' backward see the
 * same probabilities), else the forward's own att. Returns broken guards. */
static int at_run(sb_backend *be, const at_data *d, at_out *o, const float *att_in,
                  const char *what) {
    arena A = {.be = be};
    float *nan_buf = new_floats(d->na > d->nx ? d->na : d->nx);
    for (size_t i = 0; i < (d->na > d->nx ? d->na : d->nx); i++) nan_buf[i] = canary();
    float *q = put(&A, d->q, d->nx), *k = put(&A, d->k, d->nx), *v = put(&A, d->v, d->nx);
    float *g = put(&A, d->g, d->nx), *out = put(&A, nan_buf, d->nx), *att = put(&A, nan_buf, d->na);
    float *s = put(&A, nan_buf, d->na);
    float *dq = put(&A, d->dq0, d->nx), *dk = put(&A, d->dk0, d->nx), *dv = put(&A, d->dv0, d->nx);
    be->i->attention_forward(be, out, att, q, k, v, d->B, d->H, d->T, d->D);
    get(&A, o->out, out, d->nx), get(&A, o->att, att, d->na);
    if (att_in) set(&A, att, att_in, d->na);
    be->i->attention_backward(be, dq, dk, dv, s, g, q, k, v, att, d->B, d->H, d->T, d->D);
    get(&A, o->dq, dq, d->nx), get(&A, o->dk, dk, d->nx), get(&A, o->dv, dv, d->nx);
    int fails = !guards_ok(&A, what);
    arena_free(&A);
    free(nan_buf);
    return fails;
}

static int at_same(const char *what, const at_data *d, const at_out *a, const at_out *b) {
    return same_bits(what, a->out, b->out, d->nx) + same_bits(what, a->att, b->att, d->na) +
           same_bits(what, a->dq, b->dq, d->nx) + same_bits(what, a->dk, b->dk, d->nx) +
           same_bits(what, a->dv, b->dv, d->nx);
}

/* ====================================================================== */
/* 1. finite differences on "ref"                                         */
/* ====================================================================== */

/* Softmax rows and residual add. L = sum G*out in double; central
 * differences with h = 2^-7. Softmax: truncation h^2/6*|L'''| with
 * |L'''| <= ~sum|G| (derivatives of softmax are bounded by 1) ~ 1e-5 * 8 =
 * 1e-4, rounding noise ~ C*u*sum|G*out| / 2h ~ 1e-5: limit 1e-3, while a wrong
 * formula (a missing -s term) is off by O(0.1). Residual is linear with
 * dyadic data: exact (limit 1e-12). */
static int gradcheck_should_match_finite_differences_for_softmax_and_residual(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    const int R = 3, C = 7;
    const size_t n = (size_t)R * C;
    rng r = {1};
    float *x = new_floats(n), *G = new_floats(n), *out = new_floats(n), *dx = new_floats(n);
    double *num = calloc(n, sizeof *num);
    SB_ASSERT(num);
    fill(&r, x, n, -3, 3), fill(&r, G, n, -1, 1);
    ref->i->softmax_forward(ref, out, x, R, C);
    ref->i->softmax_backward(ref, dx, G, out, R, C);
    const float h = 0x1p-7f;
    for (size_t i = 0; i < n; i++) {
        double L[2];
        float keep = x[i];
        for (int sgn = 0; sgn < 2; sgn++) {
            x[i] = keep + (sgn ? -h : h);
            ref->i->softmax_forward(ref, out, x, R, C);
            L[sgn] = 0;
            for (size_t e = 0; e < n; e++) L[sgn] += (double)G[e] * out[e];
        }
        x[i] = keep;
        num[i] = (L[0] - L[1]) / (2.0 * h);
    }
    fails += check_grad("softmax dinp", dx, num, n, 1e-3, 0);

    /* residual: dyadic a, b, G; d/da = d/db = G exactly */
    float *a = new_floats(n), *b = new_floats(n), *da = new_floats(n), *db = new_floats(n);
    for (size_t i = 0; i < n; i++) {
        a[i] = roundf(rng_unif(&r, -1, 1) * 8) / 8, b[i] = roundf(rng_unif(&r, -1, 1) * 8) / 8;
        G[i] = roundf(G[i] * 8) / 8;
    }
    ref->i->residual_backward(ref, da, db, G, n);
    double *na = calloc(n, sizeof *na), *nb = calloc(n, sizeof *nb);
    SB_ASSERT(na && nb);
    for (int which = 0; which < 2; which++)
        for (size_t i = 0; i < n; i++) {
            float *p = which ? b : a, keep = p[i];
            double L[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                p[i] = keep + (sgn ? -0.5f : 0.5f);
                ref->i->residual_forward(ref, out, a, b, n);
                L[sgn] = 0;
                for (size_t e = 0; e < n; e++) L[sgn] += (double)G[e] * out[e];
            }
            p[i] = keep;
            (which ? nb : na)[i] = L[0] - L[1];
        }
    fails += check_grad("residual da", da, na, n, 1e-12, 0);
    fails += check_grad("residual db", db, nb, n, 1e-12, 0);
    free(x), free(G), free(out), free(dx), free(num), free(a), free(b), free(da), free(db);
    free(na), free(nb);
    sb_backend_free(ref);
    return fails;
}

static double at_loss(sb_backend *be, const at_data *d, float *out, float *att) {
    be->i->attention_forward(be, out, att, d->q, d->k, d->v, d->B, d->H, d->T, d->D);
    double L = 0;
    for (size_t i = 0; i < d->nx; i++) L += (double)d->g[i] * out[i];
    return L;
}

/* dq, dk, dv (backward into zeroed buffers) against central differences of
 * the float forward, h = 2^-7. Truncation h^2/6*|L'''| ~ 3e-6 * O(10) and
 * rounding noise ~ (D+T)*u*sum|G*out| / 2h ~ 1e-4 (sum|G*out| ~ 10 here):
 * limit 2e-3, while a wrong gradient (no scale, a missing softmax term, the
 * mask forgotten) is off by O(0.1). */
static int gradcheck_should_match_finite_differences_for_attention_q_k_and_v(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    at_data d;
    at_data_new(&d, (at_shape){1, 2, 5, 3}, 1.5f, 0, 2);
    float *out = new_floats(d.nx), *att = new_floats(d.na), *s = new_floats(d.na);
    float *dq = new_floats(d.nx), *dk = new_floats(d.nx), *dv = new_floats(d.nx);
    ref->i->attention_forward(ref, out, att, d.q, d.k, d.v, d.B, d.H, d.T, d.D);
    ref->i->attention_backward(ref, dq, dk, dv, s, d.g, d.q, d.k, d.v, att, d.B, d.H, d.T, d.D);
    double *num = calloc(d.nx, sizeof *num);
    SB_ASSERT(num);
    float *params[3] = {d.q, d.k, d.v}, *grads[3] = {dq, dk, dv};
    const char *names[3] = {"attention dq", "attention dk", "attention dv"};
    const float h = 0x1p-7f;
    int fails = 0;
    for (int p = 0; p < 3; p++) {
        for (size_t i = 0; i < d.nx; i++) {
            float keep = params[p][i];
            params[p][i] = keep + h;
            double lp = at_loss(ref, &d, out, att);
            params[p][i] = keep - h;
            double lm = at_loss(ref, &d, out, att);
            params[p][i] = keep;
            num[i] = (lp - lm) / (2.0 * h);
        }
        fails += check_grad(names[p], grads[p], num, d.nx, 2e-3, 0);
    }
    free(out), free(att), free(s), free(dq), free(dk), free(dv), free(num);
    at_data_free(&d);
    sb_backend_free(ref);
    return fails;
}

/* ====================================================================== */
/* 2. double precision and the causal mask                                */
/* ====================================================================== */

/* out and att against a double-precision attention (the same formula, every
 * step in double, libm exp). Limits per element: the logits' float error is
 * at most gamma(D+2)*scale*sum_d|q*k| =: e (the dot chain, the scale, the
 * max subtraction); a row's probabilities then move by at most a factor
 * exp(2e), plus gamma(T+4) for exp, the row sum and the division:
 * |dp| <= p*(expm1(2e) + gamma(T+4)). out: sum_j |dp_j||v_j| + gamma(T) *
 * sum_j p_j|v_j| (the P·V chain), doubled for the second-order terms this
 * first-order bound leaves out. Masked probabilities must be exactly 0.
 * Then the mask: a changed last key and value must leave rows t < T-1 of
 * out and att bitwise unchanged, on ref and on blas (both modes). */
static int attention_forward_should_match_double_precision_and_respect_the_causal_mask(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    at_data d;
    at_data_new(&d, (at_shape){2, 2, 9, 8}, 2.0f, 0, 3);
    const int T = d.T, D = d.D;
    at_out o;
    at_out_new(&o, &d);
    fails += at_run(ref, &d, &o, NULL, "ref attention");
    const double scale = 1.0 / sqrt((double)D);
    double *p = calloc((size_t)T, sizeof *p), *lim = calloc(d.na, sizeof *lim);
    double *want_att = calloc(d.na, sizeof *want_att), *want = calloc(d.nx, sizeof *want);
    double *olim = calloc(d.nx, sizeof *olim);
    SB_ASSERT(p && lim && want_att && want && olim);
    for (size_t hd = 0; hd < (size_t)d.B * d.H; hd++) {
        const float *q = d.q + hd * T * D, *k = d.k + hd * T * D, *v = d.v + hd * T * D;
        for (int t = 0; t < T; t++) {
            double m = -INFINITY, sum = 0, e = 0;
            for (int j = 0; j <= t; j++) {
                double dot = 0, mag = 0;
                for (int c = 0; c < D; c++)
                    dot += (double)q[t * D + c] * k[j * D + c], mag += fabs((double)q[t * D + c] * k[j * D + c]);
                p[j] = dot * scale;
                if (p[j] > m) m = p[j];
                if (gamma_n(D + 2) * scale * mag > e) e = gamma_n(D + 2) * scale * mag;
            }
            for (int j = 0; j <= t; j++) p[j] = exp(p[j] - m), sum += p[j];
            size_t row = hd * T * T + (size_t)t * T;
            for (int j = 0; j < T; j++) {
                want_att[row + j] = j <= t ? p[j] / sum : 0.0;
                lim[row + j] = want_att[row + j] * (expm1(2 * e) + gamma_n(T + 4));
                if (j > t && o.att[row + j] != 0.0f) {
                    fprintf(stderr, "masked att[%zu] = %.9g, want exactly 0\n", row + j, o.att[row + j]);
                    fails++;
                }
            }
            for (int c = 0; c < D; c++) {
                double acc = 0, ea = 0, mv = 0;
                for (int j = 0; j <= t; j++) {
                    acc += want_att[row + j] * v[j * D + c];
                    ea += lim[row + j] * fabs((double)v[j * D + c]);
                    mv += want_att[row + j] * fabs((double)v[j * D + c]);
                }
                want[hd * T * D + (size_t)t * D + c] = acc;
                olim[hd * T * D + (size_t)t * D + c] = 2 * (ea + gamma_n(T) * mv);
            }
        }
    }
    for (size_t i = 0; i < d.na; i++)
        if (!isfinite(o.att[i]) || fabs(o.att[i] - want_att[i]) > lim[i] + 1e-300) {
            fprintf(stderr, "att[%zu]: got %.9g, want %.9g, limit %.3g\n", i, o.att[i], want_att[i], lim[i]);
            fails++;
            break;
        }
    for (size_t i = 0; i < d.nx; i++)
        if (!isfinite(o.out[i]) || fabs(o.out[i] - want[i]) > olim[i]) {
            fprintf(stderr, "out[%zu]: got %.9g, want %.9g, limit %.3g\n", i, o.out[i], want[i], olim[i]);
            fails++;
            break;
        }

    /* the mask: change key and value T-1 of every head */
    at_data d2 = d;
    d2.k = new_floats(d.nx), d2.v = new_floats(d.nx);
    memcpy(d2.k, d.k, d.nx * sizeof(float)), memcpy(d2.v, d.v, d.nx * sizeof(float));
    for (size_t hd = 0; hd < (size_t)d.B * d.H; hd++)
        for (int c = 0; c < D; c++) {
            size_t e = hd * T * D + (size_t)(T - 1) * D + c;
            d2.k[e] = d2.k[e] * -3.0f + 0.5f, d2.v[e] = d2.v[e] * 5.0f - 1.0f;
        }
    sb_backend *bes[3] = {ref, make("blas", SB_MODE_DETERMINISTIC, 2, 0), make("blas", SB_MODE_FAST, 2, 0)};
    CHECK(bes[1] && bes[2], "blas backends");
    at_out a, b;
    at_out_new(&a, &d), at_out_new(&b, &d);
    for (int bi = 0; bi < 3; bi++) {
        char what[96];
        snprintf(what, sizeof what, "%s/%s causal mask", bes[bi]->name, sb_mode_name(bes[bi]->mode));
        fails += at_run(bes[bi], &d, &a, NULL, what) + at_run(bes[bi], &d2, &b, NULL, what);
        for (size_t hd = 0; hd < (size_t)d.B * d.H; hd++) {
            fails += same_bits(what, b.out + hd * T * D, a.out + hd * T * D, (size_t)(T - 1) * D);
            fails += same_bits(what, b.att + hd * T * T, a.att + hd * T * T, (size_t)(T - 1) * T);
        }
        int changed = memcmp(a.out, b.out, d.nx * sizeof(float)) != 0;
        if (!changed) fprintf(stderr, "%s: the last row did not change at all\n", what), fails++;
    }
    sb_backend_free(bes[1]), sb_backend_free(bes[2]);
    at_out_free(&a), at_out_free(&b), at_out_free(&o);
    free(d2.k), free(d2.v), free(p), free(lim), free(want_att), free(want), free(olim);
    at_data_free(&d);
    sb_backend_free(ref);
    return fails;
}

/* ====================================================================== */
/* 3. blas against ref                                                    */
/* ====================================================================== */

/* Softmax rows and the residual are ref's own functions on row/element
 * ranges, so blas must give ref's bits in both modes, 1 and 2 threads (a
 * large shape so that the pool runs: R*C > 16384). */
static int blas_softmax_and_residual_should_equal_ref_bitwise(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    const int dims[][2] = {{3, 5}, {1, 1}, {130, 257}};
    for (size_t si = 0; si < 3; si++) {
        const int R = dims[si][0], C = dims[si][1];
        const size_t n = (size_t)R * C;
        rng r = {30 + si};
        float *x = new_floats(n), *g = new_floats(n), *d0 = new_floats(n), *y = new_floats(n);
        fill(&r, x, n, -20, 20), fill(&r, g, n, -1, 1), fill(&r, d0, n, -1, 1), fill(&r, y, n, -1, 1);
        float *want[5], *got[5];
        for (int i = 0; i < 5; i++) want[i] = new_floats(n), got[i] = new_floats(n);
        sb_backend *bes[5] = {ref};
        int nb = 1;
        for (int mi = 0; mi < 2; mi++)
            for (int ti = 0; ti < 2; ti++) bes[nb++] = make("blas", modes[mi], thread_counts[ti], 1);
        for (int bi = 0; bi < nb; bi++) {
            sb_backend *be = bes[bi];
            CHECK(be, "backend");
            float **o = bi == 0 ? want : got;
            arena A = {.be = be};
            float *X = put(&A, x, n), *G = put(&A, g, n), *Y = put(&A, y, n);
            float *out = put(&A, NULL, n), *dx = put(&A, d0, n), *res = put(&A, NULL, n);
            float *da = put(&A, d0, n), *db = put(&A, y, n);
            be->i->softmax_forward(be, out, X, R, C);
            be->i->softmax_backward(be, dx, G, out, R, C);
            be->i->residual_forward(be, res, X, Y, n);
            be->i->residual_backward(be, da, db, G, n);
            get(&A, o[0], out, n), get(&A, o[1], dx, n), get(&A, o[2], res, n);
            get(&A, o[3], da, n), get(&A, o[4], db, n);
            char what[96];
            snprintf(what, sizeof what, "%s %s/%d softmax+residual R=%d C=%d", be->name,
                     sb_mode_name(be->mode), be->threads, R, C);
            fails += !guards_ok(&A, what);
            arena_free(&A);
            if (bi > 0)
                for (int i = 0; i < 5; i++) fails += same_bits(what, got[i], want[i], n);
        }
        for (int bi = 1; bi < nb; bi++) sb_backend_free(bes[bi]);
        for (int i = 0; i < 5; i++) free(want[i]), free(got[i]);
        free(x), free(g), free(d0), free(y);
    }
    sb_backend_free(ref);
    return fails;
}

/* blas attention against ref, deterministic and fast, 1 and 2 threads.
 * Both backward passes read ref's att, so the limits cover the backward's
 * own rounding only. Each side is within gamma(n)*magnitude of the exact
 * result (Higham; any summation order, FMA or not), magnitudes computed in
 * double from absolute values, so the two differ by at most twice that:
 *   att: the logits differ by e <= 2*gamma(D+2)*scale*sum|q*k|; p moves by
 *     p*(expm1(2e) + 2*gamma(T+4)) (exp, sum and division on each side);
 *   out: 2*gamma(T)*sum_j p_j|v_j| + sum_j |dp_j||v_j|;
 *   dv: 2*gamma(T+2)*(|dv0| + sum_t p_tj|g_t|);
 *   dq, dk: datt (D terms), the row dot (T), the softmax step and the
 *     scale*dpre·k chain (T) stack: 2*gamma(D+2T+6)*(|d0| + scale*sum
 *     |dpre_abs|*|k or q|), with dpre_abs = p*(|g|·|v| + sum_j p_j |g|·|v|).
 * Fast mode's unordered dk/dv sums obey the same bounds (any order). */
static int blas_attention_should_match_ref_within_summation_bound(void) {
    sb_backend *ref = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0;
    for (size_t si = 0; si < N_SHAPES; si++) {
        at_data d;
        at_data_new(&d, shapes[si], 1.5f, 0, 40 + si);
        const int T = d.T, D = d.D;
        const double scale = 1.0 / sqrt((double)D);
        at_out want, got;
        at_out_new(&want, &d), at_out_new(&got, &d);
        fails += at_run(ref, &d, &want, NULL, "ref attention");
        double *la = calloc(d.na, sizeof *la), *lo = calloc(d.nx, sizeof *lo);
        double *lq = calloc(d.nx, sizeof *lq), *lk = calloc(d.nx, sizeof *lk);
        double *lv = calloc(d.nx, sizeof *lv), *dabs = calloc((size_t)T * T, sizeof *dabs);
        SB_ASSERT(la && lo && lq && lk && lv && dabs);
        for (size_t hd = 0; hd < (size_t)d.B * d.H; hd++) {
            const size_t ox = hd * T * D, oa = hd * T * T;
            const float *q = d.q + ox, *k = d.k + ox, *v = d.v + ox, *g = d.g + ox, *P = want.att + oa;
            for (int t = 0; t < T; t++) {
                double e = 0, srow = 0;
                for (int j = 0; j <= t; j++) {
                    double mag = 0, ga = 0;
                    for (int c = 0; c < D; c++)
                        mag += fabs((double)q[t * D + c] * k[j * D + c]),
                        ga += fabs((double)g[t * D + c] * v[j * D + c]);
                    if (mag > e) e = mag;
                    dabs[t * T + j] = ga;
                    srow += P[t * T + j] * ga;
                }
                e *= 2 * gamma_n(D + 2) * scale;
                for (int j = 0; j < T; j++) {
                    la[oa + t * T + j] = P[t * T + j] * (expm1(2 * e) + 2 * gamma_n(T + 4));
                    dabs[t * T + j] = j <= t ? P[t * T + j] * (dabs[t * T + j] + srow) : 0;
                }
                for (int c = 0; c < D; c++) {
                    double a = 0, m = 0;
                    for (int j = 0; j <= t; j++)
                        a += la[oa + t * T + j] * fabs((double)v[j * D + c]),
                        m += P[t * T + j] * fabs((double)v[j * D + c]);
                    lo[ox + t * D + c] = 2 * gamma_n(T) * m + a;
                }
            }
            for (int t = 0; t < T; t++)
                for (int c = 0; c < D; c++) {
                    double mq = 0, mk = 0, mv = 0;
                    for (int j = 0; j < T; j++) {
                        mq += dabs[t * T + j] * fabs((double)k[j * D + c]);
                        mk += dabs[j * T + t] * fabs((double)q[j * D + c]);
                        mv += P[j * T + t] * fabs((double)g[j * D + c]);
                    }
                    size_t e = ox + (size_t)t * D + c;
                    lq[e] = 2 * gamma_n(D + 2 * T + 6) * (fabs((double)d.dq0[e]) + scale * mq);
                    lk[e] = 2 * gamma_n(D + 2 * T + 6) * (fabs((double)d.dk0[e]) + scale * mk);
                    lv[e] = 2 * gamma_n(T + 2) * (fabs((double)d.dv0[e]) + mv);
                }
        }
        for (int mi = 0; mi < 2; mi++)
            for (int ti = 0; ti < 2; ti++) {
                sb_backend *be = make("blas", modes[mi], thread_counts[ti], 0);
                CHECK(be, "blas backend");
                char what[128];
                snprintf(what, sizeof what, "blas %s/%d vs ref attention [%d,%d,%d,%d]",
                         sb_mode_name(modes[mi]), thread_counts[ti], d.B, d.H, T, D);
                fails += at_run(be, &d, &got, want.att, what);
                fails += within(what, got.att, want.att, la, 0, d.na);
                fails += within(what, got.out, want.out, lo, 0, d.nx);
                fails += within(what, got.dq, want.dq, lq, 0, d.nx);
                fails += within(what, got.dk, want.dk, lk, 0, d.nx);
                fails += within(what, got.dv, want.dv, lv, 0, d.nx);
                sb_backend_free(be);
            }
        free(la), free(lo), free(lq), free(lk), free(lv), free(dabs);
        at_out_free(&want), at_out_free(&got);
        at_data_free(&d);
    }
    sb_backend_free(ref);
    return fails;
}

/* ====================================================================== */
/* 4. determinism and fast-mode variation                                 */
/* ====================================================================== */

/* Same inputs → same bits, three repeats, wide-range dout, perturb asked
 * for (deterministic mode must ignore it); and, since every head's products
 * run OpenBLAS's serial driver, 1 and 2 threads agree too. */
static int blas_deterministic_attention_should_repeat_bitwise_for_any_thread_count(void) {
    int fails = 0;
    at_data d;
    at_data_new(&d, (at_shape){2, 3, 24, 16}, 1.5f, 1, 50);
    at_out first, again;
    at_out_new(&first, &d), at_out_new(&again, &d);
    for (int ti = 0; ti < 2; ti++) {
        sb_backend *be = make("blas", SB_MODE_DETERMINISTIC, thread_counts[ti], 1);
        CHECK(be, "blas backend");
        for (int rep = 0; rep < 3; rep++) {
            at_out *o = ti == 0 && rep == 0 ? &first : &again;
            fails += at_run(be, &d, o, NULL, "blas deterministic attention");
            if (o == &again) fails += at_same("blas deterministic attention repeat", &d, &again, &first);
        }
        sb_backend_free(be);
    }
    at_out_free(&first), at_out_free(&again);
    at_data_free(&d);
    return fails;
}

/* Fast + perturb: each head's 16 query rows are 4 chunks whose partial dk,
 * dv are added in a permuted order per call; with dout over 9 decades the
 * bits of dk and dv change within a few calls, on 1 thread as on 2. dq rows
 * are owned by one chunk: they must not vary. 50 identical results mean the
 * perturbation does not reach the sum. */
static int blas_fast_perturbed_attention_dk_dv_should_vary_between_calls(void) {
    int fails = 0;
    at_data d;
    at_data_new(&d, (at_shape){1, 2, 16, 8}, 1.5f, 1, 60);
    at_out first, again;
    at_out_new(&first, &d), at_out_new(&again, &d);
    for (int ti = 0; ti < 2; ti++) {
        sb_backend *be = make("blas", SB_MODE_FAST, thread_counts[ti], 1);
        CHECK(be, "blas backend");
        CHECK(be->perturb == 1, "perturb not in effect");
        fails += at_run(be, &d, &first, NULL, "fast+perturb attention");
        int dk_at = 0, dv_at = 0;
        for (int rep = 2; rep <= 50 && !(dk_at && dv_at) && !fails; rep++) {
            fails += at_run(be, &d, &again, NULL, "fast+perturb attention");
            fails += same_bits("fast+perturb attention dq", again.dq, first.dq, d.nx);
            if (!dk_at && memcmp(again.dk, first.dk, d.nx * sizeof(float))) dk_at = rep;
            if (!dv_at && memcmp(again.dv, first.dv, d.nx * sizeof(float))) dv_at = rep;
        }
        const char *names[] = {"dk", "dv"};
        int at[] = {dk_at, dv_at};
        for (int i = 0; i < 2; i++) {
            if (!at[i]) {
                fprintf(stderr, "blas fast+perturb/%d attention %s: 50 calls gave identical bits\n",
                        thread_counts[ti], names[i]);
                fails++;
            } else {
                printf("  blas fast+perturb/%d attention %s: bits changed at call %d\n",
                       thread_counts[ti], names[i], at[i]);
            }
        }
        sb_backend_free(be);
    }
    at_out_free(&first), at_out_free(&again);
    at_data_free(&d);
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

/* Softmax rows of 200 (past one 64-block, so the tree is used), residual,
 * and attention on every shape (T = 40: rows of up to 40 keys; T*D > 2048). */
static int canonical_softmax_residual_and_attention_should_equal_ref_bitwise_on_every_path_and_thread_count(void) {
    sb_backend *ref = make("ref", SB_MODE_CANONICAL, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0, ran[3] = {0};
    const int R = 90, C = 200;
    const size_t n = (size_t)R * C;
    rng r = {70};
    float *x = new_floats(n), *g = new_floats(n), *d0 = new_floats(n);
    fill(&r, x, n, -20, 20), fill(&r, g, n, -1, 1), fill(&r, d0, n, -1, 1);
    float *sw[3], *sg[3];
    for (int i = 0; i < 3; i++) sw[i] = new_floats(n), sg[i] = new_floats(n);
    for (size_t si = 0; si < N_SHAPES; si++) {
        at_data d;
        at_data_new(&d, shapes[si], 1.5f, 1, 71 + si);
        at_out want, got;
        at_out_new(&want, &d), at_out_new(&got, &d);
        fails += at_run(ref, &d, &want, NULL, "canonical ref attention");
        for (int isa = 0; isa < 3; isa++)
            for (int th = 1; th <= 4; th++) {
                int skip;
                sb_backend *be = make_canon_blas(isa, th, &skip);
                if (skip) continue;
                CHECK(be, "blas canonical %s/%d", ISAS[isa], th);
                ran[isa]++;
                char what[128];
                snprintf(what, sizeof what, "canonical blas/%s/%d vs ref attention [%d,%d,%d,%d]",
                         ISAS[isa], th, d.B, d.H, d.T, d.D);
                fails += at_run(be, &d, &got, NULL, what);
                fails += at_same(what, &d, &got, &want);
                if (si == 0) {
                    for (int bi = 0; bi < 2; bi++) {
                        sb_backend *b = bi ? be : ref;
                        float **o = bi ? sg : sw;
                        arena A = {.be = b};
                        float *X = put(&A, x, n), *G = put(&A, g, n), *out = put(&A, NULL, n);
                        float *dx = put(&A, d0, n), *res = put(&A, NULL, n);
                        b->i->softmax_forward(b, out, X, R, C);
                        b->i->softmax_backward(b, dx, G, out, R, C);
                        b->i->residual_forward(b, res, X, G, n);
                        get(&A, o[0], out, n), get(&A, o[1], dx, n), get(&A, o[2], res, n);
                        fails += !guards_ok(&A, what);
                        arena_free(&A);
                    }
                    snprintf(what, sizeof what, "canonical blas/%s/%d vs ref softmax+residual",
                             ISAS[isa], th);
                    for (int i = 0; i < 3; i++) fails += same_bits(what, sg[i], sw[i], n);
                }
                sb_backend_free(be);
            }
        at_out_free(&want), at_out_free(&got);
        at_data_free(&d);
    }
    printf("  SIMD paths run:");
    for (int isa = 0; isa < 3; isa++)
        printf(" %s%s", ISAS[isa], ran[isa] ? "" : " (not on this CPU: skipped)");
    printf("\n");
    CHECK(ran[0] > 0, "the scalar path always runs");
    for (int i = 0; i < 3; i++) free(sw[i]), free(sg[i]);
    free(x), free(g), free(d0);
    sb_backend_free(ref);
    return fails;
}

/* The canonical order is not deterministic mode's (its own exp, FMA chains,
 * the block tree): on wide-range data the two must differ, or canonical mode
 * would not be the code path under test. */
static int canonical_attention_should_differ_from_deterministic_mode(void) {
    at_data d;
    at_data_new(&d, (at_shape){1, 2, 40, 64}, 1.5f, 1, 90);
    sb_backend *det = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    sb_backend *can = make("ref", SB_MODE_CANONICAL, 1, 0);
    CHECK(det && can, "ref backends");
    at_out a, b;
    at_out_new(&a, &d), at_out_new(&b, &d);
    int fails = at_run(det, &d, &a, NULL, "ref det") + at_run(can, &d, &b, NULL, "ref canonical");
    int differ = memcmp(a.att, b.att, d.na * sizeof(float)) && memcmp(a.out, b.out, d.nx * sizeof(float)) &&
                 memcmp(a.dk, b.dk, d.nx * sizeof(float));
    if (!differ) {
        fprintf(stderr, "canonical and deterministic attention gave identical att, out or dk\n");
        fails++;
    }
    at_out_free(&a), at_out_free(&b);
    at_data_free(&d);
    sb_backend_free(det), sb_backend_free(can);
    return fails;
}

static const sb_test_case cases[] = {
    SB_CASE(gradcheck_should_match_finite_differences_for_softmax_and_residual),
    SB_CASE(gradcheck_should_match_finite_differences_for_attention_q_k_and_v),
    SB_CASE(attention_forward_should_match_double_precision_and_respect_the_causal_mask),
    SB_CASE(blas_softmax_and_residual_should_equal_ref_bitwise),
    SB_CASE(blas_attention_should_match_ref_within_summation_bound),
    SB_CASE(blas_deterministic_attention_should_repeat_bitwise_for_any_thread_count),
    SB_CASE(blas_fast_perturbed_attention_dk_dv_should_vary_between_calls),
    SB_CASE(canonical_softmax_residual_and_attention_should_equal_ref_bitwise_on_every_path_and_thread_count),
    SB_CASE(canonical_attention_should_differ_from_deterministic_mode),
};

SB_TEST_MAIN(cases)
