/* blas_norm.c — the "blas" backend's layer norm and embedding, for all three
 * modes, multithreaded over rows, columns or tokens on the backend's pool.
 *
 * How each op is split (kernels.h states the resulting orders):
 *   layernorm forward, layernorm dinp
 *                 rows: one contiguous row range per worker, each running
 *                 the "ref" row loops of the mode (ref_norm.c, or
 *                 canonical_norm.c in canonical mode). Rows are independent,
 *                 so these equal ref of the same mode bit for bit, for any
 *                 thread count.
 *   layernorm dweight, dbias
 *                 deterministic, canonical: columns — one contiguous column
 *                 range per worker, each column summed over all rows in
 *                 ref's order (sequential, resp. canon_sum/canon_dot): ref's
 *                 bits, independent of the thread count.
 *                 fast: UNORDERED — rows in chunks of LN_CHUNK_ROWS from the
 *                 work queue; a worker sums its chunk's rows (increasing,
 *                 from 0.0f) into its scratch partials and adds them into
 *                 dweight and dbias tile by tile under spin locks, in
 *                 completion order (permuted per call when perturb is on).
 *   embedding forward
 *                 a copy on token ranges: the same bits everywhere.
 *   embedding backward
 *                 deterministic, canonical: columns — each worker scatters
 *                 its column range of every token row, t = 0..n-1: ref's bits
 *                 for any thread count.
 *                 fast: UNORDERED — tokens in chunks of EMB_CHUNK_TOKENS from
 *                 the work queue, every element added with one atomic add, in
 *                 completion order (permuted per call when perturb is on), as
 *                 a GPU's atomicAdd scatter.
 * When fast mode's scratch cannot be had, the deterministic column split runs
 * instead (still correct, just ordered).
 *
 * What it is not: a tuned kernel (no SIMD beyond what the compiler does to
 * ref's loops, no fusion with the next op).
 */
#include "blas_internal.h"
#include "norm_internal.h"
#include "threadpool.h"

#include <stdlib.h>

#define LN_CHUNK_ROWS 4     /* fast layer-norm parameter gradients: rows per queue item */
#define EMB_CHUNK_TOKENS 4  /* fast embedding scatter-add: tokens per queue item */
#define SERIAL_BELOW 16384  /* passes over fewer elements run on the caller */

static sb_pool *pool_of(sb_backend *be) {
    return be->mode == SB_MODE_CANONICAL ? sb_blas_pool_of_canonical(be) : sb_blas_pool_of_fast(be);
}

static void split_range(size_t n, int w, int nw, size_t *lo, size_t *hi) {
    size_t q = n / (size_t)nw, r = n % (size_t)nw, uw = (size_t)w;
    *lo = uw * q + (uw < r ? uw : r);
    *hi = *lo + q + (uw < r ? 1 : 0);
}

enum job_kind { J_LN_FWD, J_LN_DINP, J_LN_PARAMS, J_LN_FAST, J_EMB_FWD, J_EMB_COLS, J_EMB_FAST };

typedef struct job {
    enum job_kind kind;
    sb_backend *be;
    int canonical;
    int R, C, V;       /* layer norm: rows, columns; embedding: n, D, V */
    float eps;
    float *out, *mean, *rstd, *dw, *db;
    const float *inp, *weight, *bias, *dout, *cmean, *crstd;
    const int32_t *ids;
    sb_blas_queue q;   /* fast */
    float *scratch;    /* fast layer norm: [workers][2*C] */
    unsigned char *locks;
    size_t tiles;      /* fast layer norm: lock tiles of one C-float target */
} job;

static void ln_fast_items(job *j, int w, int nw) {
    const int C = j->C;
    float *pw = j->scratch + (size_t)w * 2 * (size_t)C, *pb = pw + C;
    size_t chunk;
    while ((chunk = sb_blas_queue_take(&j->q)) != (size_t)-1) {
        int r0 = (int)chunk * LN_CHUNK_ROWS;
        int r1 = j->R - r0 < LN_CHUNK_ROWS ? j->R : r0 + LN_CHUNK_ROWS;
        for (int i = 0; i < C; i++) pw[i] = 0.0f, pb[i] = 0.0f;
        for (int r = r0; r < r1; r++) { /* the chunk's rows, increasing */
            const size_t e = (size_t)r * (size_t)C;
            const float m = j->cmean[r], rs = j->crstd[r];
            for (int i = 0; i < C; i++) {
                float xhat = (j->inp[e + i] - m) * rs;
                pw[i] = pw[i] + j->dout[e + i] * xhat;
                pb[i] = pb[i] + j->dout[e + i];
            }
        }
        /* start at worker w's share so concurrent workers spread over tiles */
        size_t start = (size_t)C / (size_t)nw * (size_t)w;
        if (j->dw) sb_blas_locked_add(j->dw, pw, (size_t)C, j->locks, start);
        if (j->db)
            sb_blas_locked_add(j->db, pb, (size_t)C, j->locks ? j->locks + j->tiles : NULL, start);
    }
}

static void emb_fast_items(job *j) {
    const int D = j->C;
    size_t chunk;
    while ((chunk = sb_blas_queue_take(&j->q)) != (size_t)-1) {
        int t0 = (int)chunk * EMB_CHUNK_TOKENS;
        int t1 = j->R - t0 < EMB_CHUNK_TOKENS ? j->R : t0 + EMB_CHUNK_TOKENS;
        for (int t = t0; t < t1; t++) {
            SB_ASSERT(j->ids[t] >= 0 && j->ids[t] < j->V);
            float *row = j->dw + (size_t)j->ids[t] * (size_t)D;
            const float *g = j->dout + (size_t)t * (size_t)D;
            for (int i = 0; i < D; i++) sb_blas_atomic_add(&row[i], g[i]);
        }
    }
}

static void worker(void *arg, int w, int nw) {
    job *j = arg;
    size_t lo = 0, hi = 0;
    switch (j->kind) {
    case J_LN_FAST: ln_fast_items(j, w, nw); return;
    case J_EMB_FAST: emb_fast_items(j); return;
    case J_LN_FWD:
    case J_LN_DINP:
    case J_EMB_FWD: split_range((size_t)j->R, w, nw, &lo, &hi); break;
    case J_LN_PARAMS:
    case J_EMB_COLS: split_range((size_t)j->C, w, nw, &lo, &hi); break;
    }
    if (hi <= lo) return;
    const size_t off = lo * (size_t)j->C;
    const int len = (int)(hi - lo);
    switch (j->kind) {
    case J_LN_FWD:
        (j->canonical ? sb_canon_ref_layernorm_forward : sb_ref_layernorm_forward)(
            j->be, j->out + off, j->mean + lo, j->rstd + lo, j->inp + off, j->weight, j->bias, len,
            j->C, j->eps);
        return;
    case J_LN_DINP:
        (j->canonical ? sb_canon_ref_layernorm_backward : sb_ref_layernorm_backward)(
            j->be, j->out + off, NULL, NULL, j->dout + off, j->inp + off, j->weight, j->cmean + lo,
            j->crstd + lo, len, j->C);
        return;
    case J_LN_PARAMS:
        (j->canonical ? sb_canon_layernorm_param_cols : sb_ref_layernorm_param_cols)(
            j->dw, j->db, j->dout, j->inp, j->cmean, j->crstd, j->R, j->C, (int)lo, (int)hi);
        return;
    case J_EMB_FWD:
        sb_ref_embedding_forward(j->be, j->out + off, j->weight, j->ids + lo, len, j->V, j->C);
        return;
    case J_EMB_COLS:
        sb_ref_embedding_backward_cols(j->dw, j->dout, j->ids, j->R, j->V, j->C, (int)lo, (int)hi);
        return;
    case J_LN_FAST:
    case J_EMB_FAST: return;
    }
}

/* On the pool, or on the caller when small: these splits give the same bits
 * either way (disjoint rows or columns, no cross-range order). */
static void run(sb_backend *be, job *j, size_t work) {
    sb_pool *pool = pool_of(be);
    if (work < SERIAL_BELOW || sb_pool_size(pool) == 1)
        worker(j, 0, 1);
    else
        sb_pool_run(pool, worker, j);
}

/* ====================================================================== */
/* layer norm                                                             */
/* ====================================================================== */

void sb_blas_layernorm_forward(sb_backend *be, float *out, float *mean, float *rstd,
                               const float *inp, const float *weight, const float *bias, int R,
                               int C, float eps) {
    SB_ASSERT(R >= 0 && C >= 1);
    job j = {.kind = J_LN_FWD, .be = be, .canonical = be->mode == SB_MODE_CANONICAL, .R = R,
             .C = C, .eps = eps, .out = out, .mean = mean, .rstd = rstd, .inp = inp,
             .weight = weight, .bias = bias};
    run(be, &j, (size_t)R * (size_t)C);
}

/* 0 when scratch could not be had (the caller then takes the ordered path). */
static int ln_fast_params(sb_backend *be, job *j) {
    sb_pool *pool = pool_of(be);
    const int nw = sb_pool_size(pool);
    j->scratch = malloc((size_t)nw * 2 * (size_t)j->C * sizeof(float));
    if (!j->scratch) return 0;
    j->tiles = ((size_t)j->C + SB_BLAS_TILE - 1) / SB_BLAS_TILE;
    j->locks = sb_blas_tile_locks(be, 2 * j->tiles * SB_BLAS_TILE); /* dweight's, then dbias's */
    j->kind = J_LN_FAST;
    sb_blas_queue_init(be, &j->q, ((size_t)j->R + LN_CHUNK_ROWS - 1) / LN_CHUNK_ROWS);
    /* always on the pool: with two or more threads the add order is real
     * scheduling nondeterminism, whatever the size */
    sb_pool_run(pool, worker, j);
    free(j->scratch);
    return 1;
}

void sb_blas_layernorm_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                                const float *dout, const float *inp, const float *weight,
                                const float *mean, const float *rstd, int R, int C) {
    SB_ASSERT(R >= 0 && C >= 1);
    const size_t work = (size_t)R * (size_t)C;
    job j = {.be = be, .canonical = be->mode == SB_MODE_CANONICAL, .R = R, .C = C,
             .dw = dweight, .db = dbias, .dout = dout, .inp = inp, .weight = weight,
             .cmean = mean, .crstd = rstd};
    if (dinp) {
        j.kind = J_LN_DINP, j.out = dinp;
        run(be, &j, work);
    }
    if ((!dweight && !dbias) || R == 0) return; /* empty sums: += 0 changes nothing */
    if (be->mode == SB_MODE_FAST && ln_fast_params(be, &j)) return;
    j.kind = J_LN_PARAMS;
    run(be, &j, work);
}

/* ====================================================================== */
/* embedding                                                              */
/* ====================================================================== */

void sb_blas_embedding_forward(sb_backend *be, float *out, const float *table, const int32_t *ids,
                               int n, int V, int D) {
    SB_ASSERT(n >= 0 && V >= 1 && D >= 1);
    job j = {.kind = J_EMB_FWD, .be = be, .R = n, .C = D, .V = V, .out = out, .weight = table,
             .ids = ids};
    run(be, &j, (size_t)n * (size_t)D);
}

void sb_blas_embedding_backward(sb_backend *be, float *dtable, const float *dout,
                                const int32_t *ids, int n, int V, int D) {
    SB_ASSERT(n >= 0 && V >= 1 && D >= 1);
    if (n == 0) return;
    job j = {.be = be, .R = n, .C = D, .V = V, .dw = dtable, .dout = dout, .ids = ids};
    if (be->mode == SB_MODE_FAST) {
        j.kind = J_EMB_FAST;
        sb_blas_queue_init(be, &j.q, ((size_t)n + EMB_CHUNK_TOKENS - 1) / EMB_CHUNK_TOKENS);
        sb_pool_run(pool_of(be), worker, &j); /* always on the pool, as above */
        return;
    }
    j.kind = J_EMB_COLS;
    run(be, &j, (size_t)n * (size_t)D);
}
