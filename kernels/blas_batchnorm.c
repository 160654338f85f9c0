/* blas_batchnorm.c — the "blas" backend's batch norm, for all three modes,
 * multithreaded over channels or over chunks of the batch on the backend's
 * pool.
 *
 * How each op is split (kernels.h states the resulting orders):
 *   deterministic, canonical: channels — one contiguous channel range per
 *                 worker, each running the ref functions of the mode
 *                 (ref_batchnorm.c, resp. canonical_batchnorm.c) on its
 *                 channels: forward (statistics, running update, output),
 *                 eval forward and backward all equal ref's bits, for any
 *                 thread count.
 *   fast:         the per-channel sums over the batch are UNORDERED — the
 *                 batch is cut into chunks of BN_CHUNK_IMAGES images taken
 *                 from the work queue; a worker sums its chunk (images
 *                 increasing, then s, from 0.0f) into per-channel scratch
 *                 partials and adds them into zeroed per-channel totals
 *                 under spin locks, in completion order (permuted per call
 *                 when perturb is on). Forward: one such pass for S(x) and,
 *                 after the mean, one for S((x - m)²); backward: one pass
 *                 for S(dout) and S(dout*xhat). The steps around the sums
 *                 (statistics, running update, output, dinp) are ref's
 *                 (sb_ref_bn_finish_chan, _apply_chans, _dinp_chans), the
 *                 elementwise ones on channel ranges. The eval forward has
 *                 no reduction: the deterministic split.
 * When fast mode's scratch cannot be had, the deterministic split runs
 * instead (still correct, just ordered).
 *
 * What it is not: a tuned kernel (no SIMD beyond what the compiler does to
 * the loops, no fusion with the neighbouring conv or activation).
 */
#include "batchnorm_internal.h"
#include "blas_internal.h"
#include "threadpool.h"

#include <stdlib.h>

#define BN_CHUNK_IMAGES 2  /* fast mode: images (rows of [N, C]) per queue item */
#define SERIAL_BELOW 16384 /* channel-split passes over fewer elements run on the caller */

static sb_pool *pool_of(sb_backend *be) {
    return be->mode == SB_MODE_CANONICAL ? sb_blas_pool_of_canonical(be) : sb_blas_pool_of_fast(be);
}

static void split_range(size_t n, int w, int nw, size_t *lo, size_t *hi) {
    size_t q = n / (size_t)nw, r = n % (size_t)nw, uw = (size_t)w;
    *lo = uw * q + (uw < r ? uw : r);
    *hi = *lo + q + (uw < r ? 1 : 0);
}

enum job_kind {
    J_FWD,       /* deterministic/canonical: the whole forward, channel ranges */
    J_EVAL,      /* every mode: the eval forward, channel ranges */
    J_BWD,       /* deterministic/canonical: the whole backward, channel ranges */
    J_APPLY,     /* fast: out from mean and rstd, channel ranges */
    J_DINP,      /* fast: dinp from the totals, channel ranges */
    J_SUM_X,     /* fast: chunks of the batch, tot1 += S(x) */
    J_SUM_SQ,    /* fast: chunks of the batch, tot1 += S((x - mean)^2) */
    J_SUM_GRAD   /* fast: chunks of the batch, tot1 += S(dout), tot2 += S(dout*xhat) */
};

typedef struct job {
    enum job_kind kind;
    int canonical;
    int N, C, S;
    float eps, momentum;
    float *out, *mean, *rstd, *rmean, *rvar, *dw, *db;
    const float *inp, *weight, *bias, *dout, *cmean, *crstd, *crm, *crv;
    sb_blas_queue q;     /* fast */
    float *partials;     /* fast: [workers][2*C] */
    float *tot1, *tot2;  /* fast: per-channel totals, zeroed before a pass */
    unsigned char *locks;
    size_t tiles;        /* lock tiles of one C-float target */
} job;

#define ROW(p, n, c) ((p) + ((size_t)(n) * (size_t)C + (size_t)(c)) * (size_t)S)

static void fast_items(job *j, int w, int nw) {
    const int C = j->C, S = j->S;
    float *p1 = j->partials + (size_t)w * 2 * (size_t)C, *p2 = p1 + C;
    size_t chunk;
    while ((chunk = sb_blas_queue_take(&j->q)) != (size_t)-1) {
        int n0 = (int)chunk * BN_CHUNK_IMAGES;
        int n1 = j->N - n0 < BN_CHUNK_IMAGES ? j->N : n0 + BN_CHUNK_IMAGES;
        for (int c = 0; c < C; c++) p1[c] = 0.0f, p2[c] = 0.0f;
        for (int n = n0; n < n1; n++) /* the chunk's images, increasing */
            for (int c = 0; c < C; c++) {
                const float *x = ROW(j->inp, n, c);
                if (j->kind == J_SUM_X) {
                    for (int s = 0; s < S; s++) p1[c] = p1[c] + x[s];
                } else if (j->kind == J_SUM_SQ) {
                    const float m = j->cmean[c];
                    for (int s = 0; s < S; s++) {
                        float d = x[s] - m;
                        p1[c] = p1[c] + d * d;
                    }
                } else {
                    const float *g = ROW(j->dout, n, c);
                    const float m = j->cmean[c], rs = j->crstd[c];
                    for (int s = 0; s < S; s++) {
                        float xhat = (x[s] - m) * rs;
                        p1[c] = p1[c] + g[s];
                        p2[c] = p2[c] + g[s] * xhat;
                    }
                }
            }
        /* start at worker w's share so concurrent workers spread over tiles */
        size_t start = (size_t)C / (size_t)nw * (size_t)w;
        sb_blas_locked_add(j->tot1, p1, (size_t)C, j->locks, start);
        if (j->kind == J_SUM_GRAD)
            sb_blas_locked_add(j->tot2, p2, (size_t)C, j->locks ? j->locks + j->tiles : NULL,
                               start);
    }
}

static void worker(void *arg, int w, int nw) {
    job *j = arg;
    if (j->kind == J_SUM_X || j->kind == J_SUM_SQ || j->kind == J_SUM_GRAD) {
        fast_items(j, w, nw);
        return;
    }
    size_t lo, hi;
    split_range((size_t)j->C, w, nw, &lo, &hi);
    if (hi <= lo) return;
    const int c0 = (int)lo, c1 = (int)hi, N = j->N, C = j->C, S = j->S;
    switch (j->kind) {
    case J_FWD:
        (j->canonical ? sb_canon_bn_forward_chans : sb_ref_bn_forward_chans)(
            j->out, j->mean, j->rstd, j->rmean, j->rvar, j->inp, j->weight, j->bias, N, C, S,
            j->eps, j->momentum, c0, c1);
        return;
    case J_EVAL:
        (j->canonical ? sb_canon_bn_eval_chans : sb_ref_bn_eval_chans)(
            j->out, j->inp, j->weight, j->bias, j->crm, j->crv, N, C, S, j->eps, c0, c1);
        return;
    case J_BWD:
        (j->canonical ? sb_canon_bn_backward_chans : sb_ref_bn_backward_chans)(
            j->out, j->dw, j->db, j->dout, j->inp, j->weight, j->cmean, j->crstd, N, C, S, c0,
            c1);
        return;
    case J_APPLY:
        sb_ref_bn_apply_chans(j->out, j->inp, j->weight, j->bias, j->cmean, j->crstd, N, C, S,
                              c0, c1);
        return;
    case J_DINP:
        sb_ref_bn_dinp_chans(j->out, j->dout, j->inp, j->weight, j->cmean, j->crstd, j->tot1,
                             j->tot2, N, C, S, c0, c1);
        return;
    case J_SUM_X:
    case J_SUM_SQ:
    case J_SUM_GRAD: return;
    }
}

/* Channel splits on the pool, or on the caller when small: the same bits
 * either way (disjoint channels, no cross-channel order). */
static void run(sb_backend *be, job *j) {
    sb_pool *pool = pool_of(be);
    size_t work = (size_t)j->N * (size_t)j->C * (size_t)j->S;
    if (work < SERIAL_BELOW || sb_pool_size(pool) == 1)
        worker(j, 0, 1);
    else
        sb_pool_run(pool, worker, j);
}

/* Fast mode's scratch: per-worker partials and two zeroed totals; 0 when it
 * cannot be had (the caller then takes the ordered path). */
static int fast_begin(sb_backend *be, job *j) {
    const int nw = sb_pool_size(pool_of(be));
    const size_t C = (size_t)j->C;
    j->partials = malloc(((size_t)nw * 2 + 2) * C * sizeof(float));
    if (!j->partials) return 0;
    j->tot1 = j->partials + (size_t)nw * 2 * C, j->tot2 = j->tot1 + C;
    for (size_t c = 0; c < 2 * C; c++) j->tot1[c] = 0.0f;
    j->tiles = (C + SB_BLAS_TILE - 1) / SB_BLAS_TILE;
    j->locks = sb_blas_tile_locks(be, 2 * j->tiles * SB_BLAS_TILE); /* tot1's, then tot2's */
    return 1;
}

/* One unordered pass over the batch: always on the pool — with two or more
 * threads the add order is real scheduling nondeterminism, whatever the
 * size. The locks are all released when sb_pool_run returns (a barrier). */
static void fast_pass(sb_backend *be, job *j, enum job_kind kind) {
    j->kind = kind;
    sb_blas_queue_init(be, &j->q, ((size_t)j->N + BN_CHUNK_IMAGES - 1) / BN_CHUNK_IMAGES);
    sb_pool_run(pool_of(be), worker, j);
}

/* ====================================================================== */
/* the vtable entries                                                     */
/* ====================================================================== */

void sb_blas_batchnorm_forward(sb_backend *be, float *out, float *mean, float *rstd,
                               float *running_mean, float *running_var, const float *inp,
                               const float *weight, const float *bias, int N, int C, int S,
                               float eps, float momentum) {
    SB_ASSERT(N >= 1 && C >= 1 && S >= 1 && (size_t)N * (size_t)S >= 2);
    job j = {.canonical = be->mode == SB_MODE_CANONICAL, .N = N, .C = C, .S = S, .eps = eps,
             .momentum = momentum, .out = out, .mean = mean, .rstd = rstd,
             .rmean = running_mean, .rvar = running_var, .inp = inp, .weight = weight,
             .bias = bias, .cmean = mean, .crstd = rstd};
    if (be->mode == SB_MODE_FAST && fast_begin(be, &j)) {
        const size_t M = (size_t)N * (size_t)S;
        fast_pass(be, &j, J_SUM_X);
        for (int c = 0; c < C; c++) mean[c] = j.tot1[c] / (float)M;
        j.tot1 = j.tot2; /* the second pass sums into the other zeroed total */
        fast_pass(be, &j, J_SUM_SQ);
        for (int c = 0; c < C; c++)
            sb_ref_bn_finish_chan(mean, rstd, running_mean, running_var, c, mean[c], j.tot1[c], M,
                                  eps, momentum);
        free(j.partials);
        j.kind = J_APPLY;
        run(be, &j);
        return;
    }
    j.kind = J_FWD;
    run(be, &j);
}

void sb_blas_batchnorm_forward_eval(sb_backend *be, float *out, const float *inp,
                                    const float *weight, const float *bias,
                                    const float *running_mean, const float *running_var, int N,
                                    int C, int S, float eps) {
    SB_ASSERT(N >= 0 && C >= 1 && S >= 1);
    job j = {.kind = J_EVAL, .canonical = be->mode == SB_MODE_CANONICAL, .N = N, .C = C, .S = S,
             .eps = eps, .out = out, .inp = inp, .weight = weight, .bias = bias,
             .crm = running_mean, .crv = running_var};
    run(be, &j);
}

void sb_blas_batchnorm_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                                const float *dout, const float *inp, const float *weight,
                                const float *mean, const float *rstd, int N, int C, int S) {
    SB_ASSERT(N >= 1 && C >= 1 && S >= 1);
    if (!dinp && !dweight && !dbias) return;
    job j = {.canonical = be->mode == SB_MODE_CANONICAL, .N = N, .C = C, .S = S, .out = dinp,
             .dw = dweight, .db = dbias, .dout = dout, .inp = inp, .weight = weight,
             .cmean = mean, .crstd = rstd};
    if (be->mode == SB_MODE_FAST && fast_begin(be, &j)) {
        fast_pass(be, &j, J_SUM_GRAD);
        for (int c = 0; c < C; c++) {
            if (dbias) dbias[c] = dbias[c] + j.tot1[c];
            if (dweight) dweight[c] = dweight[c] + j.tot2[c];
        }
        if (dinp) {
            j.kind = J_DINP;
            run(be, &j);
        }
        free(j.partials);
        return;
    }
    j.kind = J_BWD;
    run(be, &j);
}
