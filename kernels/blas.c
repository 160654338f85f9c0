/* blas.c — the "blas" backend: OpenBLAS SGEMM, everything else multithreaded C
 * over a persistent pool of `threads` workers (threadpool.h; the calling
 * thread is worker 0).
 *
 * How each op is computed, and what that means for its bits:
 *
 *   gemm          cblas_sgemm, row-major, with OpenBLAS set to `threads`
 *                 threads. Same call in both modes: the K-order inside is
 *                 OpenBLAS's (kernel- and core-dependent), so it differs from
 *                 ref within rounding; repeat calls with the same thread count
 *                 and core are expected to agree (the tests check it). It is
 *                 NOT independent of the thread count in general: OpenBLAS
 *                 0.3.21 runs a call on one thread through its serial level-3
 *                 driver and on two or more through its threaded driver, and
 *                 the two cut a reduction longer than GEMM_Q (448 on
 *                 SkylakeX) into K-blocks differently (the serial one rounds
 *                 the halved remainder up to a multiple of GEMM_UNROLL_M, the
 *                 threaded one does not), and OpenBLAS threads a call only
 *                 when M*N*K > 2^18. Observed here: the MLP's first-layer
 *                 forward, [64,784]·[784,256], gives different bits on 1 and
 *                 2 threads (13180 of 16384 outputs); K <= 448 never did, nor
 *                 did 2 vs 3, 4 or 5 threads.
 *   bias_add, act_forward, act_backward, xent_backward, sgd_update,
 *   adam_update, dropout_forward, dropout_backward
 *                 elementwise, no reduction: a static partition of the
 *                 elements (or rows) into one contiguous range per worker.
 *                 Except xent_backward (one line, below) they call the "ref"
 *                 backend's own scalar loops on their range (ref.c is
 *                 reentrant), so they equal ref bit for bit in every mode and
 *                 for every thread count.
 *   bias_grad, the loss of xent_forward, weight_grad
 *                 reductions over the batch; their order depends on the mode:
 *
 *   deterministic: the batch is cut into fixed chunks of DET_CHUNK_ROWS rows
 *     (chunk c = rows [64c, 64c+64)), independent of the thread count.
 *     bias_grad: per column, each chunk's rows are summed in increasing row
 *       order from 0.0f, the chunk partials are summed in increasing chunk
 *       order from 0.0f, and that total is added to dbias[j] once. Workers own
 *       disjoint column ranges, so no two threads touch one column.
 *     loss: each chunk's row losses are summed in increasing row order from
 *       0.0f (workers own disjoint chunk ranges); the chunk partials are then
 *       summed in increasing chunk order from 0.0f on the calling thread and
 *       divided by B.
 *     Neither order depends on the thread count, so these two ops give the
 *     same bits for any thread count (more than the mode promises; the
 *     softmax rows themselves are ref's, bit for bit).
 *     weight_grad: one cblas_sgemm (row-major, dout transposed, beta 0) over
 *       the whole batch on OpenBLAS's `threads` threads — the order inside is
 *       OpenBLAS's, fixed for a fixed build, core and thread count, exactly
 *       as for gemm above (so it may depend on the thread count once B
 *       exceeds GEMM_Q; an MLP's batch of 64 does not). It is on the
 *       training hot path, so it is nothing more than that call.
 *
 *   fast: the batch is cut into chunks of FAST_CHUNK_ROWS rows handed out by
 *     an atomic counter (a dynamic work queue). A worker sums its chunk's rows
 *     in increasing order from 0.0f, then atomically adds that partial (a CAS
 *     loop on the float) straight into dbias[j] (bias_grad) or into the loss
 *     accumulator (xent_forward, divided by B at the end).
 *     weight_grad zeroes dW, then takes chunks of max(WG_CHUNK_ROWS, B/WG_CHUNKS) rows from the
 *     same kind of queue; a worker computes its chunk's partial dW with one
 *     cblas_sgemm (K = the chunk's rows) into its own scratch buffer and adds
 *     it into dW tile by tile, each tile of WG_TILE floats under its own spin
 *     lock (element-by-element atomic adds when the locks cannot be had).
 *     The order of those atomic adds is the order in which chunks finish —
 *     UNORDERED, decided by the OS scheduler, as with GPU atomics. The bias
 *     gradient, the weight gradient and the loss are the only unordered
 *     reductions in this backend. (One exception: on one thread without
 *     perturb, weight_grad is the deterministic mode's single SGEMM — one
 *     worker finishes the chunks in queue order every time, so chunking
 *     would only pick another fixed order, at about three times the cost.)
 *     With perturb on (fast mode only), the k-th chunk taken from the queue is
 *     chunk (a*k + b) mod nchunks, with a (coprime to nchunks) and b drawn per
 *     call from the backend's xorshift generator, which is seeded from
 *     getrandom() when the backend is created. Because the atomic adds follow
 *     the order chunks are taken, the float sum order changes from call to
 *     call even on one thread (given at least two chunks, i.e. B > 4; B > 8
 *     for weight_grad).
 *
 * OpenBLAS from our own workers (fast weight_grad). OpenBLAS's thread count
 * is process-wide, and its threaded level-3 driver is not meant to be
 * entered by several application threads at once: 0.3.21 serialises such
 * callers on one mutex (gemm_driver's level3_lock) while its own helper
 * threads compete with ours for the cores. Its USAGE notes say a
 * multithreaded application must set OpenBLAS to one thread. So the fast
 * path sets openblas_set_num_threads(1) on the calling thread before the
 * pool runs and restores the previous count after the pool has joined (both
 * outside any worker). With one thread, 0.3.21's cblas_sgemm runs its serial
 * driver on the calling thread with a buffer from blas_memory_alloc, whose
 * buffer table is guarded by a lock in SMP (pthread) builds — the kind
 * Debian ships and sb_blas_info reports as parallel=pthread — so concurrent
 * calls from our workers are independent. That table holds 2 * MAX_THREADS
 * buffers (128 in Debian's build), so at most WG_MAX_WORKERS workers call
 * SGEMM at once; the rest of a larger pool sits that op out. Nothing else
 * may call OpenBLAS while the fast path runs (one backend serves one caller
 * thread at a time, below).
 *
 * Convolution and pooling are in blas_conv.c (im2col + this backend's gemm;
 * fast mode's unordered conv weight/bias gradients use the work queue,
 * atomic adds and tile locks below, exported through blas_internal.h).
 * Layer norm and embedding are in blas_norm.c (fast mode's layer-norm
 * parameter gradients and embedding scatter-add use the same helpers), batch
 * norm in blas_batchnorm.c (its fast-mode per-channel sums likewise).
 * Softmax, residual add and attention are in blas_attn.c (fast mode's
 * unordered dk/dv use the queue and the tile-locked add). The GRU cell step
 * is in blas_gru.c (rows on the pool, no reduction).
 *
 * Canonical mode is not here: sb_blas_init hands it to blas_canonical.c.
 *
 * The pool also runs host work between ops for the engine (host_parallel:
 * tracing's chunked tensor hashes, whose values never depend on it).
 *
 * What it deliberately is not: a tuned CPU backend. Scheduling is simple,
 * small ops run on the calling thread only (the result does not depend on
 * that), and one backend instance serves one caller thread at a time.
 */
#include "attn_internal.h"
#include "blas_internal.h"
#include "canonical.h"
#include "gru_internal.h"
#include "kernels.h"
#include "threadpool.h"

#include <cblas.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define DET_CHUNK_ROWS 64  /* deterministic: rows per chunk of a batch reduction */
#define FAST_CHUNK_ROWS 4  /* fast: rows per work-queue item */
#define WG_CHUNK_ROWS 8    /* fast weight_grad: fewest batch rows per work-queue item */
#define WG_CHUNKS 4        /* fast weight_grad: the batch is cut into about this many chunks
                            * (at least 3 are needed for the add order to matter: with two,
                            * 0+a+b == 0+b+a; fewer, longer chunks keep each SGEMM efficient) */
#define WG_MAX_WORKERS SB_BLAS_MAX_SGEMM_WORKERS /* fast weight_grad: most SGEMM callers */
#define COL_TILE 64        /* columns summed together, for memory locality only */
#define SERIAL_BELOW 16384 /* elementwise ops on fewer elements run on the caller */

typedef struct blas_ctx {
    sb_pool *pool;
    sb_backend *ref;    /* the scalar loops the elementwise ops run on ranges */
    uint64_t rng;       /* xorshift64 state, only used when perturb is on */
    float *partials;    /* deterministic loss: one partial per chunk */
    size_t partials_cap;
    /* fast weight_grad: worker w's partial dW, [N*K] floats. Slot w is only
     * ever read, grown or written by worker w during a pool run, so the
     * workers need no lock; freed with the backend. */
    float **wg_scratch; /* [pool size] */
    size_t *wg_cap;     /* [pool size] floats allocated in wg_scratch[w] */
    unsigned char *wg_locks; /* fast weight_grad: one spin lock per tile of dW */
    size_t wg_locks_cap;
    sb_blas_conv *conv; /* conv/pool scratch (blas_conv.c) */
} blas_ctx;

static blas_ctx *ctx_of(sb_backend *be) { return (blas_ctx *)be->ctx; }

/* ====================================================================== */
/* helpers                                                                */
/* ====================================================================== */

/* Worker w's share [lo, hi) of n items, contiguous, sizes differing by <= 1. */
static void split_range(size_t n, int w, int nw, size_t *lo, size_t *hi) {
    size_t q = n / (size_t)nw, r = n % (size_t)nw, uw = (size_t)w;
    *lo = uw * q + (uw < r ? uw : r);
    *hi = *lo + q + (uw < r ? 1 : 0);
}

/* Runs fn on the whole pool, or on the caller alone when the work is small;
 * every op's result is independent of which of the two happens. */
static void run(blas_ctx *cx, sb_pool_fn fn, void *arg, size_t work) {
    if (work < SERIAL_BELOW || sb_pool_size(cx->pool) == 1)
        fn(arg, 0, 1);
    else
        sb_pool_run(cx->pool, fn, arg);
}

/* dst += v as one atomic read-modify-write (compare-and-swap on the float's
 * bits; a NaN compares equal to itself bitwise, so the loop ends). */
static void atomic_add_float(float *dst, float v) {
    float old, upd;
    __atomic_load(dst, &old, __ATOMIC_RELAXED);
    do {
        upd = old + v;
    } while (!__atomic_compare_exchange(dst, &old, &upd, 1, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED));
}

static uint64_t xorshift64(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static size_t gcd(size_t a, size_t b) {
    while (b) {
        size_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* The fast-mode work queue: chunk k taken from the counter is chunk
 * (mul*k + add) mod n; identity unless perturb is on. */
typedef sb_blas_queue work_queue; /* blas_internal.h */

static void queue_init(blas_ctx *cx, work_queue *q, size_t nchunks, int perturb) {
    atomic_init(&q->next, 0);
    q->n = nchunks;
    q->mul = 1;
    q->add = 0;
    if (perturb && nchunks > 1) {
        do
            q->mul = 1 + (size_t)(xorshift64(&cx->rng) % (nchunks - 1));
        while (gcd(q->mul, nchunks) != 1);
        q->add = (size_t)(xorshift64(&cx->rng) % nchunks);
    }
}

/* Next chunk index, or (size_t)-1 when the queue is empty. */
static size_t queue_take(work_queue *q) {
    size_t k = atomic_fetch_add_explicit(&q->next, 1, memory_order_relaxed);
    if (k >= q->n) return (size_t)-1;
    /* mul, k, add < n <= B < 2^31 (B is an int), so mul*k + add < 2^63 */
    return (q->mul * k + q->add) % q->n;
}

/* The helpers blas_conv.c shares (blas_internal.h). */
void sb_blas_queue_init(sb_backend *be, sb_blas_queue *q, size_t nchunks) {
    queue_init(ctx_of(be), q, nchunks, be->perturb);
}
size_t sb_blas_queue_take(sb_blas_queue *q) { return queue_take(q); }
void sb_blas_atomic_add(float *dst, float v) { atomic_add_float(dst, v); }
sb_blas_conv *sb_blas_conv_of_fast(sb_backend *be) { return ctx_of(be)->conv; }
sb_pool *sb_blas_pool_of_fast(sb_backend *be) { return ctx_of(be)->pool; }

static void blas_host_parallel(sb_backend *be, sb_pool_fn fn, void *arg) {
    sb_pool_run(ctx_of(be)->pool, fn, arg);
}

unsigned char *sb_blas_tile_locks(sb_backend *be, size_t floats) {
    blas_ctx *cx = ctx_of(be);
    size_t tiles = (floats + SB_BLAS_TILE - 1) / SB_BLAS_TILE;
    if (tiles > cx->wg_locks_cap) {
        unsigned char *l = realloc(cx->wg_locks, tiles);
        if (!l) return NULL;
        cx->wg_locks = l;
        cx->wg_locks_cap = tiles;
    }
    if (tiles) memset(cx->wg_locks, 0, tiles);
    return cx->wg_locks;
}

void sb_blas_locked_add(float *dst, const float *part, size_t n, unsigned char *locks,
                        size_t start) {
    if (locks) {
        size_t tiles = (n + SB_BLAS_TILE - 1) / SB_BLAS_TILE, t0 = start / SB_BLAS_TILE;
        for (size_t tt = 0; tt < tiles; tt++) {
            size_t tile = (t0 + tt) % tiles;
            size_t lo = tile * SB_BLAS_TILE, hi = lo + SB_BLAS_TILE < n ? lo + SB_BLAS_TILE : n;
            while (__atomic_test_and_set(&locks[tile], __ATOMIC_ACQUIRE)) {
            }
            for (size_t i = lo; i < hi; i++) dst[i] = dst[i] + part[i];
            __atomic_clear(&locks[tile], __ATOMIC_RELEASE);
        }
    } else {
        for (size_t i = start; i < n; i++) atomic_add_float(&dst[i], part[i]);
        for (size_t i = 0; i < start && i < n; i++) atomic_add_float(&dst[i], part[i]);
    }
}

/* ====================================================================== */
/* GEMM                                                                   */
/* ====================================================================== */

static void blas_gemm(sb_backend *be, int transA, int transB, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb, float beta, float *C,
                      int ldc) {
    /* the same stride rules ref.c asserts; cblas would print and skip instead */
    SB_ASSERT(M >= 0 && N >= 0 && K >= 0);
    SB_ASSERT(lda >= 1 && ldb >= 1 && ldc >= 1);
    SB_ASSERT(lda >= (transA ? M : K) && ldb >= (transB ? K : N) && ldc >= N);
    if (M == 0 || N == 0) return;
    /* OpenBLAS's thread count is process-wide; another backend instance may
     * have changed it since ours was created */
    if (openblas_get_num_threads() != be->threads) openblas_set_num_threads(be->threads);
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

/* ====================================================================== */
/* elementwise ops: ref's loops on static ranges                          */
/* ====================================================================== */

typedef struct ew_job {
    sb_backend *ref;
    sb_act act;
    float *out, *out2, *out3;
    const float *in, *in2;
    const int32_t *labels;
    size_t n; /* elements, or rows for the row ops */
    int cols;
    float f[6];
    int t;
} ew_job;

static void act_forward_worker(void *arg, int w, int nw) {
    ew_job *j = arg;
    size_t lo, hi;
    split_range(j->n, w, nw, &lo, &hi);
    if (hi > lo) j->ref->i->act_forward(j->ref, j->act, j->out + lo, j->in + lo, hi - lo);
}

static void blas_act_forward(sb_backend *be, sb_act act, float *out, const float *inp, size_t n) {
    blas_ctx *cx = ctx_of(be);
    ew_job j = {.ref = cx->ref, .act = act, .out = out, .in = inp, .n = n};
    run(cx, act_forward_worker, &j, n);
}

static void act_backward_worker(void *arg, int w, int nw) {
    ew_job *j = arg;
    size_t lo, hi;
    split_range(j->n, w, nw, &lo, &hi);
    if (hi > lo)
        j->ref->i->act_backward(j->ref, j->act, j->out + lo, j->in + lo, j->in2 + lo, hi - lo);
}

static void blas_act_backward(sb_backend *be, sb_act act, float *dinp, const float *dout,
                              const float *inp, size_t n) {
    blas_ctx *cx = ctx_of(be);
    ew_job j = {.ref = cx->ref, .act = act, .out = dinp, .in = dout, .in2 = inp, .n = n};
    run(cx, act_backward_worker, &j, n);
}

static void bias_add_worker(void *arg, int w, int nw) {
    ew_job *j = arg;
    size_t lo, hi;
    split_range(j->n, w, nw, &lo, &hi);
    if (hi > lo)
        j->ref->i->bias_add(j->ref, j->out + lo * (size_t)j->cols, j->in, (int)(hi - lo), j->cols);
}

static void blas_bias_add(sb_backend *be, float *out, const float *bias, int B, int N) {
    blas_ctx *cx = ctx_of(be);
    ew_job j = {.ref = cx->ref, .out = out, .in = bias, .n = (size_t)B, .cols = N};
    run(cx, bias_add_worker, &j, (size_t)B * (size_t)N);
}

/* The same expression as ref_xent_backward; it cannot call ref on a row range
 * because ref divides by its own B argument. */
static void xent_backward_worker(void *arg, int w, int nw) {
    ew_job *j = arg;
    size_t lo, hi;
    split_range(j->n, w, nw, &lo, &hi);
    float fB = (float)j->n;
    for (size_t b = lo; b < hi; b++) {
        int32_t label = j->labels[b];
        SB_ASSERT(label >= 0 && label < j->cols);
        float *d = j->out + b * (size_t)j->cols;
        const float *p = j->in + b * (size_t)j->cols;
        for (int c = 0; c < j->cols; c++) {
            float y = c == label ? 1.0f : 0.0f;
            d[c] = d[c] + (p[c] - y) / fB;
        }
    }
}

static void blas_xent_backward(sb_backend *be, float *dlogits, const float *probs,
                               const int32_t *labels, int B, int C) {
    blas_ctx *cx = ctx_of(be);
    ew_job j = {.out = dlogits, .in = probs, .labels = labels, .n = (size_t)B, .cols = C};
    run(cx, xent_backward_worker, &j, (size_t)B * (size_t)C);
}

static void sgd_worker(void *arg, int w, int nw) {
    ew_job *j = arg;
    size_t lo, hi;
    split_range(j->n, w, nw, &lo, &hi);
    if (hi > lo)
        j->ref->i->sgd_update(j->ref, j->out + lo, j->out2 + lo, j->in + lo, hi - lo, j->f[0],
                              j->f[1], j->f[2]);
}

static void blas_sgd_update(sb_backend *be, float *w, float *mom, const float *g, size_t n,
                            float lr, float momentum, float weight_decay) {
    blas_ctx *cx = ctx_of(be);
    ew_job j = {.ref = cx->ref, .out = w, .out2 = mom, .in = g, .n = n,
                .f = {lr, momentum, weight_decay}};
    run(cx, sgd_worker, &j, n);
}

static void adam_worker(void *arg, int w, int nw) {
    ew_job *j = arg;
    size_t lo, hi;
    split_range(j->n, w, nw, &lo, &hi);
    if (hi > lo)
        j->ref->i->adam_update(j->ref, j->out + lo, j->out2 + lo, j->out3 + lo, j->in + lo,
                               hi - lo, j->f[0], j->f[1], j->f[2], j->f[3], j->f[4], j->t);
}

static void blas_adam_update(sb_backend *be, float *w, float *m, float *v, const float *g,
                             size_t n, float lr, float beta1, float beta2, float eps,
                             float weight_decay, int t) {
    blas_ctx *cx = ctx_of(be);
    ew_job j = {.ref = cx->ref, .out = w, .out2 = m, .out3 = v, .in = g, .n = n,
                .f = {lr, beta1, beta2, eps, weight_decay}, .t = t};
    run(cx, adam_worker, &j, n);
}

static void dropout_forward_worker(void *arg, int w, int nw) {
    ew_job *j = arg;
    size_t lo, hi;
    split_range(j->n, w, nw, &lo, &hi);
    if (hi > lo)
        j->ref->i->dropout_forward(j->ref, j->out + lo, j->in + lo, j->in2 + lo, hi - lo, j->f[0]);
}

static void blas_dropout_forward(sb_backend *be, float *out, const float *inp, const float *mask,
                                 size_t n, float scale) {
    blas_ctx *cx = ctx_of(be);
    ew_job j = {.ref = cx->ref, .out = out, .in = inp, .in2 = mask, .n = n, .f = {scale}};
    run(cx, dropout_forward_worker, &j, n);
}

static void dropout_backward_worker(void *arg, int w, int nw) {
    ew_job *j = arg;
    size_t lo, hi;
    split_range(j->n, w, nw, &lo, &hi);
    if (hi > lo)
        j->ref->i->dropout_backward(j->ref, j->out + lo, j->in + lo, j->in2 + lo, hi - lo, j->f[0]);
}

static void blas_dropout_backward(sb_backend *be, float *dinp, const float *dout,
                                  const float *mask, size_t n, float scale) {
    blas_ctx *cx = ctx_of(be);
    ew_job j = {.ref = cx->ref, .out = dinp, .in = dout, .in2 = mask, .n = n, .f = {scale}};
    run(cx, dropout_backward_worker, &j, n);
}

/* ====================================================================== */
/* bias_grad: a reduction over the batch                                  */
/* ====================================================================== */

typedef struct bias_grad_job {
    float *dbias;
    const float *dout;
    int B, N;
    work_queue q; /* fast mode */
} bias_grad_job;

/* Deterministic: worker w owns columns [lo, hi). Order per column (see the
 * header): rows within a 64-row chunk in increasing order from 0.0f, chunk
 * partials in increasing chunk order from 0.0f, then dbias[j] += total. The
 * COL_TILE tiling only changes which columns are in flight together. */
static void bias_grad_det_worker(void *arg, int w, int nw) {
    bias_grad_job *j = arg;
    size_t lo, hi;
    split_range((size_t)j->N, w, nw, &lo, &hi);
    for (size_t c0 = lo; c0 < hi; c0 += COL_TILE) {
        size_t width = hi - c0 < COL_TILE ? hi - c0 : COL_TILE;
        float total[COL_TILE], part[COL_TILE];
        for (size_t c = 0; c < width; c++) total[c] = 0.0f;
        for (int r0 = 0; r0 < j->B; r0 += DET_CHUNK_ROWS) {
            int r1 = j->B - r0 < DET_CHUNK_ROWS ? j->B : r0 + DET_CHUNK_ROWS;
            for (size_t c = 0; c < width; c++) part[c] = 0.0f;
            for (int r = r0; r < r1; r++) {
                const float *row = j->dout + (size_t)r * (size_t)j->N + c0;
                for (size_t c = 0; c < width; c++) part[c] += row[c];
            }
            for (size_t c = 0; c < width; c++) total[c] += part[c];
        }
        for (size_t c = 0; c < width; c++) j->dbias[c0 + c] = j->dbias[c0 + c] + total[c];
    }
}

/* Fast: chunks of FAST_CHUNK_ROWS rows from the work queue; each chunk's
 * per-column partial (rows in increasing order from 0.0f) is atomically added
 * into dbias in completion order — the unordered reduction. */
static void bias_grad_fast_worker(void *arg, int w, int nw) {
    (void)w;
    (void)nw;
    bias_grad_job *j = arg;
    size_t chunk;
    while ((chunk = queue_take(&j->q)) != (size_t)-1) {
        int r0 = (int)chunk * FAST_CHUNK_ROWS;
        int r1 = j->B - r0 < FAST_CHUNK_ROWS ? j->B : r0 + FAST_CHUNK_ROWS;
        for (int c0 = 0; c0 < j->N; c0 += COL_TILE) {
            int width = j->N - c0 < COL_TILE ? j->N - c0 : COL_TILE;
            float part[COL_TILE];
            for (int c = 0; c < width; c++) part[c] = 0.0f;
            for (int r = r0; r < r1; r++) {
                const float *row = j->dout + (size_t)r * (size_t)j->N + (size_t)c0;
                for (int c = 0; c < width; c++) part[c] += row[c];
            }
            for (int c = 0; c < width; c++) atomic_add_float(&j->dbias[c0 + c], part[c]);
        }
    }
}

static void blas_bias_grad(sb_backend *be, float *dbias, const float *dout, int B, int N) {
    blas_ctx *cx = ctx_of(be);
    if (B <= 0 || N <= 0) return;
    bias_grad_job j = {.dbias = dbias, .dout = dout, .B = B, .N = N};
    if (be->mode == SB_MODE_DETERMINISTIC) {
        run(cx, bias_grad_det_worker, &j, (size_t)B * (size_t)N);
    } else {
        size_t nchunks = ((size_t)B + FAST_CHUNK_ROWS - 1) / FAST_CHUNK_ROWS;
        queue_init(cx, &j.q, nchunks, be->perturb);
        /* always on the pool: with two or more threads the add order is real
         * scheduling nondeterminism, whatever the size */
        sb_pool_run(cx->pool, bias_grad_fast_worker, &j);
    }
}

/* ====================================================================== */
/* xent_forward: rows are ref's; the loss is a reduction over the batch   */
/* ====================================================================== */

typedef struct xent_job {
    sb_backend *ref;
    float *probs;
    const float *logits;
    const int32_t *labels;
    int B, C;
    size_t nchunks;
    size_t rows_per_chunk;
    float *partials;  /* deterministic: [nchunks] */
    work_queue q;     /* fast */
    float acc;        /* fast: atomically accumulated sum of row losses */
} xent_job;

/* Softmax of the rows of one chunk (ref's code, one row at a time: with B = 1
 * ref's loss is the row loss exactly) and the chunk's partial: row losses in
 * increasing row order from 0.0f. */
static float xent_chunk(xent_job *j, size_t chunk) {
    size_t r0 = chunk * j->rows_per_chunk;
    size_t r1 = r0 + j->rows_per_chunk < (size_t)j->B ? r0 + j->rows_per_chunk : (size_t)j->B;
    float part = 0.0f;
    for (size_t r = r0; r < r1; r++) {
        size_t off = r * (size_t)j->C;
        float row_loss;
        j->ref->i->xent_forward(j->ref, j->probs + off, &row_loss, j->logits + off,
                                j->labels + r, 1, j->C);
        part += row_loss;
    }
    return part;
}

static void xent_det_worker(void *arg, int w, int nw) {
    xent_job *j = arg;
    size_t lo, hi;
    split_range(j->nchunks, w, nw, &lo, &hi);
    for (size_t c = lo; c < hi; c++) j->partials[c] = xent_chunk(j, c);
}

static void xent_fast_worker(void *arg, int w, int nw) {
    (void)w;
    (void)nw;
    xent_job *j = arg;
    size_t chunk;
    while ((chunk = queue_take(&j->q)) != (size_t)-1) atomic_add_float(&j->acc, xent_chunk(j, chunk));
}

static void blas_xent_forward(sb_backend *be, float *probs, float *loss, const float *logits,
                              const int32_t *labels, int B, int C) {
    blas_ctx *cx = ctx_of(be);
    SB_ASSERT(B >= 1 && C >= 1);
    xent_job j = {.ref = cx->ref, .probs = probs, .logits = logits, .labels = labels,
                  .B = B, .C = C};
    if (be->mode == SB_MODE_DETERMINISTIC) {
        j.rows_per_chunk = DET_CHUNK_ROWS;
        j.nchunks = ((size_t)B + DET_CHUNK_ROWS - 1) / DET_CHUNK_ROWS;
        if (j.nchunks > cx->partials_cap) {
            float *p = realloc(cx->partials, j.nchunks * sizeof *p);
            if (p) {
                cx->partials = p;
                cx->partials_cap = j.nchunks;
            }
        }
        /* Reduction: chunk partials summed in increasing chunk order from
         * 0.0f, then divided by B. Without scratch memory the chunks are
         * computed here one after the other: the same order, the same bits. */
        float s = 0.0f;
        if (j.nchunks <= cx->partials_cap) {
            j.partials = cx->partials;
            run(cx, xent_det_worker, &j, (size_t)B * (size_t)C);
            for (size_t c = 0; c < j.nchunks; c++) s += j.partials[c];
        } else {
            for (size_t c = 0; c < j.nchunks; c++) s += xent_chunk(&j, c);
        }
        *loss = s / (float)B;
    } else {
        j.rows_per_chunk = FAST_CHUNK_ROWS;
        j.nchunks = ((size_t)B + FAST_CHUNK_ROWS - 1) / FAST_CHUNK_ROWS;
        j.acc = 0.0f;
        queue_init(cx, &j.q, j.nchunks, be->perturb);
        sb_pool_run(cx->pool, xent_fast_worker, &j);
        /* unordered: acc holds the chunk partials in completion order */
        *loss = j.acc / (float)B;
    }
}

/* ====================================================================== */
/* weight_grad: dW[N,K] = dout[B,N]^T · inp[B,K], a reduction over B      */
/* ====================================================================== */

#define WG_TILE SB_BLAS_TILE /* fast weight_grad: floats of dW under one lock */

typedef struct wgrad_job {
    blas_ctx *cx;
    float *dW;
    const float *dout, *inp;
    size_t B, N, K;
    size_t chunk_rows;    /* batch rows per work-queue item */
    work_queue q;
    unsigned char *locks; /* [ceil(N*K / WG_TILE)], NULL: atomic adds per element */
} wgrad_job;

/* Worker w's scratch, grown to n floats; NULL when memory is short. Only
 * worker w touches slot w (see blas_ctx), so this needs no lock. */
static float *worker_scratch(blas_ctx *cx, int w, size_t n) {
    if (cx->wg_cap[w] < n) {
        free(cx->wg_scratch[w]);
        cx->wg_scratch[w] = n <= SIZE_MAX / sizeof(float) ? malloc(n * sizeof(float)) : NULL;
        cx->wg_cap[w] = cx->wg_scratch[w] ? n : 0;
    }
    return cx->wg_scratch[w];
}

/* Fast: take chunks of j->chunk_rows batch rows until the queue is empty.
 * Per chunk, part[N,K] = dout[rows,N]^T · inp[rows,K] by one SGEMM (OpenBLAS
 * is on one thread for the whole run, see the header), then every element is
 * atomically added into dW — per element, the chunks' adds land in
 * completion order, the unordered reduction. Without scratch memory the
 * chunk's partial is computed element by element instead (rows in increasing
 * order from 0.0f), each added atomically as soon as it is done: the same
 * kind of unordered sum, slower. */
static void wgrad_fast_worker(void *arg, int w, int nw) {
    (void)nw;
    wgrad_job *j = arg;
    if (w >= WG_MAX_WORKERS) return; /* OpenBLAS's buffer table is finite */
    const size_t N = j->N, K = j->K, nk = N * K;
    float *part = worker_scratch(j->cx, w, nk);
    size_t chunk;
    while ((chunk = queue_take(&j->q)) != (size_t)-1) {
        size_t r0 = chunk * j->chunk_rows;
        size_t rows = j->B - r0 < j->chunk_rows ? j->B - r0 : j->chunk_rows;
        const float *g = j->dout + r0 * N, *x = j->inp + r0 * K;
        if (part) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)N, (int)K, (int)rows, 1.0f,
                        g, (int)N, x, (int)K, 0.0f, part, (int)K);
            /* start where worker w's share of dW begins and wrap around, so
             * that workers sweeping at the same time are not all fighting
             * for the same cache lines (every element still gets every
             * chunk's partial exactly once) */
            size_t start = nk / (size_t)nw * (size_t)w;
            /* tile by tile under the tile's spin lock: per element the
             * chunks' partials land in the order workers get the lock —
             * the completion order, as with per-element atomics, at a
             * fraction of their cost */
            sb_blas_locked_add(j->dW, part, nk, j->locks, start);
        } else {
            for (size_t n = 0; n < N; n++) {
                for (size_t k = 0; k < K; k++) {
                    float s = 0.0f;
                    for (size_t r = 0; r < rows; r++) s += g[r * N + n] * x[r * K + k];
                    atomic_add_float(&j->dW[n * K + k], s);
                }
            }
        }
    }
}

static void blas_weight_grad(sb_backend *be, float *dW, const float *dout, const float *inp, int B,
                             int N, int K) {
    blas_ctx *cx = ctx_of(be);
    SB_ASSERT(B >= 0 && N >= 0 && K >= 0);
    if (N == 0 || K == 0) return;
    if (B == 0) { /* an empty sum: +0.0f everywhere, as ref */
        cx->ref->i->zero(cx->ref, dW, (size_t)N * (size_t)K);
        return;
    }
    if (be->mode == SB_MODE_DETERMINISTIC || (be->threads == 1 && !be->perturb)) {
        /* Order: OpenBLAS's, for this build, core and thread count (header);
         * fast mode on one thread without perturb too (header) */
        blas_gemm(be, 1, 0, N, K, B, 1.0f, dout, N, inp, K, 0.0f, dW, K);
        return;
    }
    wgrad_job j = {.cx = cx, .dW = dW, .dout = dout, .inp = inp,
                   .B = (size_t)B, .N = (size_t)N, .K = (size_t)K};
    cx->ref->i->zero(cx->ref, dW, (size_t)N * (size_t)K);
    j.locks = sb_blas_tile_locks(be, (size_t)N * (size_t)K);
    j.chunk_rows = ((size_t)B + WG_CHUNKS - 1) / WG_CHUNKS;
    if (j.chunk_rows < WG_CHUNK_ROWS) j.chunk_rows = WG_CHUNK_ROWS;
    queue_init(cx, &j.q, ((size_t)B + j.chunk_rows - 1) / j.chunk_rows, be->perturb);
    /* OpenBLAS on one thread while our workers call it; restored once they
     * have all returned (sb_pool_run is a barrier). */
    int saved = openblas_get_num_threads();
    if (saved != 1) openblas_set_num_threads(1);
    /* always on the pool: with two or more threads the add order is real
     * scheduling nondeterminism, whatever the size */
    sb_pool_run(cx->pool, wgrad_fast_worker, &j);
    if (saved != 1) openblas_set_num_threads(saved);
}

/* ====================================================================== */
/* memory (host memory, as ref's) and lifetime                            */
/* ====================================================================== */

static void blas_destroy(sb_backend *be) {
    blas_ctx *cx = ctx_of(be);
    if (!cx) return;
    sb_pool_free(cx->pool);
    sb_backend_free(cx->ref);
    sb_blas_conv_free(cx->conv);
    free(cx->partials);
    free(cx->wg_locks);
    if (cx->wg_scratch)
        for (int w = 0; w < be->threads; w++) free(cx->wg_scratch[w]);
    free(cx->wg_scratch);
    free(cx->wg_cap);
    free(cx);
    be->ctx = NULL;
}

static const sb_backend_i blas_vtable = {
    .alloc = sb_ref_alloc,
    .free = sb_ref_free,
    .upload = sb_ref_upload,
    .download = sb_ref_download,
    .zero = sb_ref_zero,
    .gemm = blas_gemm,
    .bias_add = blas_bias_add,
    .bias_grad = blas_bias_grad,
    .act_forward = blas_act_forward,
    .act_backward = blas_act_backward,
    .xent_forward = blas_xent_forward,
    .xent_backward = blas_xent_backward,
    .sgd_update = blas_sgd_update,
    .adam_update = blas_adam_update,
    .weight_grad = blas_weight_grad,
    .dropout_forward = blas_dropout_forward,
    .dropout_backward = blas_dropout_backward,
    .conv2d_forward = sb_blas_conv2d_forward,
    .conv2d_backward = sb_blas_conv2d_backward,
    .maxpool2d_forward = sb_blas_maxpool2d_forward,
    .maxpool2d_backward = sb_blas_maxpool2d_backward,
    .avgpool2d_forward = sb_blas_avgpool2d_forward,
    .avgpool2d_backward = sb_blas_avgpool2d_backward,
    .layernorm_forward = sb_blas_layernorm_forward, /* blas_norm.c */
    .layernorm_backward = sb_blas_layernorm_backward,
    .embedding_forward = sb_blas_embedding_forward,
    .embedding_backward = sb_blas_embedding_backward,
    .batchnorm_forward = sb_blas_batchnorm_forward, /* blas_batchnorm.c */
    .batchnorm_forward_eval = sb_blas_batchnorm_forward_eval,
    .batchnorm_backward = sb_blas_batchnorm_backward,
    .softmax_forward = sb_blas_softmax_forward, /* blas_attn.c */
    .softmax_backward = sb_blas_softmax_backward,
    .residual_forward = sb_blas_residual_forward,
    .residual_backward = sb_blas_residual_backward,
    .attention_forward = sb_blas_attention_forward,
    .attention_backward = sb_blas_attention_backward,
    .gru_forward = sb_blas_gru_forward, /* blas_gru.c */
    .gru_backward = sb_blas_gru_backward,
    .host_parallel = blas_host_parallel,
    .destroy = blas_destroy,
};

/* 64 bits from the OS for the perturbation generator; if getrandom() is not
 * available, the clock and process id still make two runs differ. Never 0
 * (xorshift's fixed point). */
static uint64_t entropy_seed(void) {
    uint64_t s = 0;
    ssize_t got;
    do
        got = getrandom(&s, sizeof s, 0);
    while (got < 0 && errno == EINTR);
    if (got != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^
            ((uint64_t)getpid() << 32);
    }
    return s ? s : 0x2545F4914F6CDD1Dull;
}

/* Called by sb_backend_new (backend.c) with a validated configuration. */
sb_status sb_blas_init(sb_backend *be, sb_error *err) {
    /* canonical mode is its own implementation, without OpenBLAS */
    if (be->mode == SB_MODE_CANONICAL) return sb_blas_canonical_init(be, err);
    blas_ctx *cx = calloc(1, sizeof *cx);
    if (!cx) return sb_error_set(err, SB_ERR_NOMEM, "backend 'blas': out of memory");
    sb_backend_config ref_cfg = {.mode = SB_MODE_DETERMINISTIC, .threads = 1, .perturb = 0};
    cx->ref = sb_backend_new("ref", &ref_cfg, err);
    if (!cx->ref) goto fail;
    cx->pool = sb_pool_new(be->threads, err);
    if (!cx->pool) goto fail;
    cx->wg_scratch = calloc((size_t)be->threads, sizeof *cx->wg_scratch);
    cx->wg_cap = calloc((size_t)be->threads, sizeof *cx->wg_cap);
    cx->conv = sb_blas_conv_new(cx->pool, cx->ref);
    if (!cx->wg_scratch || !cx->wg_cap || !cx->conv) {
        sb_error_set(err, SB_ERR_NOMEM, "backend 'blas': out of memory");
        goto fail;
    }
    if (be->perturb) cx->rng = entropy_seed();
    openblas_set_num_threads(be->threads);
    be->i = &blas_vtable;
    be->ctx = cx;
    return SB_OK;

fail:
    sb_blas_conv_free(cx->conv);
    sb_pool_free(cx->pool);
    sb_backend_free(cx->ref);
    free(cx->wg_scratch);
    free(cx->wg_cap);
    free(cx);
    return err ? err->status : SB_ERR_RUN;
}
