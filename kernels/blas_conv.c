/* blas_conv.c — the "blas" backend's convolution and pooling, for all three
 * modes: conv2d through im2col and the backend's own GEMM entry, pooling
 * as ref's loops on ranges of (n,c) planes, multithreaded over the pool.
 *
 * How each op is computed (kernels.h states the resulting orders):
 *   im2col       col[cin*kh*kw, n*OH*OW]: row (ci, ky, kx), column
 *                (n, oy, ox); a padded position is 0.0f. Workers fill
 *                disjoint (row, image) segments: a copy, no arithmetic.
 *   forward      outT[cout, n*OH*OW] = weight[cout, cin*kh*kw] · col by ONE
 *                call of be->i->gemm, then out[n,co,:] = outT[co, n,:] +
 *                bias[co] (workers own disjoint (n, co) planes).
 *   dinp         doutT[cout, n*OH*OW] (a transposing copy of dout), then ONE
 *                gemm dcol[cin*kh*kw, n*OH*OW] = weightᵀ · doutT (each dcol
 *                element is the t(ky,kx) of kernels.h: a sum over co), then
 *                col2im as a gather: per input element, the dcol entries that
 *                came from it, in increasing (ky, kx) order from 0.0f, then
 *                added to dinp once (workers own disjoint (n, ci) planes).
 *   dweight      deterministic, canonical: ONE gemm with beta 1, dweight +=
 *                doutT · colᵀ, K = n*OH*OW (the batch and the positions).
 *                fast: the batch is cut into chunks of CHUNK_IMAGES images
 *                from the work queue; a worker builds the chunk's col and
 *                doutT in its scratch, computes the chunk's partial with one
 *                cblas_sgemm (OpenBLAS on one thread for the whole pool run,
 *                as blas.c's fast weight_grad, whose reasons apply) and adds it
 *                into dweight tile by tile under spin locks: completion order.
 *   dbias        deterministic: per channel, n then (oy, ox) sequentially from
 *                0.0f, then one addition — ref's order, bit for bit (workers
 *                own disjoint channels). canonical: the two-level canonical
 *                sum (canonical_conv.c). fast: per chunk and channel a
 *                sequential partial, atomically added in completion order.
 *   pooling      ref_conv.c's functions on plane ranges: the same bits as ref
 *                in every mode and for every thread count.
 *
 * be->i->gemm is cblas_sgemm on OpenBLAS's `threads` threads in
 * deterministic and fast mode (blas.c), and the canonical GEMM in canonical
 * mode (blas_canonical.c): there, each outT, dcol and dweight element is one
 * fmaf chain over the GEMM's k — (ci, ky, kx), co, and (n, oy, ox)
 * respectively — which is exactly canonical_conv.c's order, so canonical
 * blas equals canonical ref bit for bit for any thread count and SIMD path.
 *
 * When scratch memory cannot be had, an op runs the "ref" backend's loops of
 * the same mode instead: in canonical mode the same bits, in deterministic
 * mode ref's bits (still one fixed order).
 *
 * What it is not: a tuned convolution (no Winograd, no direct SIMD kernels,
 * no reuse of the packed weight across calls); it is GEMM-shaped work given
 * to the GEMM, as the issue asks.
 */
#include "blas_internal.h"
#include "canonical.h"
#include "conv_internal.h"
#include "sb_clones.h"

#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_IMAGES 2     /* fast: images per work-queue item */
#define SERIAL_BELOW 16384 /* passes over fewer elements run on the caller */

enum { BUF_COL, BUF_DOUT_T, BUF_OUT, NBUF };

struct sb_blas_conv {
    sb_pool *pool;
    sb_backend *ref;
    int nw;
    float *shared[NBUF]; /* the caller's, outside pool runs */
    size_t shared_cap[NBUF];
    float **wbuf;        /* [nw * NBUF]: worker w's, slot w*NBUF + k; fast mode */
    size_t *wcap;
};

sb_blas_conv *sb_blas_conv_new(sb_pool *pool, sb_backend *ref) {
    sb_blas_conv *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->pool = pool;
    c->ref = ref;
    c->nw = sb_pool_size(pool);
    c->wbuf = calloc((size_t)c->nw * NBUF, sizeof *c->wbuf);
    c->wcap = calloc((size_t)c->nw * NBUF, sizeof *c->wcap);
    if (!c->wbuf || !c->wcap) {
        sb_blas_conv_free(c);
        return NULL;
    }
    return c;
}

void sb_blas_conv_free(sb_blas_conv *c) {
    if (!c) return;
    for (int k = 0; k < NBUF; k++) free(c->shared[k]);
    if (c->wbuf)
        for (size_t i = 0; i < (size_t)c->nw * NBUF; i++) free(c->wbuf[i]);
    free(c->wbuf);
    free(c->wcap);
    free(c);
}

/* *p grown to n floats (contents not kept); NULL when memory is short. */
static float *grow(float **p, size_t *cap, size_t n) {
    if (*cap < n) {
        free(*p);
        *p = n <= SIZE_MAX / sizeof(float) ? malloc(n * sizeof(float)) : NULL;
        *cap = *p ? n : 0;
    }
    return *p;
}

static sb_blas_conv *conv_of(sb_backend *be) {
    return be->mode == SB_MODE_CANONICAL ? sb_blas_conv_of_canonical(be) : sb_blas_conv_of_fast(be);
}

static void split_range(size_t n, int w, int nw, size_t *lo, size_t *hi) {
    size_t q = n / (size_t)nw, r = n % (size_t)nw, uw = (size_t)w;
    *lo = uw * q + (uw < r ? uw : r);
    *hi = *lo + q + (uw < r ? 1 : 0);
}

/* ====================================================================== */
/* the passes: items split into one contiguous range per worker          */
/* ====================================================================== */

enum pass_kind { P_IM2COL, P_DOUT_T, P_OUT, P_COL2IM, P_BIAS_DET, P_BIAS_CANON, P_MAXF, P_MAXB,
                 P_AVGF, P_AVGB };

typedef struct pass {
    enum pass_kind kind;
    const sb_conv2d_shape *s;
    const sb_pool2d_shape *ps;
    sb_backend *ref;
    size_t items;
    int n0, nn;        /* the images [n0, n0+nn) the pass covers (conv) */
    size_t ohw, np;    /* OH*OW; nn*OH*OW, the row length of col/doutT/outT */
    int OW;
    float *dst;
    const float *src, *src2;
} pass;

/* d[0..n) = s[0..n) for the short rows of im2col (a library memcpy call
 * cost more than the copy for the CNN's rows of 28 and 14): two copies of a
 * fixed size that overlap in the middle, which the compiler turns into
 * vector moves; a copy, so exact. */
static void copy_floats(float *restrict d, const float *restrict s, int n) {
    if (n >= 16) {
        for (int i = 0; i + 16 <= n; i += 16) memcpy(d + i, s + i, 16 * sizeof *d);
        memcpy(d + n - 16, s + n - 16, 16 * sizeof *d);
    } else if (n >= 8) {
        memcpy(d, s, 8 * sizeof *d);
        memcpy(d + n - 8, s + n - 8, 8 * sizeof *d);
    } else if (n >= 4) {
        memcpy(d, s, 4 * sizeof *d);
        memcpy(d + n - 4, s + n - 4, 4 * sizeof *d);
    } else {
        for (int i = 0; i < n; i++) d[i] = s[i];
    }
}

/* col rows (ci, ky, kx) x images: item = row*nn + m fills col[row, m*ohw ..] */
static void im2col_items(const pass *p, size_t lo, size_t hi) {
    const sb_conv2d_shape *s = p->s;
    const size_t hw = (size_t)s->h * (size_t)s->w;
    for (size_t it = lo; it < hi; it++) {
        size_t row = it / (size_t)p->nn, m = it % (size_t)p->nn;
        int kx = (int)(row % (size_t)s->kw), ky = (int)(row / (size_t)s->kw % (size_t)s->kh);
        size_t ci = row / ((size_t)s->kw * (size_t)s->kh);
        const float *x = p->src + (((size_t)p->n0 + m) * (size_t)s->cin + ci) * hw;
        float *c = p->dst + row * p->np + m * p->ohw;
        int OH = (int)(p->ohw / (size_t)p->OW);
        /* with stride 1 a row is a shifted copy: crow[ox] =
         * x[iy, ox - pad + kx] for ox in [x0, x1), the rest is padding */
        const int shift = kx - s->pad_w;
        int x0 = shift < 0 ? -shift : 0, x1 = s->w - shift < p->OW ? s->w - shift : p->OW;
        if (x1 < x0) x1 = x0;
        for (int oy = 0; oy < OH; oy++) {
            int iy = oy * s->stride_h - s->pad_h + ky;
            float *crow = c + (size_t)oy * (size_t)p->OW;
            if (iy < 0 || iy >= s->h) {
                memset(crow, 0, (size_t)p->OW * sizeof *crow);
                continue;
            }
            const float *xrow = x + (size_t)iy * (size_t)s->w;
            if (s->stride_w == 1) {
                for (int ox = 0; ox < x0; ox++) crow[ox] = 0.0f;
                copy_floats(crow + x0, xrow + x0 + shift, x1 - x0);
                for (int ox = x1; ox < p->OW; ox++) crow[ox] = 0.0f;
                continue;
            }
            for (int ox = 0; ox < p->OW; ox++) {
                int ix = ox * s->stride_w + shift;
                crow[ox] = ix >= 0 && ix < s->w ? xrow[ix] : 0.0f;
            }
        }
    }
}

/* doutT[co, m*ohw + q] = dout[n0+m, co, q]: item = co*nn + m */
static void dout_t_items(const pass *p, size_t lo, size_t hi) {
    for (size_t it = lo; it < hi; it++) {
        size_t co = it / (size_t)p->nn, m = it % (size_t)p->nn;
        memcpy(p->dst + co * p->np + m * p->ohw,
               p->src + (((size_t)p->n0 + m) * (size_t)p->s->cout + co) * p->ohw,
               p->ohw * sizeof(float));
    }
}

/* out[n, co, q] = outT[co, n*ohw + q] (+ bias[co]): item = n*cout + co */
static void out_items(const pass *p, size_t lo, size_t hi) {
    for (size_t it = lo; it < hi; it++) {
        size_t n = it / (size_t)p->s->cout, co = it % (size_t)p->s->cout;
        const float *t = p->src + co * p->np + n * p->ohw;
        float *o = p->dst + it * p->ohw;
        if (p->src2) {
            const float b = p->src2[co];
            for (size_t q = 0; q < p->ohw; q++) o[q] = t[q] + b;
        } else {
            memcpy(o, t, p->ohw * sizeof(float));
        }
    }
}

/* acc[i] = acc[i] + x[i], i < n: one rounded addition per element, in every
 * clone (vector lanes are elements). */
SB_CLONES static void row_add(float *restrict acc, const float *restrict x, int n) {
    for (int i = 0; i < n; i++) acc[i] = acc[i] + x[i];
}

#define COL2IM_ROW_MAX 4096 /* row accumulators on the stack (floats) */
#define BIAS_CHAINS 64      /* channels whose bias-gradient chains run side by side */

/* dinp[n, ci, iy, ix] += (dcol entries of that element, (ky, kx) increasing,
 * from 0.0f): item = n*cin + ci. With stride 1 along x a row's elements are
 * summed side by side in a row of accumulators: for each (ky, kx) in turn,
 * the elements it reaches (a contiguous range ix in [kx - pad, kx - pad + OW))
 * take their entry — per element the same additions in the same order as
 * the element-by-element loop below, which handles the other strides. */
static void col2im_items(const pass *p, size_t lo, size_t hi) {
    const sb_conv2d_shape *s = p->s;
    const int OH = (int)(p->ohw / (size_t)p->OW), OW = p->OW;
    if (s->stride_w == 1 && s->w <= COL2IM_ROW_MAX) {
        float acc[COL2IM_ROW_MAX];
        for (size_t it = lo; it < hi; it++) {
            size_t n = it / (size_t)s->cin, ci = it % (size_t)s->cin;
            float *d = p->dst + it * (size_t)s->h * (size_t)s->w;
            for (int iy = 0; iy < s->h; iy++) {
                for (int ix = 0; ix < s->w; ix++) acc[ix] = 0.0f;
                for (int ky = 0; ky < s->kh; ky++) {
                    int ty = iy + s->pad_h - ky;
                    if (ty < 0 || ty % s->stride_h != 0 || ty / s->stride_h >= OH) continue;
                    size_t row0 = (ci * (size_t)s->kh + (size_t)ky) * (size_t)s->kw;
                    const float *src = p->src + n * p->ohw + (size_t)(ty / s->stride_h) * (size_t)OW;
                    for (int kx = 0; kx < s->kw; kx++) {
                        int shift = s->pad_w - kx; /* tx = ix + shift */
                        int x0 = shift < 0 ? -shift : 0, x1 = OW - shift < s->w ? OW - shift : s->w;
                        if (x1 > x0)
                            row_add(acc + x0, src + (row0 + (size_t)kx) * p->np + (size_t)(x0 + shift),
                                    x1 - x0);
                    }
                }
                row_add(d + (size_t)iy * (size_t)s->w, acc, s->w);
            }
        }
        return;
    }
    for (size_t it = lo; it < hi; it++) {
        size_t n = it / (size_t)s->cin, ci = it % (size_t)s->cin;
        float *d = p->dst + it * (size_t)s->h * (size_t)s->w;
        for (int iy = 0; iy < s->h; iy++)
            for (int ix = 0; ix < s->w; ix++) {
                float acc = 0.0f;
                for (int ky = 0; ky < s->kh; ky++) {
                    int ty = iy + s->pad_h - ky;
                    if (ty < 0 || ty % s->stride_h != 0 || ty / s->stride_h >= OH) continue;
                    size_t row0 = (ci * (size_t)s->kh + (size_t)ky) * (size_t)s->kw;
                    for (int kx = 0; kx < s->kw; kx++) {
                        int tx = ix + s->pad_w - kx;
                        if (tx < 0 || tx % s->stride_w != 0 || tx / s->stride_w >= OW) continue;
                        size_t q = (size_t)(ty / s->stride_h) * (size_t)OW + (size_t)(tx / s->stride_w);
                        acc = acc + p->src[(row0 + (size_t)kx) * p->np + n * p->ohw + q];
                    }
                }
                size_t i = (size_t)iy * (size_t)s->w + (size_t)ix;
                d[i] = d[i] + acc;
            }
    }
}

static void pass_worker(void *arg, int w, int nw) {
    const pass *p = arg;
    size_t lo, hi;
    split_range(p->items, w, nw, &lo, &hi);
    if (hi <= lo) return;
    const sb_conv2d_shape *s = p->s;
    sb_pool2d_shape sub = {0};
    if (p->ps) { /* planes [lo, hi) as a shape of its own (ref's loops are reentrant) */
        sub = *p->ps;
        sub.n = (int)(hi - lo);
        sub.c = 1;
    }
    size_t in_plane = p->ps ? (size_t)sub.h * (size_t)sub.w : 0;
    size_t out_plane = p->ps ? (size_t)sb_pool2d_out_h(&sub) * (size_t)sb_pool2d_out_w(&sub) : 0;
    switch (p->kind) {
    case P_IM2COL: im2col_items(p, lo, hi); return;
    case P_DOUT_T: dout_t_items(p, lo, hi); return;
    case P_OUT: out_items(p, lo, hi); return;
    case P_COL2IM: col2im_items(p, lo, hi); return;
    case P_BIAS_DET: /* per channel: n, then (oy, ox), from 0.0f; then one add */
        if (hi - lo <= BIAS_CHAINS) {
            /* the channels' chains side by side (each its own order), so
             * their additions overlap instead of each waiting on the last */
            float acc[BIAS_CHAINS];
            for (size_t co = lo; co < hi; co++) acc[co - lo] = 0.0f;
            for (int n = 0; n < s->n; n++) {
                const float *g = p->src + ((size_t)n * (size_t)s->cout + lo) * p->ohw;
                for (size_t q = 0; q < p->ohw; q++)
                    for (size_t c = 0; c < hi - lo; c++) acc[c] = acc[c] + g[c * p->ohw + q];
            }
            for (size_t co = lo; co < hi; co++) p->dst[co] = p->dst[co] + acc[co - lo];
            return;
        }
        for (size_t co = lo; co < hi; co++) {
            float acc = 0.0f;
            for (int n = 0; n < s->n; n++) {
                const float *g = p->src + ((size_t)n * (size_t)s->cout + co) * p->ohw;
                for (size_t q = 0; q < p->ohw; q++) acc = acc + g[q];
            }
            p->dst[co] = p->dst[co] + acc;
        }
        return;
    case P_BIAS_CANON:
        for (size_t co = lo; co < hi; co++)
            p->dst[co] = p->dst[co] + sb_canon_sum_strided2(p->src + co * p->ohw, (size_t)s->n,
                                                            (size_t)s->cout * p->ohw, p->ohw);
        return;
    case P_MAXF:
        sb_ref_maxpool2d_forward(p->ref, p->dst + lo * out_plane, p->src + lo * in_plane, &sub);
        return;
    case P_MAXB:
        sb_ref_maxpool2d_backward(p->ref, p->dst + lo * in_plane, p->src + lo * out_plane,
                                  p->src2 + lo * in_plane, &sub);
        return;
    case P_AVGF:
        sb_ref_avgpool2d_forward(p->ref, p->dst + lo * out_plane, p->src + lo * in_plane, &sub);
        return;
    case P_AVGB:
        sb_ref_avgpool2d_backward(p->ref, p->dst + lo * in_plane, p->src + lo * out_plane, &sub);
        return;
    }
}

/* Runs the pass on the pool, or on the caller when it is small: every pass
 * gives the same bits either way (disjoint items, no cross-item order). */
static void run_pass(sb_blas_conv *c, pass *p, size_t work) {
    if (p->items == 0) return;
    if (work < SERIAL_BELOW || c->nw == 1)
        pass_worker(p, 0, 1);
    else
        sb_pool_run(c->pool, pass_worker, p);
}

/* A pass over images [n0, n0+nn) of a conv shape. */
static pass conv_pass(enum pass_kind kind, const sb_conv2d_shape *s, int n0, int nn) {
    pass p = {.kind = kind, .s = s, .n0 = n0, .nn = nn};
    p.OW = sb_conv2d_out_w(s);
    p.ohw = (size_t)sb_conv2d_out_h(s) * (size_t)p.OW;
    p.np = (size_t)nn * p.ohw;
    /* the GEMM's dimensions are ints */
    SB_ASSERT(p.np <= INT_MAX && (size_t)s->cin * (size_t)s->kh * (size_t)s->kw <= INT_MAX);
    return p;
}

/* ====================================================================== */
/* conv2d                                                                 */
/* ====================================================================== */

void sb_blas_conv2d_forward(sb_backend *be, float *out, const float *inp, const float *weight,
                            const float *bias, const sb_conv2d_shape *s) {
    sb_conv2d_check(s);
    if (s->n == 0) return;
    sb_blas_conv *c = conv_of(be);
    const size_t ckk = (size_t)s->cin * (size_t)s->kh * (size_t)s->kw;
    pass p = conv_pass(P_IM2COL, s, 0, s->n);
    float *col = grow(&c->shared[BUF_COL], &c->shared_cap[BUF_COL], ckk * p.np);
    float *outT = grow(&c->shared[BUF_OUT], &c->shared_cap[BUF_OUT], (size_t)s->cout * p.np);
    if (!col || !outT) { /* ref's loops of the same mode (see the header) */
        (be->mode == SB_MODE_CANONICAL ? sb_canon_ref_conv2d_forward
                                       : sb_ref_conv2d_forward)(be, out, inp, weight, bias, s);
        return;
    }
    p.items = ckk * (size_t)s->n, p.dst = col, p.src = inp;
    run_pass(c, &p, ckk * p.np);
    be->i->gemm(be, 0, 0, s->cout, (int)p.np, (int)ckk, 1.0f, weight, (int)ckk, col, (int)p.np,
                0.0f, outT, (int)p.np);
    pass o = conv_pass(P_OUT, s, 0, s->n);
    o.items = (size_t)s->n * (size_t)s->cout, o.dst = out, o.src = outT, o.src2 = bias;
    run_pass(c, &o, (size_t)s->cout * p.np);
}

/* ---- fast mode: the unordered weight and bias gradients ---- */

typedef struct fast_job {
    sb_blas_conv *c;
    const sb_conv2d_shape *s;
    float *dweight, *dbias;
    const float *dout, *inp;
    sb_blas_queue q;
    unsigned char *locks;
    int workers; /* workers that take chunks (the rest sit out) */
} fast_job;

static void fast_worker(void *arg, int w, int nw) {
    (void)nw;
    fast_job *j = arg;
    if (w >= j->workers) return;
    const sb_conv2d_shape *s = j->s;
    const size_t ckk = (size_t)s->cin * (size_t)s->kh * (size_t)s->kw;
    const size_t nwk = (size_t)s->cout * ckk;
    float *col = j->c->wbuf[(size_t)w * NBUF + BUF_COL];
    float *dT = j->c->wbuf[(size_t)w * NBUF + BUF_DOUT_T];
    float *part = j->c->wbuf[(size_t)w * NBUF + BUF_OUT];
    size_t chunk;
    while ((chunk = sb_blas_queue_take(&j->q)) != (size_t)-1) {
        int n0 = (int)chunk * CHUNK_IMAGES;
        int nn = s->n - n0 < CHUNK_IMAGES ? s->n - n0 : CHUNK_IMAGES;
        pass p = conv_pass(P_IM2COL, s, n0, nn);
        p.dst = col, p.src = j->inp;
        im2col_items(&p, 0, ckk * (size_t)nn);
        p.dst = dT, p.src = j->dout;
        dout_t_items(&p, 0, (size_t)s->cout * (size_t)nn);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->cout, (int)ckk, (int)p.np, 1.0f, dT,
                    (int)p.np, col, (int)p.np, 0.0f, part, (int)ckk);
        /* start at worker w's share of dweight so concurrent workers spread */
        sb_blas_locked_add(j->dweight, part, nwk, j->locks,
                           nwk / (size_t)j->workers * (size_t)w);
        if (j->dbias)
            for (int co = 0; co < s->cout; co++) {
                const float *g = dT + (size_t)co * p.np;
                float acc = 0.0f; /* the chunk's (n, oy, ox) in order */
                for (size_t q = 0; q < p.np; q++) acc = acc + g[q];
                sb_blas_atomic_add(&j->dbias[co], acc);
            }
    }
}

/* 0 when scratch could not be had (the caller then takes the ordered path). */
static int fast_grads(sb_backend *be, sb_blas_conv *c, float *dweight, float *dbias,
                      const float *dout, const float *inp, const sb_conv2d_shape *s) {
    const size_t ckk = (size_t)s->cin * (size_t)s->kh * (size_t)s->kw;
    const size_t np = (size_t)CHUNK_IMAGES * (size_t)sb_conv2d_out_h(s) * (size_t)sb_conv2d_out_w(s);
    fast_job j = {.c = c, .s = s, .dweight = dweight, .dbias = dbias, .dout = dout, .inp = inp};
    j.workers = c->nw < SB_BLAS_MAX_SGEMM_WORKERS ? c->nw : SB_BLAS_MAX_SGEMM_WORKERS;
    /* every taking worker's scratch, grown here on the caller before the run */
    for (int w = 0; w < j.workers; w++) {
        size_t b = (size_t)w * NBUF;
        if (!grow(&c->wbuf[b + BUF_COL], &c->wcap[b + BUF_COL], ckk * np) ||
            !grow(&c->wbuf[b + BUF_DOUT_T], &c->wcap[b + BUF_DOUT_T], (size_t)s->cout * np) ||
            !grow(&c->wbuf[b + BUF_OUT], &c->wcap[b + BUF_OUT], (size_t)s->cout * ckk))
            return 0;
    }
    j.locks = sb_blas_tile_locks(be, (size_t)s->cout * ckk);
    sb_blas_queue_init(be, &j.q, ((size_t)s->n + CHUNK_IMAGES - 1) / CHUNK_IMAGES);
    /* OpenBLAS on one thread while our workers call it, restored after the
     * pool has joined (blas.c's header explains why) */
    int saved = openblas_get_num_threads();
    if (saved != 1) openblas_set_num_threads(1);
    /* always on the pool: with two or more threads the add order is real
     * scheduling nondeterminism */
    sb_pool_run(c->pool, fast_worker, &j);
    if (saved != 1) openblas_set_num_threads(saved);
    return 1;
}

void sb_blas_conv2d_backward(sb_backend *be, float *dinp, float *dweight, float *dbias,
                             const float *dout, const float *inp, const float *weight,
                             const sb_conv2d_shape *s) {
    sb_conv2d_check(s);
    if (s->n == 0) return; /* every sum is empty: += 0 changes nothing */
    sb_blas_conv *c = conv_of(be);
    const size_t ckk = (size_t)s->cin * (size_t)s->kh * (size_t)s->kw;
    pass p = conv_pass(P_DOUT_T, s, 0, s->n);
    const size_t cnp = (size_t)s->cout * p.np;
    float *dT = grow(&c->shared[BUF_DOUT_T], &c->shared_cap[BUF_DOUT_T], cnp);
    float *col = grow(&c->shared[BUF_COL], &c->shared_cap[BUF_COL], ckk * p.np);
    if (!dT || !col) { /* ref's loops of the same mode (see the header) */
        (be->mode == SB_MODE_CANONICAL ? sb_canon_ref_conv2d_backward : sb_ref_conv2d_backward)(
            be, dinp, dweight, dbias, dout, inp, weight, s);
        return;
    }
    p.items = (size_t)s->cout * (size_t)s->n, p.dst = dT, p.src = dout;
    run_pass(c, &p, cnp);
    if (dinp) { /* dcol = weightᵀ · doutT in col's buffer, then the gather */
        be->i->gemm(be, 1, 0, (int)ckk, (int)p.np, s->cout, 1.0f, weight, (int)ckk, dT, (int)p.np,
                    0.0f, col, (int)p.np);
        pass g = conv_pass(P_COL2IM, s, 0, s->n);
        g.items = (size_t)s->n * (size_t)s->cin, g.dst = dinp, g.src = col;
        run_pass(c, &g, ckk * p.np);
    }
    if (be->mode == SB_MODE_FAST && fast_grads(be, c, dweight, dbias, dout, inp, s)) return;
    pass ic = conv_pass(P_IM2COL, s, 0, s->n);
    ic.items = ckk * (size_t)s->n, ic.dst = col, ic.src = inp;
    run_pass(c, &ic, ckk * p.np);
    be->i->gemm(be, 0, 1, s->cout, (int)ckk, (int)p.np, 1.0f, dT, (int)p.np, col, (int)p.np, 1.0f,
                dweight, (int)ckk);
    if (dbias) {
        pass b = conv_pass(be->mode == SB_MODE_CANONICAL ? P_BIAS_CANON : P_BIAS_DET, s, 0, s->n);
        b.items = (size_t)s->cout, b.dst = dbias, b.src = dout;
        run_pass(c, &b, cnp);
    }
}

/* ====================================================================== */
/* pooling: ref's loops on plane ranges                                   */
/* ====================================================================== */

static void pool_op(sb_backend *be, enum pass_kind kind, float *dst, const float *src,
                    const float *src2, const sb_pool2d_shape *s) {
    sb_pool2d_check(s);
    sb_blas_conv *c = conv_of(be);
    pass p = {.kind = kind, .ps = s, .ref = c->ref, .dst = dst, .src = src, .src2 = src2};
    p.items = (size_t)s->n * (size_t)s->c;
    size_t work = p.items * (size_t)sb_pool2d_out_h(s) * (size_t)sb_pool2d_out_w(s) *
                  (size_t)s->kh * (size_t)s->kw;
    run_pass(c, &p, work);
}

void sb_blas_maxpool2d_forward(sb_backend *be, float *out, const float *inp,
                               const sb_pool2d_shape *s) {
    pool_op(be, P_MAXF, out, inp, NULL, s);
}

void sb_blas_maxpool2d_backward(sb_backend *be, float *dinp, const float *dout, const float *inp,
                                const sb_pool2d_shape *s) {
    pool_op(be, P_MAXB, dinp, dout, inp, s);
}

void sb_blas_avgpool2d_forward(sb_backend *be, float *out, const float *inp,
                               const sb_pool2d_shape *s) {
    pool_op(be, P_AVGF, out, inp, NULL, s);
}

void sb_blas_avgpool2d_backward(sb_backend *be, float *dinp, const float *dout,
                                const sb_pool2d_shape *s) {
    pool_op(be, P_AVGB, dinp, dout, NULL, s);
}
