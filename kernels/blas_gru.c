/* blas_gru.c — the "blas" backend's GRU cell step (gru_forward,
 * gru_backward), for all three modes, on the backend's pool.
 *
 * How it is split: rows. Each worker takes one contiguous range of the B
 * rows and runs ref's entry of the mode on it (ref_gru.c). The op has no
 * reduction — every output element depends on its own (b, j) only — so the
 * result is ref's, bit for bit, in deterministic, fast and canonical mode
 * and for any thread count. Fast mode has nothing to reorder and computes
 * exactly like deterministic mode.
 *
 * What it is not: a SIMD kernel (exp and tanh stay scalar calls, libm's or
 * canonical_math.c's), nor fused with the GEMMs around it.
 */
#include "blas_internal.h"
#include "gru_internal.h"
#include "threadpool.h"

#include <stddef.h>

/* Elements (B*H) below which the step runs on the caller: each element costs
 * two or three exp/tanh calls, so the pool pays off sooner than for a copy. */
#define SERIAL_BELOW 4096

static sb_pool *pool_of(sb_backend *be) {
    return be->mode == SB_MODE_CANONICAL ? sb_blas_pool_of_canonical(be) : sb_blas_pool_of_fast(be);
}

static void split_range(size_t n, int w, int nw, size_t *lo, size_t *hi) {
    size_t q = n / (size_t)nw, r = n % (size_t)nw, uw = (size_t)w;
    *lo = uw * q + (uw < r ? uw : r);
    *hi = *lo + q + (uw < r ? 1 : 0);
}

typedef struct gru_job {
    int backward;
    sb_backend *be;
    int B, H;
    float *h, *saved, *dgi, *dgh, *dh_prev;
    const float *gi, *gh, *h_prev, *dh, *csaved;
} gru_job;

static void gru_worker(void *arg, int w, int nw) {
    gru_job *j = arg;
    size_t lo, hi;
    split_range((size_t)j->B, w, nw, &lo, &hi);
    if (hi <= lo) return;
    const size_t H = (size_t)j->H;
    const int rows = (int)(hi - lo);
    if (!j->backward) {
        sb_ref_gru_forward(j->be, j->h + lo * H, j->saved + lo * 4 * H, j->gi + lo * 3 * H,
                           j->gh + lo * 3 * H, j->h_prev + lo * H, rows, j->H);
    } else {
        sb_ref_gru_backward(j->be, j->dgi + lo * 3 * H, j->dgh + lo * 3 * H,
                            j->dh_prev ? j->dh_prev + lo * H : NULL, j->dh + lo * H,
                            j->csaved + lo * 4 * H, j->h_prev + lo * H, rows, j->H);
    }
}

/* on the pool or the caller: disjoint row ranges, the same bits either way */
static void gru_run(gru_job *j) {
    sb_pool *pool = pool_of(j->be);
    if ((size_t)j->B * (size_t)j->H < SERIAL_BELOW || sb_pool_size(pool) == 1)
        gru_worker(j, 0, 1);
    else
        sb_pool_run(pool, gru_worker, j);
}

void sb_blas_gru_forward(sb_backend *be, float *h, float *saved, const float *gi, const float *gh,
                         const float *h_prev, int B, int H) {
    SB_ASSERT(B >= 0 && H >= 1);
    gru_job j = {.backward = 0, .be = be, .B = B, .H = H, .h = h, .saved = saved, .gi = gi,
                 .gh = gh, .h_prev = h_prev};
    gru_run(&j);
}

void sb_blas_gru_backward(sb_backend *be, float *dgi, float *dgh, float *dh_prev, const float *dh,
                          const float *saved, const float *h_prev, int B, int H) {
    SB_ASSERT(B >= 0 && H >= 1);
    gru_job j = {.backward = 1, .be = be, .B = B, .H = H, .dgi = dgi, .dgh = dgh,
                 .dh_prev = dh_prev, .dh = dh, .csaved = saved, .h_prev = h_prev};
    gru_run(&j);
}
