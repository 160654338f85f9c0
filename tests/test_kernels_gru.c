/* test_kernels_gru.c — tests of the GRU cell step of kernels/ (gru_forward,
 * gru_backward): the "ref" oracle against finite differences and a
 * double-precision forward, "blas" == "ref" bitwise (deterministic and fast,
 * 1 and 2 threads) with guard bytes around every buffer, canonical ref ==
 * blas bitwise for thread counts 1..4 and every SIMD path, and saturation
 * (huge pre-activations give finite results).
 *
 * What it is not: a test of the GRU layer (the GEMMs are the engine's) or a
 * PyTorch comparison. Data comes from the seeded splitmix64 of
 * kernels_test_util.h, so a failure reproduces.
 */
#include "canonical.h"
#include "kernels_test_util.h"

static const sb_mode modes[] = {SB_MODE_DETERMINISTIC, SB_MODE_FAST};
static const int thread_counts[] = {1, 2};

/* B x H: one element, tiny and odd, H not a multiple of 8, and two large
 * enough (B*H > blas's serial threshold of 4096) that the rows are split
 * over the pool, one with B not a multiple of the thread count. */
typedef struct gru_shape {
    int B, H;
} gru_shape;
static const gru_shape shapes[] = {{1, 1}, {3, 5}, {7, 33}, {41, 130}, {128, 96}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

/* ====================================================================== */
/* data and one run on a backend                                          */
/* ====================================================================== */

typedef struct gru_data {
    int B, H;
    float *gi, *gh, *hp, *dh, *dp0; /* [B,3H], [B,3H], [B,H], [B,H], [B,H] */
} gru_data;

/* pre-activations in [-span, span], h_prev and dh in [-1, 1], dh_prev's
 * starting value (the op adds into it) in [-1, 1] */
static void gru_data_new(gru_data *d, int B, int H, float span, uint64_t seed) {
    rng r = {seed};
    size_t n3 = (size_t)B * 3 * H, n = (size_t)B * H;
    d->B = B, d->H = H;
    d->gi = new_floats(n3), d->gh = new_floats(n3);
    d->hp = new_floats(n), d->dh = new_floats(n), d->dp0 = new_floats(n);
    fill(&r, d->gi, n3, -span, span), fill(&r, d->gh, n3, -span, span);
    fill(&r, d->hp, n, -1, 1), fill(&r, d->dh, n, -1, 1), fill(&r, d->dp0, n, -1, 1);
}

static void gru_data_free(gru_data *d) {
    free(d->gi), free(d->gh), free(d->hp), free(d->dh), free(d->dp0);
}

typedef struct gru_out {
    float *h, *saved, *dgi, *dgh, *dp, *dgi2, *dgh2;
} gru_out;

static void gru_out_new(gru_out *o, const gru_data *d) {
    size_t n3 = (size_t)d->B * 3 * d->H, n = (size_t)d->B * d->H;
    o->h = new_floats(n), o->saved = new_floats(4 * n), o->dp = new_floats(n);
    o->dgi = new_floats(n3), o->dgh = new_floats(n3);
    o->dgi2 = new_floats(n3), o->dgh2 = new_floats(n3);
}

static void gru_out_free(gru_out *o) {
    free(o->h), free(o->saved), free(o->dgi), free(o->dgh), free(o->dp), free(o->dgi2),
        free(o->dgh2);
}

/* Forward, then backward twice: once adding into dh_prev (pre-filled with
 * dp0), once with dh_prev NULL into a second dgi/dgh pair. Every output the
 * op overwrites starts as NaN canaries; all buffers are guarded. */
static int gru_run(sb_backend *be, const gru_data *d, gru_out *o, const char *what) {
    arena A = {.be = be};
    size_t n3 = (size_t)d->B * 3 * d->H, n = (size_t)d->B * d->H;
    float *nan_buf = new_floats(4 * n);
    for (size_t i = 0; i < 4 * n; i++) nan_buf[i] = canary();
    float *gi = put(&A, d->gi, n3), *gh = put(&A, d->gh, n3), *hp = put(&A, d->hp, n);
    float *dh = put(&A, d->dh, n), *dp = put(&A, d->dp0, n);
    float *h = put(&A, nan_buf, n), *saved = put(&A, nan_buf, 4 * n);
    float *dgi = put(&A, nan_buf, n3), *dgh = put(&A, nan_buf, n3);
    float *dgi2 = put(&A, nan_buf, n3), *dgh2 = put(&A, nan_buf, n3);
    be->i->gru_forward(be, h, saved, gi, gh, hp, d->B, d->H);
    be->i->gru_backward(be, dgi, dgh, dp, dh, saved, hp, d->B, d->H);
    be->i->gru_backward(be, dgi2, dgh2, NULL, dh, saved, hp, d->B, d->H);
    get(&A, o->h, h, n), get(&A, o->saved, saved, 4 * n), get(&A, o->dp, dp, n);
    get(&A, o->dgi, dgi, n3), get(&A, o->dgh, dgh, n3);
    get(&A, o->dgi2, dgi2, n3), get(&A, o->dgh2, dgh2, n3);
    int fails = !guards_ok(&A, what);
    arena_free(&A);
    free(nan_buf);
    return fails;
}

/* every output bitwise equal (and finite: same_bits fails on NaN) */
static int gru_same(const char *what, const gru_data *d, const gru_out *got, const gru_out *want) {
    size_t n3 = (size_t)d->B * 3 * d->H, n = (size_t)d->B * d->H;
    char w[192];
    int f = 0;
    snprintf(w, sizeof w, "%s: h", what), f += same_bits(w, got->h, want->h, n);
    snprintf(w, sizeof w, "%s: saved", what), f += same_bits(w, got->saved, want->saved, 4 * n);
    snprintf(w, sizeof w, "%s: dgi", what), f += same_bits(w, got->dgi, want->dgi, n3);
    snprintf(w, sizeof w, "%s: dgh", what), f += same_bits(w, got->dgh, want->dgh, n3);
    snprintf(w, sizeof w, "%s: dh_prev", what), f += same_bits(w, got->dp, want->dp, n);
    snprintf(w, sizeof w, "%s: dgi (dh_prev NULL)", what);
    f += same_bits(w, got->dgi2, want->dgi, n3);
    snprintf(w, sizeof w, "%s: dgh (dh_prev NULL)", what);
    f += same_bits(w, got->dgh2, want->dgh, n3);
    return f;
}

/* ====================================================================== */
/* 1. finite differences on "ref"                                         */
/* ====================================================================== */

/* L = sum over (b,j) of G[b,j] * h[b,j], h from ref's float forward. */
static double gru_loss(sb_backend *be, const gru_data *d) {
    size_t n = (size_t)d->B * d->H;
    float *h = new_floats(n), *saved = new_floats(4 * n);
    be->i->gru_forward(be, h, saved, d->gi, d->gh, d->hp, d->B, d->H);
    double L = 0;
    for (size_t i = 0; i < n; i++) L += (double)d->dh[i] * h[i];
    free(h), free(saved);
    return L;
}

static double gru_fd(sb_backend *be, float *p, size_t k, float step, const gru_data *d) {
    float keep = p[k];
    p[k] = keep + step;
    double lp = gru_loss(be, d);
    p[k] = keep - step;
    double lm = gru_loss(be, d);
    p[k] = keep;
    return (lp - lm) / (2.0 * (double)step);
}

/* dh = G (the loss's gradient at h); the analytic dgi, dgh (written over
 * NaN) and dh_prev (added into dp0, dp0 subtracted again) against central
 * differences of the float forward, in deterministic and canonical mode.
 * Step 2^-7: the truncation error is step^2/6 * |L'''|, and L''' of
 * σ/tanh compositions with |inputs| <= 3 is O(1) here: ~3e-6. Each input
 * moves one h only, whose float rounding noise (~10 u) over 2*step is
 * ~5e-5. The limit 1e-3 is above both; a wrong formula (a gate swapped,
 * a missing r in dgh_n, a sign) is off by O(0.1). */
static int gradcheck_should_match_finite_differences_for_gru_dgi_dgh_and_dh_prev(void) {
    const sb_mode gm[] = {SB_MODE_DETERMINISTIC, SB_MODE_CANONICAL};
    int fails = 0;
    for (int mi = 0; mi < 2; mi++) {
        sb_backend *be = make("ref", gm[mi], 1, 0);
        CHECK(be, "ref backend");
        gru_data d;
        gru_data_new(&d, 3, 5, 3.0f, 11 + mi);
        const size_t n3 = 3 * 15, n = 15;
        float *h = new_floats(n), *saved = new_floats(4 * n), *dgi = new_floats(n3);
        float *dgh = new_floats(n3), *dp = new_floats(n);
        for (size_t i = 0; i < n3; i++) dgi[i] = canary(), dgh[i] = canary();
        memcpy(dp, d.dp0, n * sizeof *dp);
        be->i->gru_forward(be, h, saved, d.gi, d.gh, d.hp, d.B, d.H);
        be->i->gru_backward(be, dgi, dgh, dp, d.dh, saved, d.hp, d.B, d.H);
        for (size_t i = 0; i < n; i++) dp[i] = dp[i] - d.dp0[i];
        double *num = calloc(n3, sizeof *num);
        SB_ASSERT(num);
        const float step = 0x1p-7f;
        char what[96];
        for (size_t k = 0; k < n3; k++) num[k] = gru_fd(be, d.gi, k, step, &d);
        snprintf(what, sizeof what, "%s dgi", sb_mode_name(gm[mi]));
        fails += check_grad(what, dgi, num, n3, 1e-3, 0);
        for (size_t k = 0; k < n3; k++) num[k] = gru_fd(be, d.gh, k, step, &d);
        snprintf(what, sizeof what, "%s dgh", sb_mode_name(gm[mi]));
        fails += check_grad(what, dgh, num, n3, 1e-3, 0);
        for (size_t k = 0; k < n; k++) num[k] = gru_fd(be, d.hp, k, step, &d);
        snprintf(what, sizeof what, "%s dh_prev", sb_mode_name(gm[mi]));
        fails += check_grad(what, dp, num, n, 1e-3, 0);
        free(num), free(h), free(saved), free(dgi), free(dgh), free(dp);
        gru_data_free(&d);
        sb_backend_free(be);
    }
    return fails;
}

/* ====================================================================== */
/* 2. the forward against double precision                                */
/* ====================================================================== */

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

/* h and the saved r, z, n, c_n against the formulas in double (c_n must be
 * gh's bits). Limit per element 64 u (1 + |a_n| + |c_n| + |h_prev|): each of
 * r, z, n, h is a handful (< 10) of roundings of relative size u plus an exp
 * or tanh within 2 ULP (libm; canonical_math.c's stated bounds), amplified
 * by at most the magnitude of the inputs it combines (σ' <= 1/4, tanh' <= 1)
 * — so 64 u leaves a margin of ~4. A swapped gate or a wrong formula is off
 * by O(0.1). Both orders: deterministic (libm) and canonical (fmaf, own exp
 * and tanh). */
static int gru_forward_should_match_double_precision_in_deterministic_and_canonical_mode(void) {
    const sb_mode gm[] = {SB_MODE_DETERMINISTIC, SB_MODE_CANONICAL};
    int fails = 0;
    for (int mi = 0; mi < 2; mi++) {
        sb_backend *be = make("ref", gm[mi], 1, 0);
        CHECK(be, "ref backend");
        gru_data d;
        gru_data_new(&d, 17, 45, 8.0f, 21 + mi);
        const size_t n = (size_t)d.B * d.H, H = (size_t)d.H;
        float *h = new_floats(n), *saved = new_floats(4 * n);
        float *want = new_floats(4 * n), *wh = new_floats(n);
        double *lim = calloc(4 * n, sizeof *lim), *limh = calloc(n, sizeof *limh);
        SB_ASSERT(lim && limh);
        be->i->gru_forward(be, h, saved, d.gi, d.gh, d.hp, d.B, d.H);
        for (size_t b = 0; b < (size_t)d.B; b++)
            for (size_t j = 0; j < H; j++) {
                const float *a = d.gi + b * 3 * H, *c = d.gh + b * 3 * H;
                double r = sigmoid_d((double)a[j] + c[j]);
                double z = sigmoid_d((double)a[H + j] + c[H + j]);
                double nn = tanh((double)a[2 * H + j] + r * c[2 * H + j]);
                double hp = d.hp[b * H + j];
                double l = 64 * UNIT_ROUNDOFF *
                           (1 + fabs(a[2 * H + j]) + fabs(c[2 * H + j]) + fabs(hp));
                float *w = want + b * 4 * H;
                double *lw = lim + b * 4 * H;
                w[j] = (float)r, w[H + j] = (float)z, w[2 * H + j] = (float)nn;
                w[3 * H + j] = c[2 * H + j];
                lw[j] = lw[H + j] = lw[2 * H + j] = l;
                lw[3 * H + j] = 0; /* a copy */
                wh[b * H + j] = (float)((1 - z) * nn + z * hp);
                limh[b * H + j] = l;
            }
        char what[96];
        snprintf(what, sizeof what, "%s h vs double", sb_mode_name(gm[mi]));
        fails += within(what, h, wh, limh, 0, n);
        snprintf(what, sizeof what, "%s saved (r, z, n, c_n) vs double", sb_mode_name(gm[mi]));
        fails += within(what, saved, want, lim, 0, 4 * n);
        free(h), free(saved), free(want), free(wh), free(lim), free(limh);
        gru_data_free(&d);
        sb_backend_free(be);
    }
    return fails;
}

/* ====================================================================== */
/* 3. blas == ref bitwise, deterministic and fast, 1 and 2 threads        */
/* ====================================================================== */

/* No reduction: blas runs ref's rows on disjoint ranges, so every output is
 * ref's bits (limit: 0). Also checks that blas repeats itself and that the
 * dh_prev == NULL call gives the same dgi, dgh. */
static int blas_gru_should_equal_ref_bitwise_in_deterministic_and_fast_mode(void) {
    int fails = 0;
    for (size_t si = 0; si < N_SHAPES; si++) {
        gru_data d;
        gru_data_new(&d, shapes[si].B, shapes[si].H, 6.0f, 31 + si);
        gru_out want, got;
        gru_out_new(&want, &d), gru_out_new(&got, &d);
        for (int mi = 0; mi < 2; mi++) {
            sb_backend *ref = make("ref", modes[mi], 1, 0);
            CHECK(ref, "ref backend");
            fails += gru_run(ref, &d, &want, "ref");
            fails += gru_same("ref (dh_prev NULL) vs ref", &d, &want, &want);
            sb_backend_free(ref);
            for (int ti = 0; ti < 2; ti++) {
                sb_backend *be = make("blas", modes[mi], thread_counts[ti], 0);
                CHECK(be, "blas backend");
                char what[128];
                snprintf(what, sizeof what, "blas %s/%d vs ref B=%d H=%d", sb_mode_name(modes[mi]),
                         thread_counts[ti], d.B, d.H);
                for (int rep = 0; rep < 2; rep++) {
                    fails += gru_run(be, &d, &got, what);
                    fails += gru_same(what, &d, &got, &want);
                }
                sb_backend_free(be);
            }
        }
        gru_out_free(&want), gru_out_free(&got);
        gru_data_free(&d);
    }
    return fails;
}

/* ====================================================================== */
/* 4. canonical: ref == blas bitwise on every SIMD path and thread count  */
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

static int canonical_gru_should_equal_ref_bitwise_on_every_path_and_thread_count(void) {
    sb_backend *ref = make("ref", SB_MODE_CANONICAL, 1, 0);
    CHECK(ref, "ref backend");
    int fails = 0, ran[3] = {0};
    for (size_t si = 0; si < N_SHAPES; si++) {
        gru_data d;
        gru_data_new(&d, shapes[si].B, shapes[si].H, 6.0f, 41 + si);
        gru_out want, got;
        gru_out_new(&want, &d), gru_out_new(&got, &d);
        fails += gru_run(ref, &d, &want, "canonical ref");
        for (int isa = 0; isa < 3; isa++)
            for (int th = 1; th <= 4; th++) {
                int skip;
                sb_backend *be = make_canon_blas(isa, th, &skip);
                if (skip) continue;
                CHECK(be, "blas canonical %s/%d", ISAS[isa], th);
                ran[isa]++;
                char what[128];
                snprintf(what, sizeof what, "canonical blas/%s/%d vs ref B=%d H=%d", ISAS[isa],
                         th, d.B, d.H);
                fails += gru_run(be, &d, &got, what);
                fails += gru_same(what, &d, &got, &want);
                sb_backend_free(be);
            }
        gru_out_free(&want), gru_out_free(&got);
        gru_data_free(&d);
    }
    printf("  SIMD paths run:");
    for (int isa = 0; isa < 3; isa++)
        printf(" %s%s", ISAS[isa], ran[isa] ? "" : " (not on this CPU: skipped)");
    printf("\n");
    CHECK(ran[0] > 0, "the scalar path always runs");
    sb_backend_free(ref);
    return fails;
}

/* Canonical mode has its own exp, tanh and fmaf steps: on enough data its
 * bits must differ from deterministic mode's somewhere, or the canonical
 * path would not be the one under test. */
static int canonical_gru_should_differ_from_deterministic_mode(void) {
    gru_data d;
    gru_data_new(&d, 64, 64, 6.0f, 51);
    sb_backend *det = make("ref", SB_MODE_DETERMINISTIC, 1, 0);
    sb_backend *can = make("ref", SB_MODE_CANONICAL, 1, 0);
    CHECK(det && can, "ref backends");
    gru_out a, b;
    gru_out_new(&a, &d), gru_out_new(&b, &d);
    int fails = gru_run(det, &d, &a, "ref det") + gru_run(can, &d, &b, "ref canonical");
    size_t n = (size_t)d.B * d.H;
    int differ = memcmp(a.h, b.h, n * sizeof(float)) && memcmp(a.dgi, b.dgi, 3 * n * sizeof(float));
    if (!differ) {
        fprintf(stderr, "canonical and deterministic GRU gave identical h or dgi\n");
        fails++;
    }
    gru_out_free(&a), gru_out_free(&b);
    gru_data_free(&d);
    sb_backend_free(det), sb_backend_free(can);
    return fails;
}

/* ====================================================================== */
/* 5. saturation                                                          */
/* ====================================================================== */

/* Pre-activations of magnitude 20 .. FLT_MAX with random signs (their sums
 * overflow to ±inf): every output must be finite (a naive exp(-x) would
 * overflow and a careless order could form 0 * inf), gates in [0, 1], n in
 * [-1, 1] and h within [min(n, h_prev), max(n, h_prev)] (up to 2^-22). On ref and blas
 * (2 threads), every mode. */
static int gru_should_stay_finite_for_saturating_preactivations(void) {
    static const float mags[] = {20.0f, 100.0f, 1e4f, 1e30f, 0x1.fffffep127f};
    const sb_mode all[] = {SB_MODE_DETERMINISTIC, SB_MODE_FAST, SB_MODE_CANONICAL};
    const char *names[] = {"ref", "blas"};
    gru_data d;
    gru_data_new(&d, 9, 70, 1.0f, 61);
    rng r = {62};
    const size_t n3 = (size_t)d.B * 3 * d.H, H = (size_t)d.H;
    for (size_t i = 0; i < n3; i++) {
        d.gi[i] = (rng_next(&r) & 1 ? -1 : 1) * mags[rng_next(&r) % 5];
        d.gh[i] = (rng_next(&r) & 1 ? -1 : 1) * mags[rng_next(&r) % 5];
    }
    int fails = 0;
    gru_out o;
    gru_out_new(&o, &d);
    for (int k = 0; k < 2; k++)
        for (int mi = 0; mi < 3; mi++) {
            sb_backend *be = make(names[k], all[mi], 2, 0);
            CHECK(be, "%s backend", names[k]);
            char what[96];
            snprintf(what, sizeof what, "%s %s saturated", names[k], sb_mode_name(all[mi]));
            fails += gru_run(be, &d, &o, what);
            /* same_bits against itself fails on any non-finite value */
            fails += gru_same(what, &d, &o, &o);
            for (size_t b = 0; b < (size_t)d.B; b++)
                for (size_t j = 0; j < H; j++) {
                    const float *s = o.saved + b * 4 * H;
                    float rr = s[j], z = s[H + j], nn = s[2 * H + j], hp = d.hp[b * H + j];
                    float h = o.h[b * H + j];
                    /* a rounding or two (< 2^-22 at |h| <= 1) may step past the ends */
                    float lo = (nn < hp ? nn : hp) - 0x1p-22f, hi = (nn < hp ? hp : nn) + 0x1p-22f;
                    if (!(rr >= 0 && rr <= 1 && z >= 0 && z <= 1 && nn >= -1 && nn <= 1 &&
                          h >= lo && h <= hi)) {
                        fprintf(stderr, "%s: [%zu,%zu] out of range: r %g z %g n %g h %g h_prev %g\n",
                                what, b, j, rr, z, nn, h, hp);
                        fails++;
                        b = (size_t)d.B;
                        break;
                    }
                }
            sb_backend_free(be);
        }
    gru_out_free(&o);
    gru_data_free(&d);
    return fails;
}

static const sb_test_case cases[] = {
    SB_CASE(gradcheck_should_match_finite_differences_for_gru_dgi_dgh_and_dh_prev),
    SB_CASE(gru_forward_should_match_double_precision_in_deterministic_and_canonical_mode),
    SB_CASE(blas_gru_should_equal_ref_bitwise_in_deterministic_and_fast_mode),
    SB_CASE(canonical_gru_should_equal_ref_bitwise_on_every_path_and_thread_count),
    SB_CASE(canonical_gru_should_differ_from_deterministic_mode),
    SB_CASE(gru_should_stay_finite_for_saturating_preactivations),
};

SB_TEST_MAIN(cases)
