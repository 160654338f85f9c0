/* kernels_test_util.h — helpers shared by the kernel tests (test_kernels.c,
 * test_kernels_more.c): Higham's gamma_n, a seeded splitmix64, backend
 * construction, guarded backend buffers (an "arena" whose buffers sit between
 * NaN canary zones) and the comparisons that print the largest difference,
 * where it is, both values and the limit.
 *
 * What it is not: a test framework (that is sb_test.h) or a library: every
 * function is static inline so each test file takes only what it uses.
 */
#ifndef SB_KERNELS_TEST_UTIL_H
#define SB_KERNELS_TEST_UTIL_H

#include "kernels.h"
#include "sb_test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ====================================================================== */
/* numbers                                                                */
/* ====================================================================== */

#define UNIT_ROUNDOFF (1.0 / 16777216.0) /* float32 unit roundoff u = 2^-24 */

/* gamma_n = n*u / (1 - n*u): Higham's bound on the relative error of a chain of
 * n float operations — it holds for ANY summation order and with or without
 * FMA, which is why it is the limit whenever two backends sum differently. */
static inline double gamma_n(double n) {
    double nu = n * UNIT_ROUNDOFF;
    return nu / (1.0 - nu);
}

typedef struct rng {
    uint64_t s;
} rng;

static inline uint64_t rng_next(rng *r) { /* splitmix64 */
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline float rng_unif(rng *r, float lo, float hi) {
    float u = (float)(rng_next(r) >> 40) / 16777216.0f; /* [0,1), exact */
    return lo + (hi - lo) * u;
}

static inline void fill(rng *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = rng_unif(r, lo, hi);
}

static inline void fill_labels(rng *r, int32_t *y, int B, int C) {
    for (int b = 0; b < B; b++) y[b] = (int32_t)(rng_next(r) % (uint64_t)C);
}

static inline uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float *new_floats(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    SB_ASSERT(p);
    return p;
}

static inline sb_backend *make(const char *name, sb_mode mode, int threads, int perturb) {
    sb_backend_config cfg = {.mode = mode, .threads = threads, .perturb = perturb};
    sb_error err = {0};
    sb_backend *be = sb_backend_new(name, &cfg, &err);
    if (!be) fprintf(stderr, "sb_backend_new(%s): %s\n", name, err.msg);
    return be;
}

/* ====================================================================== */
/* guarded backend buffers                                                */
/* ====================================================================== */

#define GUARD 16                /* floats per side: 64 bytes keeps 64-byte alignment */
#define CANARY_BITS 0x7FC0DE00u /* a quiet NaN with a payload no op produces */
/* guard canary of buffer k: distinct per buffer (and from CANARY_BITS, used in
 * stride padding), so an op that copies an input's guard into its output's
 * guard (relu of NaN is that NaN) still changes the output guard's bits */
#define GUARD_BITS(k) (CANARY_BITS + 1u + (uint32_t)(k))
#define MAX_BUFS 16

/* the NaN canary as a float (fills stride padding and outputs an op must not
 * read) */
static inline float canary(void) {
    float f;
    uint32_t u = CANARY_BITS;
    memcpy(&f, &u, sizeof f);
    return f;
}

typedef struct arena {
    sb_backend *be;
    int n;
    float *base[MAX_BUFS];
    size_t len[MAX_BUFS];
} arena;

/* A backend buffer of n floats (or int32s) between two canary zones, filled
 * from host (zeros when host is NULL). */
static inline float *put(arena *a, const void *host, size_t n) {
    SB_ASSERT(a->n < MAX_BUFS);
    size_t total = n + 2 * GUARD;
    uint32_t *h = malloc(total * sizeof *h);
    SB_ASSERT(h);
    for (size_t i = 0; i < total; i++) h[i] = GUARD_BITS(a->n);
    if (host)
        memcpy(h + GUARD, host, n * sizeof(float));
    else
        memset(h + GUARD, 0, n * sizeof(float));
    float *dev = a->be->i->alloc(a->be, total * sizeof(float));
    SB_ASSERT(dev);
    a->be->i->upload(a->be, dev, h, total * sizeof(float));
    free(h);
    a->base[a->n] = dev;
    a->len[a->n] = n;
    a->n++;
    return dev + GUARD;
}

static inline void get(arena *a, void *host, const void *dev, size_t n) {
    a->be->i->download(a->be, host, dev, n * sizeof(float));
}

static inline void set(arena *a, void *dev, const void *host, size_t n) {
    a->be->i->upload(a->be, dev, host, n * sizeof(float));
}

/* 1 when every canary of every buffer is intact; prints the first broken one */
static inline int guards_ok(arena *a, const char *what) {
    for (int k = 0; k < a->n; k++) {
        size_t total = a->len[k] + 2 * GUARD;
        uint32_t *h = malloc(total * sizeof *h);
        SB_ASSERT(h);
        a->be->i->download(a->be, h, a->base[k], total * sizeof(float));
        for (size_t i = 0; i < total; i++) {
            if (i == GUARD) i += a->len[k];
            if (i < total && h[i] != GUARD_BITS(k)) {
                fprintf(stderr, "%s: buffer %d (%zu floats): guard %s[%zu] overwritten: 0x%08x\n",
                        what, k, a->len[k], i < GUARD ? "before" : "after",
                        i < GUARD ? GUARD - i : i - GUARD - a->len[k], h[i]);
                free(h);
                return 0;
            }
        }
        free(h);
    }
    return 1;
}

static inline void arena_free(arena *a) {
    for (int k = 0; k < a->n; k++) a->be->i->free(a->be, a->base[k]);
    a->n = 0;
}

/* ====================================================================== */
/* comparisons                                                            */
/* ====================================================================== */

/* |got - want| <= limit[i] for every i (limit == NULL: the scalar lim). */
static inline int within(const char *what, const float *got, const float *want,
                         const double *limit, double lim, size_t n) {
    size_t imax = 0, ibad = n;
    double dmax = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(want[i])) {
            fprintf(stderr, "%s: non-finite value at [%zu]: got %.9g, want %.9g\n", what, i,
                    got[i], want[i]);
            return 1;
        }
        double d = fabs((double)got[i] - (double)want[i]);
        double l = limit ? limit[i] : lim;
        if (d > dmax) dmax = d, imax = i;
        if (d > l && (ibad == n || d / l > worst)) worst = d / l, ibad = i;
    }
    if (ibad == n) return 0;
    fprintf(stderr,
            "%s: max diff %.3g at [%zu] (got %.9g, want %.9g); over the limit at [%zu]: "
            "diff %.3g > limit %.3g (got %.9g, want %.9g)\n",
            what, dmax, imax, got[imax], want[imax], ibad,
            fabs((double)got[ibad] - (double)want[ibad]), limit ? limit[ibad] : lim, got[ibad],
            want[ibad]);
    return 1;
}

/* got and want have the same bits everywhere. */
static inline int same_bits(const char *what, const float *got, const float *want, size_t n) {
    size_t first = n, count = 0;
    double dmax = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(want[i])) {
            fprintf(stderr, "%s: non-finite value at [%zu]: got %.9g, want %.9g\n", what, i,
                    got[i], want[i]);
            return 1;
        }
        if (bits_of(got[i]) != bits_of(want[i])) {
            if (first == n) first = i;
            count++;
            double d = fabs((double)got[i] - (double)want[i]);
            if (d > dmax) dmax = d;
        }
    }
    if (count == 0) return 0;
    fprintf(stderr,
            "%s: %zu of %zu values differ in bits (limit: 0); first at [%zu]: got %a "
            "(0x%08x), want %a (0x%08x); max diff %.3g\n",
            what, count, n, first, got[first], bits_of(got[first]), want[first],
            bits_of(want[first]), dmax);
    return 1;
}

/* analytic vs finite-difference gradient: |a - num| <= atol everywhere */
static inline int check_grad(const char *what, const float *analytic, const double *numeric,
                             size_t n, double atol, int quiet) {
    size_t imax = 0;
    double dmax = -1;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(analytic[i]) || !isfinite(numeric[i])) {
            if (!quiet)
                fprintf(stderr, "%s: non-finite gradient at [%zu]: analytic %.9g, numeric %.9g\n",
                        what, i, analytic[i], numeric[i]);
            return 1;
        }
        double d = fabs((double)analytic[i] - numeric[i]);
        if (d > dmax) dmax = d, imax = i;
    }
    if (dmax <= atol) return 0;
    if (!quiet)
        fprintf(stderr,
                "%s: max |analytic - numeric| = %.3g at [%zu] (analytic %.9g, numeric %.9g), "
                "limit %.3g\n",
                what, dmax, imax, analytic[imax], numeric[imax], atol);
    return 1;
}

#endif /* SB_KERNELS_TEST_UTIL_H */
