/* blas_canonical.c — the "blas" backend in canonical mode: the canonical
 * order of every op (docs/canonical.md), fast, on a pool of `threads`
 * workers, with results bitwise equal to the "ref" backend in canonical mode
 * for any thread count and any SIMD path.
 *
 * How each op is split (only the split is this file's; the order is the
 * shared definition in canonical_ops.c / canonical_gemm.c):
 *   gemm, weight_grad  the canonical GEMM engine; C is cut into column (or
 *                      row) ranges, one per worker (sb_canon_gemm_part);
 *                      each element is one fmaf chain over all of k.
 *   bias_grad          workers own disjoint column ranges; each column is the
 *                      canonical sum (sb_canon_sum) of its B values.
 *   xent_forward       workers own disjoint ranges of 64-row blocks; each
 *                      block's rows (sb_canon_xent_row) are summed
 *                      sequentially from +0.0f; the calling thread then feeds
 *                      the block sums, in block order, to the canonical
 *                      tree and divides by B.
 *   conv2d, pooling    blas_conv.c: im2col + canon_gemm (each element one
 *                      fmaf chain, docs/canonical.md §3.3); pooling on plane
 *                      ranges with ref's loops.
 *   layernorm,         blas_norm.c: canonical_norm.c's row and column
 *   embedding          functions on disjoint row/column ranges (§3.4).
 *   batchnorm          blas_batchnorm.c: canonical_batchnorm.c's channel
 *                      functions on disjoint channel ranges (§3.5).
 *   softmax, residual, blas_attn.c: ref_attn.c's rows on row ranges; heads on
 *   attention          workers, each GEMM whole on the worker's workspace
 *                      (sb_blas_canonical_gemm below; §3.6).
 *   gru                blas_gru.c: ref_gru.c's rows on row ranges (§3.7).
 *   everything else    elementwise: one contiguous element (or row) range per
 *                      worker, running the same scalar function ref runs.
 * No OpenBLAS call is made in this mode.
 *
 * The SIMD path of the GEMM is chosen once, when the backend is created:
 * SB_CANONICAL_ISA=scalar|avx2|avx512 forces one (a test switch; it cannot
 * change a result), otherwise the best this CPU runs.
 *
 * What it is not: the deterministic/fast "blas" backend (blas.c), which
 * uses OpenBLAS and promises less.
 */
#include "attn_internal.h"
#include "blas_internal.h"
#include "canonical.h"
#include "gru_internal.h"
#include "sb_clones.h"
#include "threadpool.h"

#include <stdlib.h>
#include <string.h>

#define SERIAL_BELOW 16384 /* elementwise ops on fewer elements run on the caller */

typedef struct canon_ctx {
    sb_pool *pool;
    sb_backend *ref;     /* deterministic ref: memory and formula-only loops */
    sb_canon_isa isa;
    int nws;
    sb_canon_ws **ws;    /* [threads]; slot w only touched by worker w; ws[0] always set */
    float *partials;     /* xent_forward block sums */
    size_t partials_cap;
    sb_blas_conv *conv;  /* conv/pool scratch (blas_conv.c) */
} canon_ctx;

static canon_ctx *cx_of(sb_backend *be) { return (canon_ctx *)be->ctx; }

sb_blas_conv *sb_blas_conv_of_canonical(sb_backend *be) { return cx_of(be)->conv; }
sb_pool *sb_blas_pool_of_canonical(sb_backend *be) { return cx_of(be)->pool; }

static void canon_host_parallel(sb_backend *be, sb_pool_fn fn, void *arg) {
    sb_pool_run(cx_of(be)->pool, fn, arg);
}

int sb_blas_canonical_workers(sb_backend *be, int want) {
    canon_ctx *cx = cx_of(be);
    int k = 1; /* ws[0] exists from creation */
    if (want > cx->nws) want = cx->nws;
    while (k < want && (cx->ws[k] || (cx->ws[k] = sb_canon_ws_new()))) k++;
    return k;
}

void sb_blas_canonical_gemm(sb_backend *be, int w, const sb_canon_gemm *g) {
    canon_ctx *cx = cx_of(be);
    SB_ASSERT(w >= 0 && w < cx->nws && cx->ws[w]);
    sb_canon_gemm_region(cx->isa, g, 0, g->M, 0, g->N, cx->ws[w]);
}

static void split_range(size_t n, int w, int nw, size_t *lo, size_t *hi) {
    size_t q = n / (size_t)nw, r = n % (size_t)nw, uw = (size_t)w;
    *lo = uw * q + (uw < r ? uw : r);
    *hi = *lo + q + (uw < r ? 1 : 0);
}

static void run(canon_ctx *cx, sb_pool_fn fn, void *arg, size_t work) {
    if (work < SERIAL_BELOW || sb_pool_size(cx->pool) == 1)
        fn(arg, 0, 1);
    else
        sb_pool_run(cx->pool, fn, arg);
}

/* ====================================================================== */
/* GEMM and weight_grad                                                   */
/* ====================================================================== */

typedef struct gemm_job {
    canon_ctx *cx;
    const sb_canon_gemm *g;
    int nparts;
    unsigned char *failed; /* [nparts]: the worker had no workspace */
} gemm_job;

static void gemm_worker(void *arg, int w, int nw) {
    (void)nw;
    gemm_job *j = arg;
    if (w >= j->nparts) return;
    canon_ctx *cx = j->cx;
    if (!cx->ws[w]) cx->ws[w] = sb_canon_ws_new();
    if (!cx->ws[w]) {
        j->failed[w] = 1;
        return;
    }
    int m0, m1, n0, n1;
    sb_canon_gemm_part(j->g, w, j->nparts, &m0, &m1, &n0, &n1);
    sb_canon_gemm_region(cx->isa, j->g, m0, m1, n0, n1, cx->ws[w]);
}

static void canon_gemm(sb_backend *be, int transA, int transB, int M, int N, int K, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C,
                       int ldc) {
    canon_ctx *cx = cx_of(be);
    SB_ASSERT(M >= 0 && N >= 0 && K >= 0);
    SB_ASSERT(lda >= 1 && ldb >= 1 && ldc >= 1);
    SB_ASSERT(lda >= (transA ? M : K) && ldb >= (transB ? K : N) && ldc >= N);
    if (M == 0 || N == 0) return;
    sb_canon_gemm g = {transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
    int nparts = sb_canon_gemm_nparts(&g, sb_pool_size(cx->pool));
    if (nparts == 1) {
        sb_canon_gemm_region(cx->isa, &g, 0, M, 0, N, cx->ws[0]);
        return;
    }
    unsigned char failed[1024];
    SB_ASSERT(nparts <= (int)sizeof failed);
    memset(failed, 0, (size_t)nparts);
    gemm_job j = {cx, &g, nparts, failed};
    sb_pool_run(cx->pool, gemm_worker, &j);
    /* parts whose worker could not get a workspace: done here, same bits */
    for (int p = 0; p < nparts; p++) {
        if (!failed[p]) continue;
        int m0, m1, n0, n1;
        sb_canon_gemm_part(&g, p, nparts, &m0, &m1, &n0, &n1);
        sb_canon_gemm_region(cx->isa, &g, m0, m1, n0, n1, cx->ws[0]);
    }
}

/* dW[N,K] = dout[B,N]^T · inp[B,K]: the canonical GEMM, transA = 1, beta 0 */
static void canon_weight_grad(sb_backend *be, float *dW, const float *dout, const float *inp,
                              int B, int N, int K) {
    SB_ASSERT(B >= 0 && N >= 0 && K >= 0);
    if (N == 0 || K == 0) return;
    canon_gemm(be, 1, 0, N, K, B, 1.0f, dout, N, inp, K, 0.0f, dW, K);
}

/* ====================================================================== */
/* elementwise ops: one range per worker                                  */
/* ====================================================================== */

enum ew_kind { EW_ACT_FWD, EW_ACT_BWD, EW_BIAS_ADD, EW_XENT_BWD, EW_SGD, EW_ADAM, EW_DROP_FWD,
               EW_DROP_BWD, EW_BIAS_GRAD };

typedef struct ew_job {
    enum ew_kind kind;
    sb_backend *ref;
    sb_act act;
    float *out, *out2, *out3;
    const float *in, *in2;
    const int32_t *labels;
    size_t n; /* elements, or rows (bias_add, xent_bwd), or columns (bias_grad) */
    int cols, rows;
    float f[5];
    int t;
} ew_job;


/* out[c] = out[c] + sb_canon_sum(x + c, rows, ld) for c in [c0, c1), with
 * LANES columns at a time, one column per lane: within a block of
 * SB_CANON_BLOCK rows each lane adds its column's values in row order from
 * +0.0f, and the block sums go through the canonical tree (canonical_ops.c's
 * binary counter: merges depend on the block count alone, so one level stack
 * serves every lane). The same additions in the same order as sb_canon_sum,
 * column by column; the loop over columns is innermost so it vectorizes, and
 * an add is correctly rounded in every clone (default, AVX2, AVX-512).
 * sb_canon_sum itself walks one column with a stride: a chain of dependent
 * adds, one cache line per element. */
#define LANES 32
SB_CLONES
static void column_sums_add(float *restrict out, const float *restrict x, size_t rows, size_t ld,
                            size_t c0, size_t c1) {
    float tv[64][LANES], s[LANES];
    unsigned char level[64];
    for (size_t cb = c0; cb < c1; cb += LANES) {
        size_t w = c1 - cb < LANES ? c1 - cb : LANES;
        int top = 0;
        for (size_t r0 = 0; r0 < rows; r0 += SB_CANON_BLOCK) {
            size_t r1 = rows - r0 < SB_CANON_BLOCK ? rows : r0 + SB_CANON_BLOCK;
            for (size_t c = 0; c < LANES; c++) s[c] = 0.0f;
            for (size_t r = r0; r < r1; r++) {
                const float *row = x + r * ld + cb;
                if (w == LANES)
                    for (size_t c = 0; c < LANES; c++) s[c] = s[c] + row[c];
                else
                    for (size_t c = 0; c < w; c++) s[c] = s[c] + row[c];
            }
            unsigned char lv = 0;
            while (top > 0 && level[top - 1] == lv) { /* (older) + (newer) */
                for (size_t c = 0; c < LANES; c++) s[c] = tv[top - 1][c] + s[c];
                top--;
                lv++;
            }
            SB_ASSERT(top < 64);
            memcpy(tv[top], s, sizeof s);
            level[top++] = lv;
        }
        if (top == 0) /* rows == 0: every sum is 0.0f */
            for (size_t c = 0; c < LANES; c++) s[c] = 0.0f;
        else
            memcpy(s, tv[top - 1], sizeof s);
        for (int i = top - 2; i >= 0; i--) /* fold from the right: left + rest */
            for (size_t c = 0; c < LANES; c++) s[c] = tv[i][c] + s[c];
        for (size_t c = 0; c < w; c++) out[cb + c] = out[cb + c] + s[c];
    }
}

static void ew_worker(void *arg, int w, int nw) {
    ew_job *j = arg;
    size_t lo, hi;
    split_range(j->n, w, nw, &lo, &hi);
    if (hi <= lo) return;
    size_t len = hi - lo;
    sb_backend *ref = j->ref;
    switch (j->kind) {
    /* ReLU is a select, the same expression in ref.c and canonical_ops.c:
     * ref's loop runs in its vector clones (canonical_ops.c's scalar one,
     * a branch per element, took 10% of an mlp784 step); tanh and GELU go
     * through the canonical tanh */
    case EW_ACT_FWD:
        if (j->act == SB_ACT_RELU)
            ref->i->act_forward(ref, j->act, j->out + lo, j->in + lo, len);
        else
            sb_canon_act_forward(j->act, j->out + lo, j->in + lo, len);
        return;
    case EW_ACT_BWD:
        if (j->act == SB_ACT_RELU)
            ref->i->act_backward(ref, j->act, j->out + lo, j->in + lo, j->in2 + lo, len);
        else
            sb_canon_act_backward(j->act, j->out + lo, j->in + lo, j->in2 + lo, len);
        return;
    case EW_BIAS_ADD:
        ref->i->bias_add(ref, j->out + lo * (size_t)j->cols, j->in, (int)len, j->cols);
        return;
    case EW_XENT_BWD: { /* ref_xent_backward's expression; fB is the whole batch */
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
        return;
    }
    case EW_SGD:
        ref->i->sgd_update(ref, j->out + lo, j->out2 + lo, j->in + lo, len, j->f[0], j->f[1],
                           j->f[2]);
        return;
    case EW_ADAM:
        sb_canon_adam(j->out + lo, j->out2 + lo, j->out3 + lo, j->in + lo, len, j->f[0], j->f[1],
                      j->f[2], j->f[3], j->f[4], j->t);
        return;
    case EW_DROP_FWD:
        ref->i->dropout_forward(ref, j->out + lo, j->in + lo, j->in2 + lo, len, j->f[0]);
        return;
    case EW_DROP_BWD:
        ref->i->dropout_backward(ref, j->out + lo, j->in + lo, j->in2 + lo, len, j->f[0]);
        return;
    case EW_BIAS_GRAD: /* columns [lo, hi): canonical sum of each column */
        column_sums_add(j->out, j->in, (size_t)j->rows, (size_t)j->cols, lo, hi);
        return;
    }
}

static void canon_act_forward(sb_backend *be, sb_act act, float *out, const float *inp, size_t n) {
    ew_job j = {.kind = EW_ACT_FWD, .ref = cx_of(be)->ref, .act = act, .out = out, .in = inp,
                .n = n};
    run(cx_of(be), ew_worker, &j, act == SB_ACT_RELU ? n : 16 * n);
}

static void canon_act_backward(sb_backend *be, sb_act act, float *dinp, const float *dout,
                               const float *inp, size_t n) {
    ew_job j = {.kind = EW_ACT_BWD, .ref = cx_of(be)->ref, .act = act, .out = dinp, .in = dout,
                .in2 = inp, .n = n};
    run(cx_of(be), ew_worker, &j, act == SB_ACT_RELU ? n : 16 * n);
}

static void canon_bias_add(sb_backend *be, float *out, const float *bias, int B, int N) {
    canon_ctx *cx = cx_of(be);
    ew_job j = {.kind = EW_BIAS_ADD, .ref = cx->ref, .out = out, .in = bias, .n = (size_t)B,
                .cols = N};
    run(cx, ew_worker, &j, (size_t)B * (size_t)N);
}

static void canon_bias_grad(sb_backend *be, float *dbias, const float *dout, int B, int N) {
    if (B <= 0 || N <= 0) return;
    ew_job j = {.kind = EW_BIAS_GRAD, .out = dbias, .in = dout, .n = (size_t)N, .cols = N,
                .rows = B};
    run(cx_of(be), ew_worker, &j, (size_t)B * (size_t)N);
}

static void canon_xent_backward(sb_backend *be, float *dlogits, const float *probs,
                                const int32_t *labels, int B, int C) {
    ew_job j = {.kind = EW_XENT_BWD, .out = dlogits, .in = probs, .labels = labels,
                .n = (size_t)B, .cols = C};
    run(cx_of(be), ew_worker, &j, (size_t)B * (size_t)C);
}

static void canon_sgd_update(sb_backend *be, float *w, float *mom, const float *g, size_t n,
                             float lr, float momentum, float weight_decay) {
    canon_ctx *cx = cx_of(be);
    ew_job j = {.kind = EW_SGD, .ref = cx->ref, .out = w, .out2 = mom, .in = g, .n = n,
                .f = {lr, momentum, weight_decay}};
    run(cx, ew_worker, &j, n);
}

static void canon_adam_update(sb_backend *be, float *w, float *m, float *v, const float *g,
                              size_t n, float lr, float beta1, float beta2, float eps,
                              float weight_decay, int t) {
    ew_job j = {.kind = EW_ADAM, .out = w, .out2 = m, .out3 = v, .in = g, .n = n,
                .f = {lr, beta1, beta2, eps, weight_decay}, .t = t};
    run(cx_of(be), ew_worker, &j, n);
}

static void canon_dropout_forward(sb_backend *be, float *out, const float *inp, const float *mask,
                                  size_t n, float scale) {
    canon_ctx *cx = cx_of(be);
    ew_job j = {.kind = EW_DROP_FWD, .ref = cx->ref, .out = out, .in = inp, .in2 = mask, .n = n,
                .f = {scale}};
    run(cx, ew_worker, &j, n);
}

static void canon_dropout_backward(sb_backend *be, float *dinp, const float *dout,
                                   const float *mask, size_t n, float scale) {
    canon_ctx *cx = cx_of(be);
    ew_job j = {.kind = EW_DROP_BWD, .ref = cx->ref, .out = dinp, .in = dout, .in2 = mask, .n = n,
                .f = {scale}};
    run(cx, ew_worker, &j, n);
}

/* ====================================================================== */
/* xent_forward: rows, then block sums, then the tree                     */
/* ====================================================================== */

typedef struct xent_job {
    float *probs, *partials;
    const float *logits;
    const int32_t *labels;
    int B, C;
    size_t nblocks;
} xent_job;

/* block c: rows [64c, 64c+64) summed sequentially from +0.0f */
static float xent_block(const xent_job *j, size_t blk) {
    size_t r0 = blk * SB_CANON_BLOCK;
    size_t r1 = r0 + SB_CANON_BLOCK < (size_t)j->B ? r0 + SB_CANON_BLOCK : (size_t)j->B;
    float s = 0.0f;
    for (size_t r = r0; r < r1; r++) {
        SB_ASSERT(j->labels[r] >= 0 && j->labels[r] < j->C);
        size_t off = r * (size_t)j->C;
        s = s + sb_canon_xent_row(j->probs + off, j->logits + off, j->labels[r], j->C);
    }
    return s;
}

static void xent_worker(void *arg, int w, int nw) {
    xent_job *j = arg;
    size_t lo, hi;
    split_range(j->nblocks, w, nw, &lo, &hi);
    for (size_t b = lo; b < hi; b++) j->partials[b] = xent_block(j, b);
}

static void canon_xent_forward(sb_backend *be, float *probs, float *loss, const float *logits,
                               const int32_t *labels, int B, int C) {
    canon_ctx *cx = cx_of(be);
    SB_ASSERT(B >= 1 && C >= 1);
    xent_job j = {.probs = probs, .logits = logits, .labels = labels, .B = B, .C = C,
                  .nblocks = ((size_t)B + SB_CANON_BLOCK - 1) / SB_CANON_BLOCK};
    if (j.nblocks > cx->partials_cap) {
        float *p = realloc(cx->partials, j.nblocks * sizeof *p);
        if (p) {
            cx->partials = p;
            cx->partials_cap = j.nblocks;
        }
    }
    sb_canon_tree t;
    sb_canon_tree_init(&t);
    if (j.nblocks <= cx->partials_cap) {
        j.partials = cx->partials;
        run(cx, xent_worker, &j, (size_t)B * (size_t)C * 16);
        for (size_t b = 0; b < j.nblocks; b++) sb_canon_tree_push(&t, j.partials[b]);
    } else { /* no scratch: the same blocks, one after the other, same bits */
        for (size_t b = 0; b < j.nblocks; b++) sb_canon_tree_push(&t, xent_block(&j, b));
    }
    *loss = sb_canon_tree_end(&t) / (float)B;
}

/* ====================================================================== */
/* memory (ref's host memory) and lifetime                                */
/* ====================================================================== */

static void canon_destroy(sb_backend *be) {
    canon_ctx *cx = cx_of(be);
    if (!cx) return;
    sb_blas_conv_free(cx->conv);
    sb_pool_free(cx->pool);
    sb_backend_free(cx->ref);
    if (cx->ws)
        for (int w = 0; w < cx->nws; w++) sb_canon_ws_free(cx->ws[w]);
    free(cx->ws);
    free(cx->partials);
    free(cx);
    be->ctx = NULL;
}

static const sb_backend_i canon_vtable = {
    .alloc = sb_ref_alloc,
    .free = sb_ref_free,
    .upload = sb_ref_upload,
    .download = sb_ref_download,
    .zero = sb_ref_zero,
    .gemm = canon_gemm,
    .bias_add = canon_bias_add,
    .bias_grad = canon_bias_grad,
    .act_forward = canon_act_forward,
    .act_backward = canon_act_backward,
    .xent_forward = canon_xent_forward,
    .xent_backward = canon_xent_backward,
    .sgd_update = canon_sgd_update,
    .adam_update = canon_adam_update,
    .weight_grad = canon_weight_grad,
    .dropout_forward = canon_dropout_forward,
    .dropout_backward = canon_dropout_backward,
    .conv2d_forward = sb_blas_conv2d_forward, /* im2col + the canonical GEMM */
    .conv2d_backward = sb_blas_conv2d_backward,
    .maxpool2d_forward = sb_blas_maxpool2d_forward,
    .maxpool2d_backward = sb_blas_maxpool2d_backward,
    .avgpool2d_forward = sb_blas_avgpool2d_forward,
    .avgpool2d_backward = sb_blas_avgpool2d_backward,
    .layernorm_forward = sb_blas_layernorm_forward, /* blas_norm.c: canonical_norm.c's order */
    .layernorm_backward = sb_blas_layernorm_backward,
    .embedding_forward = sb_blas_embedding_forward,
    .embedding_backward = sb_blas_embedding_backward,
    .batchnorm_forward = sb_blas_batchnorm_forward, /* blas_batchnorm.c: §3.5's order */
    .batchnorm_forward_eval = sb_blas_batchnorm_forward_eval,
    .batchnorm_backward = sb_blas_batchnorm_backward,
    .softmax_forward = sb_blas_softmax_forward, /* blas_attn.c: §3.6's order */
    .softmax_backward = sb_blas_softmax_backward,
    .residual_forward = sb_blas_residual_forward,
    .residual_backward = sb_blas_residual_backward,
    .attention_forward = sb_blas_attention_forward,
    .attention_backward = sb_blas_attention_backward,
    .gru_forward = sb_blas_gru_forward, /* blas_gru.c: ref_gru.c's rows, §3.7 */
    .gru_backward = sb_blas_gru_backward,
    .host_parallel = canon_host_parallel,
    .destroy = canon_destroy,
};

/* Called by sb_blas_init (blas.c) when the mode is canonical. */
sb_status sb_blas_canonical_init(sb_backend *be, sb_error *err) {
    canon_ctx *cx = calloc(1, sizeof *cx);
    if (!cx) return sb_error_set(err, SB_ERR_NOMEM, "backend 'blas': out of memory");
    if (sb_canon_isa_from_env(&cx->isa, err) != SB_OK) goto fail;
    sb_backend_config ref_cfg = {.mode = SB_MODE_DETERMINISTIC, .threads = 1, .perturb = 0};
    cx->ref = sb_backend_new("ref", &ref_cfg, err);
    if (!cx->ref) goto fail;
    cx->pool = sb_pool_new(be->threads, err);
    if (!cx->pool) goto fail;
    cx->nws = be->threads;
    cx->ws = calloc((size_t)be->threads, sizeof *cx->ws);
    if (cx->ws) cx->ws[0] = sb_canon_ws_new();
    cx->conv = sb_blas_conv_new(cx->pool, cx->ref);
    if (!cx->ws || !cx->ws[0] || !cx->conv) {
        sb_error_set(err, SB_ERR_NOMEM, "backend 'blas': out of memory");
        goto fail;
    }
    be->i = &canon_vtable;
    be->ctx = cx;
    return SB_OK;

fail:
    be->ctx = cx;
    canon_destroy(be);
    return err ? err->status : SB_ERR_RUN;
}
