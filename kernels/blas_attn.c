/* blas_attn.c — the "blas" backend's softmax, residual add and causal
 * attention, for all three modes, on the backend's pool.
 *
 * How each op is split (kernels.h states the resulting orders):
 *   softmax       rows: one contiguous row range per worker running ref's row
 *                 functions (ref_attn.c) of the mode — ref's bits for any
 *                 thread count.
 *   residual      elements: one contiguous range per worker, ref's loops.
 *   attention forward, and backward in deterministic and canonical mode
 *                 heads: workers own disjoint ranges of the B*H heads; per
 *                 head the steps of ref_attn.c with the mode's GEMM —
 *                 cblas_sgemm (OpenBLAS on ONE thread while our workers call
 *                 it, as blas.c's fast weight_grad explains; so each product
 *                 runs OpenBLAS's serial driver and the bits do not depend on
 *                 our thread count), or the canonical GEMM on the worker's
 *                 own workspace (sb_blas_canonical_gemm, the §2 order: ref's
 *                 canonical bits).
 *   attention backward, fast
 *                 UNORDERED dk, dv: work items are (head, chunk of query
 *                 rows) from the work queue; a chunk [t0, t1) computes its
 *                 datt/dpre rows and adds its dq rows directly (rows are
 *                 owned), and forms partial dk, dv over keys 0..t1-1 (rows
 *                 t0..t1-1 summed by one cblas_sgemm each) in worker scratch,
 *                 then adds them into dk and dv with sb_blas_locked_add
 *                 (tile spin locks): per element the chunks' partials land in
 *                 completion order, permuted per call when perturb is on.
 *                 Without scratch memory the deterministic split runs.
 *
 * What it is not: a fused attention kernel; att and the scratch are full
 * [T, T] per head, and the masked triangle is computed and discarded.
 */
#include "attn_internal.h"
#include "blas_internal.h"
#include "canonical.h"
#include "threadpool.h"

#include <cblas.h>
#include <stdlib.h>

#define SERIAL_BELOW 16384 /* softmax/residual on fewer elements run on the caller */
#define FAST_MIN_ROWS 4    /* fast attention backward: fewest query rows per chunk */
#define FAST_CHUNKS 4      /* ... and about this many chunks per head (>= 3 for the
                            * add order to matter: 0+a+b == 0+b+a) */

static sb_pool *pool_of(sb_backend *be) {
    return be->mode == SB_MODE_CANONICAL ? sb_blas_pool_of_canonical(be) : sb_blas_pool_of_fast(be);
}

static void split_range(size_t n, int w, int nw, size_t *lo, size_t *hi) {
    size_t q = n / (size_t)nw, r = n % (size_t)nw, uw = (size_t)w;
    *lo = uw * q + (uw < r ? uw : r);
    *hi = *lo + q + (uw < r ? 1 : 0);
}

/* ====================================================================== */
/* softmax and residual: ref's functions on ranges                        */
/* ====================================================================== */

enum ew_kind { EW_SM_FWD, EW_SM_BWD, EW_RES_FWD, EW_RES_BWD };

typedef struct ew_job {
    enum ew_kind kind;
    sb_backend *be;
    float *out, *out2;
    const float *in, *in2;
    size_t n; /* rows (softmax) or elements (residual) */
    int C;
} ew_job;

static void ew_worker(void *arg, int w, int nw) {
    ew_job *j = arg;
    size_t lo, hi;
    split_range(j->n, w, nw, &lo, &hi);
    if (hi <= lo) return;
    const size_t o = lo * (size_t)j->C;
    const int rows = (int)(hi - lo);
    switch (j->kind) {
    case EW_SM_FWD: sb_ref_softmax_forward(j->be, j->out + o, j->in + o, rows, j->C); return;
    case EW_SM_BWD:
        sb_ref_softmax_backward(j->be, j->out + o, j->in + o, j->in2 + o, rows, j->C);
        return;
    case EW_RES_FWD: sb_ref_residual_forward(j->be, j->out + lo, j->in + lo, j->in2 + lo, hi - lo); return;
    case EW_RES_BWD:
        sb_ref_residual_backward(j->be, j->out ? j->out + lo : NULL, j->out2 ? j->out2 + lo : NULL,
                                 j->in + lo, hi - lo);
        return;
    }
}

/* on the pool or the caller: disjoint ranges, the same bits either way. The
 * ref functions read only be->mode from be. */
static void ew_run(sb_backend *be, ew_job *j, size_t work) {
    sb_pool *pool = pool_of(be);
    if (work < SERIAL_BELOW || sb_pool_size(pool) == 1)
        ew_worker(j, 0, 1);
    else
        sb_pool_run(pool, ew_worker, j);
}

void sb_blas_softmax_forward(sb_backend *be, float *out, const float *inp, int R, int C) {
    SB_ASSERT(R >= 0 && C >= 1);
    ew_job j = {.kind = EW_SM_FWD, .be = be, .out = out, .in = inp, .n = (size_t)R, .C = C};
    ew_run(be, &j, (size_t)R * (size_t)C);
}

void sb_blas_softmax_backward(sb_backend *be, float *dinp, const float *dout, const float *out,
                              int R, int C) {
    SB_ASSERT(R >= 0 && C >= 1);
    ew_job j = {.kind = EW_SM_BWD, .be = be, .out = dinp, .in = dout, .in2 = out,
                .n = (size_t)R, .C = C};
    ew_run(be, &j, (size_t)R * (size_t)C);
}

void sb_blas_residual_forward(sb_backend *be, float *out, const float *a, const float *b,
                              size_t n) {
    ew_job j = {.kind = EW_RES_FWD, .be = be, .out = out, .in = a, .in2 = b, .n = n, .C = 1};
    ew_run(be, &j, n);
}

void sb_blas_residual_backward(sb_backend *be, float *da, float *db, const float *dout, size_t n) {
    SB_ASSERT(!da || da != db);
    ew_job j = {.kind = EW_RES_BWD, .be = be, .out = da, .out2 = db, .in = dout, .n = n, .C = 1};
    ew_run(be, &j, n);
}

/* ====================================================================== */
/* attention                                                              */
/* ====================================================================== */

typedef struct attn_job {
    sb_backend *be;
    int canonical, fast;
    int nwg; /* workers that run GEMMs: 0..nwg-1 */
    int T, D;
    size_t heads;
    float *out, *att, *dq, *dk, *dv, *s;
    const float *q, *k, *v, *dout, *catt;
    /* fast backward */
    sb_blas_queue queue;
    int chunk_rows, chunks_per_head;
    float *scratch;        /* [nwg][2*T*D]: partial dv, then partial dk */
    unsigned char *locks;  /* [heads][2][tiles]: dv's, then dk's */
    size_t tiles;          /* lock tiles of one head's [T, D] */
} attn_job;

typedef struct gemm_ctx {
    attn_job *j;
    int w;
} gemm_ctx;

/* The mode's GEMM, whole, on worker w: cblas_sgemm (OpenBLAS is on one
 * thread for the pool run) or the canonical engine on worker w's workspace. */
static void worker_gemm(void *ctx, int ta, int tb, int M, int N, int K, float alpha,
                        const float *A, int lda, const float *B, int ldb, float beta, float *C,
                        int ldc) {
    gemm_ctx *g = ctx;
    if (M == 0 || N == 0) return;
    if (g->j->canonical) {
        sb_canon_gemm cg = {ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
        sb_blas_canonical_gemm(g->j->be, g->w, &cg);
    } else {
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
}

static void fwd_worker(void *arg, int w, int nw) {
    (void)nw;
    attn_job *j = arg;
    if (w >= j->nwg) return;
    size_t lo, hi;
    split_range(j->heads, w, j->nwg, &lo, &hi);
    gemm_ctx g = {j, w};
    const size_t td = (size_t)j->T * (size_t)j->D, tt = (size_t)j->T * (size_t)j->T;
    for (size_t h = lo; h < hi; h++)
        sb_attn_head_forward(worker_gemm, &g, j->canonical, j->out + h * td, j->att + h * tt,
                             j->q + h * td, j->k + h * td, j->v + h * td, j->T, j->D);
}

static void bwd_worker(void *arg, int w, int nw) {
    (void)nw;
    attn_job *j = arg;
    if (w >= j->nwg) return;
    size_t lo, hi;
    split_range(j->heads, w, j->nwg, &lo, &hi);
    gemm_ctx g = {j, w};
    const int T = j->T, D = j->D;
    const size_t td = (size_t)T * (size_t)D, tt = (size_t)T * (size_t)T;
    for (size_t h = lo; h < hi; h++)
        sb_attn_head_backward_rows(worker_gemm, &g, j->canonical, j->dq + h * td, j->dk + h * td,
                                   j->dv + h * td, 1.0f, j->s + h * tt, j->dout + h * td,
                                   j->q + h * td, j->k + h * td, j->v + h * td, j->catt + h * tt,
                                   T, D, 0, T, T);
}

/* Fast: (head, query-row chunk) items from the queue until it is empty. */
static void bwd_fast_worker(void *arg, int w, int nw) {
    attn_job *j = arg;
    if (w >= j->nwg) return;
    gemm_ctx g = {j, w};
    const int T = j->T, D = j->D;
    const size_t td = (size_t)T * (size_t)D, tt = (size_t)T * (size_t)T;
    float *pv = j->scratch + (size_t)w * 2 * td, *pk = pv + td;
    size_t item;
    while ((item = sb_blas_queue_take(&j->queue)) != (size_t)-1) {
        size_t h = item / (size_t)j->chunks_per_head;
        int t0 = (int)(item % (size_t)j->chunks_per_head) * j->chunk_rows;
        int t1 = T - t0 < j->chunk_rows ? T : t0 + j->chunk_rows;
        /* keys 0..t1-1: every key these rows see (later keys get exact zeros) */
        sb_attn_head_backward_rows(worker_gemm, &g, 0, j->dq + h * td, pk, pv, 0.0f, j->s + h * tt,
                                   j->dout + h * td, j->q + h * td, j->k + h * td, j->v + h * td,
                                   j->catt + h * tt, T, D, t0, t1, t1);
        const size_t n = (size_t)t1 * (size_t)D, start = n / (size_t)nw * (size_t)w;
        unsigned char *lv = j->locks ? j->locks + h * 2 * j->tiles : NULL;
        sb_blas_locked_add(j->dv + h * td, pv, n, lv, start);
        sb_blas_locked_add(j->dk + h * td, pk, n, lv ? lv + j->tiles : NULL, start);
    }
}

/* How many workers may run GEMMs: OpenBLAS's buffer table bounds
 * concurrent SGEMM callers; canonical mode needs a workspace per worker. */
static int gemm_workers(sb_backend *be, int canonical) {
    int nw = sb_pool_size(pool_of(be));
    if (canonical) return sb_blas_canonical_workers(be, nw);
    return nw < SB_BLAS_MAX_SGEMM_WORKERS ? nw : SB_BLAS_MAX_SGEMM_WORKERS;
}

/* Runs fn on the pool with OpenBLAS on one thread (restored after the pool
 * has joined), or directly in canonical mode (no OpenBLAS call). */
static void attn_run(sb_backend *be, attn_job *j, sb_pool_fn fn) {
    sb_pool *pool = pool_of(be);
    if (j->canonical) {
        sb_pool_run(pool, fn, j);
        return;
    }
    int saved = openblas_get_num_threads();
    if (saved != 1) openblas_set_num_threads(1);
    sb_pool_run(pool, fn, j);
    if (saved != 1) openblas_set_num_threads(saved);
}

void sb_blas_attention_forward(sb_backend *be, float *out, float *att, const float *q,
                               const float *k, const float *v, int B, int H, int T, int D) {
    SB_ASSERT(B >= 0 && H >= 0 && T >= 1 && D >= 1);
    attn_job j = {.be = be, .canonical = be->mode == SB_MODE_CANONICAL, .T = T, .D = D,
                  .heads = (size_t)B * (size_t)H, .out = out, .att = att, .q = q, .k = k, .v = v};
    if (j.heads == 0) return;
    j.nwg = gemm_workers(be, j.canonical);
    attn_run(be, &j, fwd_worker);
}

/* 0 when scratch could not be had (the caller then takes the ordered path). */
static int bwd_fast(sb_backend *be, attn_job *j) {
    const size_t td = (size_t)j->T * (size_t)j->D;
    j->scratch = malloc((size_t)j->nwg * 2 * td * sizeof(float));
    if (!j->scratch) return 0;
    j->tiles = (td + SB_BLAS_TILE - 1) / SB_BLAS_TILE;
    j->locks = sb_blas_tile_locks(be, j->heads * 2 * j->tiles * SB_BLAS_TILE);
    j->chunk_rows = (j->T + FAST_CHUNKS - 1) / FAST_CHUNKS;
    if (j->chunk_rows < FAST_MIN_ROWS) j->chunk_rows = FAST_MIN_ROWS;
    j->chunks_per_head = (j->T + j->chunk_rows - 1) / j->chunk_rows;
    sb_blas_queue_init(be, &j->queue, j->heads * (size_t)j->chunks_per_head);
    /* always on the pool: with two or more threads the add order is real
     * scheduling nondeterminism, whatever the size */
    attn_run(be, j, bwd_fast_worker);
    free(j->scratch);
    return 1;
}

void sb_blas_attention_backward(sb_backend *be, float *dq, float *dk, float *dv, float *scratch,
                                const float *dout, const float *q, const float *k, const float *v,
                                const float *att, int B, int H, int T, int D) {
    SB_ASSERT(B >= 0 && H >= 0 && T >= 1 && D >= 1);
    attn_job j = {.be = be, .canonical = be->mode == SB_MODE_CANONICAL, .T = T, .D = D,
                  .heads = (size_t)B * (size_t)H, .dq = dq, .dk = dk, .dv = dv, .s = scratch,
                  .dout = dout, .q = q, .k = k, .v = v, .catt = att};
    if (j.heads == 0) return;
    j.nwg = gemm_workers(be, j.canonical);
    if (be->mode == SB_MODE_FAST && bwd_fast(be, &j)) return;
    attn_run(be, &j, bwd_worker);
}
